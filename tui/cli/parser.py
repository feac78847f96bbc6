"""The command line's grammar: ``chat-tui [MODEL] [key=value ...] [options]``, its
help text, and the checks on the words themselves (a model and ``key=value``
settings among the positionals, arguments that are not UTF-8)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from .. import __version__

EPILOG = """\
examples:
  chat-tui                                   chat with the bundled SmolLM2-135M-Instruct
  chat-tui Qwen/Qwen2.5-0.5B-Instruct        a Hub model from the local cache
  chat-tui ./my-model --dtype bf16           a local transformers folder
  chat-tui model.Q4_K_M.gguf                 a GGUF file (converted once, then cached)
  chat-tui --prompt "What is the capital of France?" do_sample=false
  echo "Summarise: ..." | chat-tui --prompt - max_new_tokens=200
  chat-tui --prompt "Why is the sky blue?" --compare @bf16 --compare @4bit
                                             the same turn at other precisions, side by side
  chat-tui --prompt-lookup 10 --prompt "..." --compare @same-no-draft
                                             what speculative decoding buys on this turn
  chat-tui --replay NAME                     make the last reply of NAME again from its
                                             snapshot: "identical", or where it diverges
  chat-tui --serve                           the app in a browser: prints a private link;
                                             over SSH: ssh -L 8008:127.0.0.1:8008 HOST

SPEC (for --compare) is [MODEL][@PRECISION]: @fp32, @bf16, @fp16, @8bit, @4bit (nf4),
  @4bit-fp4, optionally after a model (./other@bf16, Qwen/Qwen2.5-0.5B-Instruct@4bit); a
  model alone keeps the loaded model's precision; @same-no-draft is the loaded model
  without --assistant-model/--prompt-lookup.

generation settings are GenerationConfig fields given as key=value, e.g.
  temperature=0.7 top_p=0.9 top_k=50 max_new_tokens=512 do_sample=true seed=42

exit codes: 0 done; 1 an error (one sentence on stderr); 2 a usage error; 130 Ctrl-C and
  128+N for signal N (what was printed is saved); 141 stdout closed by its reader
  (`chat-tui --list | head -1`), quietly, as `git log | head -1`.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chat-tui",
        description="Chat with Hugging Face transformers models in your terminal.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "args",
        nargs="*",
        metavar="MODEL | key=value",
        help="model (Hub id, folder or .gguf file) and generation settings",
    )
    parser.add_argument("--version", action="version", version=f"chat-tui {__version__}")
    model = parser.add_argument_group("model")
    model.add_argument("--model", "-m", help="Hub id, local folder or .gguf file")
    model.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    model.add_argument(
        "--dtype",
        choices=["auto", "bf16", "fp16", "fp32", "bfloat16", "float16", "float32"],
        help="precision of the weights (auto: fp32 on CPU, the checkpoint's on a GPU)",
    )
    model.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    quant = model.add_mutually_exclusive_group()
    quant.add_argument("--load-in-8bit", action="store_true", help="bitsandbytes 8-bit")
    quant.add_argument("--load-in-4bit", action="store_true", help="bitsandbytes 4-bit")
    model.add_argument("--bnb-4bit-quant-type", choices=["nf4", "fp4"])
    model.add_argument(
        "--bnb-4bit-double-quant", action="store_true", help="quantize the 4-bit scales too"
    )
    model.add_argument("--bnb-4bit-compute-dtype", choices=["auto", "bf16", "fp16", "fp32"])
    model.add_argument(
        "--attn-implementation",
        choices=["auto", "eager", "sdpa", "flash_attention_2", "flex_attention"],
    )
    model.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a model's own Python code to run (off unless asked)",
    )
    model.add_argument("--assistant-model", help="draft model for speculative decoding")
    model.add_argument(
        "--prompt-lookup",
        type=int,
        metavar="N",
        help="prompt-lookup speculative decoding with N-token candidates",
    )
    chat = parser.add_argument_group("chat")
    chat.add_argument("--system-prompt", help="system prompt for new conversations")
    chat.add_argument(
        "--chat-template", metavar="FILE", help="Jinja chat template that overrides the model's"
    )
    chat.add_argument(
        "--prompt",
        "-p",
        metavar="TEXT",
        help="one-shot: stream the reply to stdout and exit ('-' reads stdin)",
    )
    chat.add_argument(
        "--stats", action="store_true", help="one-shot: print generation stats to stderr"
    )
    chat.add_argument(
        "--think",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let a reasoning model think before it answers, or not (the chat template's "
        "enable_thinking; default: the template's own)",
    )
    chat.add_argument(
        "--show-thinking",
        action="store_true",
        help="one-shot: stream a reasoning model's thinking to stderr (stdout gets the "
        "answer alone)",
    )
    chat.add_argument(
        "--compare",
        action="append",
        metavar="SPEC",
        help="one-shot: answer the prompt again with SPEC (repeatable) and print a table",
    )
    chat.add_argument(
        "--compare-settings",
        choices=["greedy", "turn"],
        default="greedy",
        help="--compare: greedy for a fair comparison (default), or the turn's own "
        "settings and seed",
    )
    chat.add_argument(
        "--compare-load",
        choices=["auto", "together", "sequential"],
        default="auto",
        help="--compare: load the other model beside this one, or one after the other "
        "(auto: by the memory estimate)",
    )
    chat.add_argument(
        "--replay",
        metavar="CONVERSATION[:MESSAGE]",
        help="make a saved reply again from its snapshot and say whether it is identical "
        "(MESSAGE: an id, or a 1-based index in the conversation, negative from the end; "
        "default the last reply)",
    )
    chat.add_argument(
        "--raw",
        action="store_true",
        help="one-shot: pass the reply's control characters and escape sequences through to "
        "a pipe unchanged (a terminal always gets them neutralized)",
    )
    remote = parser.add_argument_group("remote server (OpenAI-compatible)")
    remote.add_argument(
        "--endpoint",
        metavar="URL",
        help="chat through a server such as `transformers serve`, vLLM, TGI, llama.cpp or "
        "Ollama, e.g. http://127.0.0.1:8000/v1",
    )
    remote.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="NAME",
        help="environment variable holding the API key (default OPENAI_API_KEY)",
    )
    remote.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="give up on a server that sends nothing for S seconds (default 60)",
    )
    remote.add_argument(
        "--insecure", action="store_true", help="do not verify the server's TLS certificate"
    )
    sessions = parser.add_argument_group("conversations")
    sessions.add_argument("--data-dir", help="where conversations are kept")
    sessions.add_argument(
        "--session", metavar="NAME", help="create or continue the conversation called NAME"
    )
    sessions.add_argument(
        "--continue",
        dest="continue_last",
        action="store_true",
        help="continue the most recent conversation",
    )
    sessions.add_argument(
        "--no-save", action="store_true", help="one-shot: do not save the exchange"
    )
    sessions.add_argument("--list", action="store_true", help="list saved conversations")
    sessions.add_argument("--search", metavar="TEXT", help="search every saved conversation")
    sessions.add_argument("--export", metavar="NAME", help="print a conversation (see --format)")
    sessions.add_argument("--format", choices=["md", "json"], default="md", help="export format")
    sessions.add_argument(
        "--import",
        dest="import_file",
        metavar="FILE",
        help="import a chat-tui JSON export or a `transformers chat` history file",
    )
    web = parser.add_argument_group("browser")
    web.add_argument(
        "--serve",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="run the app in a browser instead: a web server that starts one chat-tui per "
        "browser tab (each with its own copy of the model) and prints a private link",
    )
    web.add_argument(
        "--host", default="127.0.0.1", help="--serve: address to listen on (default 127.0.0.1)"
    )
    web.add_argument(
        "--port", type=int, default=8008, help="--serve: port to listen on (default 8008)"
    )
    web.add_argument(
        "--max-sessions",
        type=int,
        default=2,
        metavar="N",
        help="--serve: at most N browser tabs (apps, models) at once (default 2)",
    )
    return parser


class UsageError(Exception):
    """A command line that does not make sense: the usage, one sentence, exit 2."""


def split_positionals(values: Sequence[str]) -> tuple[str | None, list[str]]:
    model: str | None = None
    settings: list[str] = []
    for value in values:
        if "=" in value and not os.path.exists(value):
            settings.append(value)
        elif model is None:
            model = value
        else:
            raise UsageError(f"Two models given ({model!r} and {value!r}); pass one.")
    return model, settings


def not_utf8(args: Sequence[str]) -> str | None:
    """The first argument that was not valid UTF-8 (Python keeps such bytes as lone
    surrogates), if any."""
    return next((a for a in args if any("\udc80" <= c <= "\udcff" for c in a)), None)
