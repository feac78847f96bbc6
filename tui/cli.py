"""Command line: ``chat-tui [MODEL] [key=value ...] [options]``.

No Textual (or torch) import at module top: ``--help``, ``--version`` and one-shot
mode never pay for the UI, and the UI paints before the model libraries load.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence

from . import __version__

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

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
    pass


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


def spec_overrides(ns: argparse.Namespace, model: str | None) -> dict[str, object]:
    """The ModelSpec fields given on the command line (and only those)."""
    if ns.model and model and ns.model != model:
        raise UsageError(f"Two models given ({model!r} and --model {ns.model!r}); pass one.")
    given: dict[str, object] = {}
    if ns.model or model:
        given["source"] = ns.model or model
    if ns.load_in_8bit or ns.load_in_4bit:
        given["quantization"] = "8bit" if ns.load_in_8bit else "4bit"
    elif ns.dtype is not None:
        given["quantization"] = "none"  # --dtype alone means an unquantized model
    for field, value in (
        ("revision", ns.revision),
        ("dtype", ns.dtype),
        ("bnb_4bit_quant_type", ns.bnb_4bit_quant_type),
        ("bnb_4bit_compute_dtype", ns.bnb_4bit_compute_dtype),
        ("device", ns.device),
        ("attn_implementation", ns.attn_implementation),
        ("chat_template_file", ns.chat_template),
    ):
        if value is not None:
            given[field] = value
    if ns.bnb_4bit_double_quant:
        given["bnb_4bit_use_double_quant"] = True
    if ns.trust_remote_code:
        given["trust_remote_code"] = True
    return given


def choose_spec(
    given: dict[str, object],
    configured: dict[str, object] | None = None,
    remembered: dict[str, object] | None = None,
):  # -> ModelSpec
    """The one place that decides which model to start with.

    A model named on the command line starts from chat-tui's defaults; otherwise from
    the user's ``[model]`` in config.toml, else (in the app) the last model loaded, else
    the bundled default. Every option given on the command line then wins."""
    from .engine.errors import EngineError
    from .engine.spec import DEFAULT_MODEL, ModelSpec
    from .engine.trust import from_file

    base = ModelSpec()
    if "source" not in given:
        for candidate, what in ((configured, "config.toml's [model]"), (remembered, "state.toml")):
            if candidate:
                try:
                    # a file describes a model; it never allows its code to run (only
                    # --trust-remote-code does), and state.toml names no template file
                    recorded = from_file({"source": DEFAULT_MODEL, **candidate}, what=what)
                    base = recorded.spec
                    if candidate is configured and isinstance(
                        candidate.get("chat_template_file"), str
                    ):
                        base = base.with_changes(chat_template_file=candidate["chat_template_file"])
                    break
                except (EngineError, TypeError, ValueError):
                    continue  # a bad remembered spec must not stop chat-tui
    return base.with_changes(**given)


class _StderrProgress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.drawn = False

    def __call__(self, fraction: float, stage: str) -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * max(0.0, min(1.0, fraction)))
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}% {stage}"
        sys.stderr.write(line[:120].ljust(80))
        sys.stderr.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()
            self.drawn = False


def error(message: str) -> None:
    """One line on stderr (sanitized: messages quote files, servers and models); a
    stderr that is gone is not an error of its own."""
    from .safe_text import one_line

    try:
        print(f"chat-tui: {one_line(message)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def note(message: str) -> None:
    error(f"note: {message}")


def _short_time(iso: str) -> str:
    return iso.replace("T", " ")[:16]


class StdoutFailed(Exception):
    """Writing to standard output failed (a full disk, a closed pipe)."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause

    def report(self) -> int:
        """Silence for a closed pipe (as shell users expect), one sentence otherwise."""
        silence_stdout()
        if not isinstance(self.cause, BrokenPipeError):
            from .store.errors import describe_os_error

            error(f"Could not write to standard output: {describe_os_error(self.cause)}.")
        return EXIT_ERROR


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class Stdout:
    """Results on stdout. Text from outside (a model's reply) goes through the
    sanitizer unless ``raw``; a failed write raises :class:`StdoutFailed`."""

    def __init__(self, raw: bool = False) -> None:
        from .safe_text import StreamStripper

        self.stripper = None if raw else StreamStripper()

    def write(self, text: str, flush: bool = False) -> None:
        if self.stripper is not None:
            text = self.stripper.feed(text)
        self._emit(text, flush)

    def finish(self) -> None:
        self._emit(self.stripper.flush() if self.stripper is not None else "", True)

    @staticmethod
    def _emit(text: str, flush: bool) -> None:
        try:
            try:
                sys.stdout.write(text)
            except UnicodeEncodeError:  # a stdout that cannot show every character
                encoding = getattr(sys.stdout, "encoding", None) or "ascii"
                sys.stdout.write(text.encode(encoding, "replace").decode(encoding))
            if flush:
                sys.stdout.flush()
        except OSError as exc:
            raise StdoutFailed(exc) from None


def run_store_command(ns: argparse.Namespace) -> int:
    """--list, --search, --export and --import. Everything printed that comes from a
    file (names, titles, reasons, file names) goes through the sanitizer; store errors
    and a stdout that fails are one sentence on stderr and exit 1."""
    from . import safe_text
    from .store import SessionStore, StoreError
    from .store import export as exporter

    out = Stdout(raw=True).write  # every line below is sanitized as it is built
    line = safe_text.one_line
    store = SessionStore(ns.data_dir)
    try:
        if ns.list:
            infos, problems = store.scan()
            if not infos:
                out(line(f"No saved conversations in {store.folder}.") + "\n")
            else:
                rows = [
                    (
                        line(i.label),
                        line(i.title),
                        line(i.model or "-"),
                        _short_time(line(i.updated)),
                        str(i.messages),
                    )
                    for i in infos
                ]
                header = ("NAME", "TITLE", "MODEL", "UPDATED", "MESSAGES")
                widths = [min(40, max(len(r[c]) for r in rows + [header])) for c in range(5)]
                for row in [header, *rows]:
                    cells = (cell[:w].ljust(w) for cell, w in zip(row, widths, strict=True))
                    out("  ".join(cells).rstrip() + "\n")
            for problem in problems:
                out(line(f"unreadable: {problem} (left unchanged)") + "\n")
            out("", flush=True)
            return EXIT_OK
        if ns.search is not None:
            hits = store.search(ns.search)
            for hit in hits:
                out(f"{line(hit.info.label)}  {line(hit.info.title)}\n")
                for snippet in hit.snippets:
                    out(f"    {line(snippet)}\n")
            if not hits:
                out(line(f"No conversation mentions {ns.search!r}.") + "\n")
            out("", flush=True)
            return EXIT_OK
        if ns.export is not None:
            info = store.find(ns.export)
            if info is None:
                error(line(f"No saved conversation called {ns.export!r}; see chat-tui --list."))
                return EXIT_ERROR
            out(exporter.export(store.load(info.id), ns.format), flush=True)
            return EXIT_OK
        if ns.import_file is not None:
            conv = store.import_conversation(exporter.import_file(ns.import_file))
            out(
                line(
                    f"Imported {ns.import_file} as {conv.name or conv.id}: {conv.title} "
                    f"({conv.message_count} messages)."
                )
                + "\n",
                flush=True,
            )
            return EXIT_OK
    except StoreError as exc:
        error(line(str(exc)))
        return EXIT_ERROR
    except StdoutFailed as exc:
        return exc.report()
    return EXIT_USAGE


def open_conversation(ns: argparse.Namespace, spec, settings):
    """The conversation a one-shot prompt belongs to: named, the latest, or new."""
    from .store import Conversation, SessionStore, StoreError

    fields = {
        "model": spec.to_dict(),
        "system_prompt": ns.system_prompt or "",
        "settings": dict(settings.values),
    }
    if ns.no_save and not (ns.session or ns.continue_last):
        return None, Conversation(id="unsaved", **fields)
    store = SessionStore(ns.data_dir)
    if ns.session:
        conv, _created = store.open_or_create(ns.session, **fields)
    elif ns.continue_last:
        info = store.most_recent()
        if info is None:
            raise StoreError("There is no saved conversation to continue.")
        conv = store.load(info.id)
    else:
        conv = store.new(**fields)
    if ns.system_prompt is not None:
        conv.system_prompt = ns.system_prompt
    conv.model = spec.to_dict()
    if ns.endpoint:  # the URL only: credentials in it are never written
        from .engine.remote import redact_url

        conv.model["endpoint"] = redact_url(ns.endpoint)
    return (None if ns.no_save else store), conv


class _Interrupts:
    """Ctrl-C, SIGTERM and SIGHUP (an SSH drop) during a one-shot reply stop generation
    after the token being computed; the text already printed is then saved, marked
    interrupted. A second Ctrl-C stops at once (KeyboardInterrupt), e.g. during a long
    prompt's prefill."""

    def __init__(self, stop: threading.Event) -> None:
        import signal

        self.stop = stop
        self.received: int | None = None
        self._previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        import signal

        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        self.stop.set()

    @property
    def exit_code(self) -> int:
        import signal

        return EXIT_INTERRUPTED if self.received == signal.SIGINT else 128 + (self.received or 0)

    def restore(self) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def make_endpoint(ns: argparse.Namespace):
    from .engine.remote import Endpoint

    endpoint = Endpoint(
        ns.endpoint, api_key_env=ns.api_key_env, timeout=ns.timeout, verify_tls=not ns.insecure
    )
    for warning in endpoint.warnings:
        print(f"chat-tui: warning: {warning}", file=sys.stderr)
    return endpoint


def make_engine(ns: argparse.Namespace, settings):
    """The local engine, or the remote one when --endpoint is given."""
    if ns.endpoint:
        from .engine.remote import RemoteEngine

        return RemoteEngine(make_endpoint(ns), settings=settings)
    from .engine import Engine

    return Engine(settings=settings, prompt_lookup=ns.prompt_lookup)


def read_prompt(ns: argparse.Namespace) -> str:
    if ns.prompt != "-":
        return ns.prompt
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def run_one_shot(ns: argparse.Namespace, spec, settings_args: list[str]) -> int:
    """Stream one reply to stdout and save the exchange.

    Every way the reply can end early (Ctrl-C, SIGTERM, SIGHUP, a closed stdout, an
    error) keeps and saves exactly the text already printed, with its stop reason, and
    says it was saved only when it was. A reply that cannot be saved is still printed;
    then one sentence says why, and the exit code is 1."""
    import signal

    from .engine import EngineError, GenerationSettings
    from .reasons import StopReason
    from .store import StoreError

    prompt = read_prompt(ns)
    if not prompt.strip():
        error("The prompt is empty.")
        return EXIT_USAGE
    settings = GenerationSettings()
    try:
        engine = make_engine(ns, settings)
    except EngineError as exc:
        error(str(exc))
        return EXIT_ERROR
    progress = _StderrProgress()
    try:
        settings.update(settings_args)
        engine.load(spec, progress)
        if ns.assistant_model:
            engine.load_assistant(spec.with_changes(source=ns.assistant_model), progress)
    except EngineError as exc:
        progress.clear()
        error(str(exc))
        return EXIT_ERROR
    progress.clear()

    try:
        store, conv = open_conversation(ns, spec, settings)
    except StoreError as exc:  # e.g. --session NAME whose file cannot be read
        error(str(exc))
        return EXIT_ERROR
    conv.append("user", prompt)
    save_error: StoreError | None = None
    if store is not None:
        try:
            store.save(conv)
        except StoreError as exc:  # answer anyway; say so at the end
            save_error = exc
    if ns.compare:
        return run_compare(ns, engine, store, conv, save_error, progress)

    stop = threading.Event()
    stdout = Stdout(raw=ns.raw and not sys.stdout.isatty())
    received: list[str] = []
    closed: list[StdoutFailed] = []

    def write(chunk: str) -> None:
        received.append(chunk)
        if closed:
            return
        try:
            stdout.write(chunk, flush=True)
        except StdoutFailed as exc:  # nobody is reading: stop, keep what came
            closed.append(exc)
            stop.set()

    interrupts = _Interrupts(stop)
    result = None
    try:
        result = engine.chat(
            conv.chat_messages(),
            system_prompt=conv.system_prompt or None,
            conversation_id=None,
            stop_event=stop,
            on_text=write,
        )
    except KeyboardInterrupt:  # a second Ctrl-C
        stop.set()
        interrupts.received = interrupts.received or int(signal.SIGINT)
    except EngineError as exc:
        interrupts.restore()
        error(str(exc))
        return EXIT_ERROR
    finally:
        interrupts.restore()
    text = "".join(received) if result is None or interrupts.received else result.text
    if not closed:
        try:
            stdout.finish()
            if text and not text.endswith("\n"):
                stdout.write("\n", flush=True)
        except StdoutFailed as exc:
            closed.append(exc)
    stats = result.stats if result is not None else None
    if interrupts.received or closed:
        reason = StopReason.INTERRUPTED
    else:
        reason = StopReason(stats.stop_reason) if stats else StopReason.ERROR
    fields = stats.message_fields() if stats else {}
    fields.update(stop_reason=reason)
    conv.append(
        "assistant",
        text,
        model=engine.loaded.name if engine.loaded else spec.display_name,
        **fields,
    )
    saved = False
    if store is not None:
        try:
            store.save(conv)
            saved = True
        except StoreError as exc:
            save_error = exc
    if result is not None:
        for notice in result.notices:
            note(notice)
    if ns.stats and stats is not None:
        note(stats.describe())
    code = _ended_early(closed, save_error, interrupts, "the partial reply was" if saved else "")
    if code is not None:
        return code
    if stats is not None and stats.error:
        error(stats.error)
        return EXIT_ERROR
    return EXIT_OK


def _ended_early(closed: list, save_error, interrupts: _Interrupts, saved: str) -> int | None:
    """The exit code of a one-shot run whose stdout closed, whose save failed or that was
    interrupted (each said on stderr), or ``None`` if none of these happened. ``saved``
    names what was saved on an interrupt ("the partial reply was"), empty if nothing."""
    if closed:
        code = closed[0].report()
        if save_error is not None:
            error(str(save_error))
        return code
    if save_error is not None:
        error(str(save_error))
        return EXIT_ERROR
    if interrupts.received:
        error(f"Interrupted; {saved} saved." if saved else "Interrupted.")
        return interrupts.exit_code
    return None


def run_compare(ns: argparse.Namespace, engine, store, conv, save_error, progress) -> int:
    """--compare: the turn answered by the loaded model and by each SPEC; each reply
    printed under its label, then one table (stdout); notes on stderr. The replies are
    saved as sibling branches of the turn, each labelled with its spec; the loaded
    model's reply stays on the active branch."""
    import signal

    from .engine import EngineError
    from .engine.compare import compare_turn
    from .reasons import StopReason
    from .store import StoreError

    stop = threading.Event()
    stdout = Stdout(raw=ns.raw and not sys.stdout.isatty())
    shown = {"index": -1, "open": False}
    closed: list[StdoutFailed] = []

    def emit(text: str, flush: bool = True, raw: bool = False) -> None:
        if closed:
            return
        try:
            if raw:  # our own text (labels, the table): already clean
                Stdout._emit(text, flush)
            else:
                stdout.write(text, flush=flush)
        except StdoutFailed as exc:
            closed.append(exc)
            stop.set()

    def end_reply() -> None:
        if shown["open"] and not closed:
            try:
                stdout.finish()
            except StdoutFailed as exc:
                closed.append(exc)
                stop.set()
            emit("\n\n", raw=True)
        shown["open"] = False

    def on_reply_text(index: int, chunk: str) -> None:
        if index != shown["index"]:
            end_reply()
            shown["index"] = index
        if not shown["open"]:
            label = labels.get(index, f"#{index}")
            emit(f"[{one_line(label)}]\n", raw=True)
            shown["open"] = True
        emit(chunk)

    def on_progress(step) -> None:
        if step.stage in ("loading", "restoring") and step.fraction is not None:
            progress(step.fraction, step.message)
        elif step.stage == "generating":
            progress.clear()

    from .engine.spec import parse_compare_spec, precision_tag
    from .safe_text import one_line, visible

    loaded = engine.require_model() if hasattr(engine, "require_model") else None
    labels: dict[int, str] = {}
    try:
        parsed = [parse_compare_spec(text) for text in ns.compare]
        if loaded is not None:
            labels[0] = precision_tag(loaded.spec, loaded.dtype) + " (reference)"
        for number, wanted in enumerate(parsed, 1):
            labels[number] = wanted.label
    except EngineError as exc:
        error(str(exc))
        return EXIT_USAGE

    def on_reply(reply) -> None:
        end_reply()

    interrupts = _Interrupts(stop)
    comparison = None
    try:
        comparison = compare_turn(
            engine,
            conv.chat_messages(),
            parsed,
            system_prompt=conv.system_prompt or None,
            use_turn_settings=ns.compare_settings == "turn",
            placement={"sequential": "one after the other"}.get(ns.compare_load, ns.compare_load),
            stop_event=stop,
            on_progress=on_progress,
            on_text=on_reply_text,
            on_reply=on_reply,
        )
    except KeyboardInterrupt:
        stop.set()
        interrupts.received = interrupts.received or int(signal.SIGINT)
    except EngineError as exc:
        interrupts.restore()
        progress.clear()
        end_reply()
        error(str(exc))
        return EXIT_ERROR
    finally:
        interrupts.restore()
    progress.clear()
    end_reply()
    if comparison is not None and comparison.replies and not closed:
        emit(visible(comparison.table()) + "\n", raw=True)

    saved = False
    failures: list[str] = []
    if comparison is not None and comparison.replies:
        user = conv.head
        for reply in comparison.replies:
            fields = reply.message_fields()
            cut = reply.stats.stop_reason == StopReason.STOPPED
            if cut and (interrupts.received or closed):
                fields["stop_reason"] = StopReason.INTERRUPTED
            if reply.error:
                failures.append(f"{reply.label}: {reply.error}")
                if not reply.text:
                    continue
            conv.add_child(user, "assistant", reply.text, make_head=reply.is_reference, **fields)
        if store is not None:
            try:
                store.save(conv)
                saved = True
            except StoreError as exc:
                save_error = exc
    if comparison is not None:
        for note_text in comparison.notes:
            note(note_text)
        for reply in comparison.replies:
            for notice in reply.notices:
                note(f"{reply.label}: {notice}")
            if ns.stats:
                note(f"{reply.label}: {reply.stats.describe()}")
    code = _ended_early(closed, save_error, interrupts, "the replies so far were" if saved else "")
    if code is not None:
        return code
    for failure in failures:
        error(failure)
    return EXIT_ERROR if failures else EXIT_OK


def _replay_target(store, text: str):
    """(conversation, reply) for ``CONVERSATION[:MESSAGE]``."""
    from .store import StoreError

    info = store.find(text)
    selector: str | None = None
    if info is None and ":" in text:
        name, _, selector = text.rpartition(":")
        info = store.find(name)
    if info is None:
        raise StoreError(f"No saved conversation called {text!r}; see chat-tui --list.")
    conv = store.load(info.id)
    transcript = conv.transcript
    if selector is None:
        message = next((m for m in reversed(transcript) if m.role == "assistant"), None)
        if message is None:
            raise StoreError(f"{info.label} has no reply to replay.")
        return conv, message
    message = conv.get(selector)
    if message is None:
        try:
            number = int(selector)
        except ValueError:
            raise StoreError(
                f"{info.label} has no message {selector!r} (give its id, or its number in the "
                "conversation)."
            ) from None
        if number == 0 or abs(number) > len(transcript):
            raise StoreError(
                f"{info.label} has {len(transcript)} messages; there is no message {number}."
            )
        message = transcript[number - 1 if number > 0 else number]
    if message.role != "assistant":
        raise StoreError(f"Message {selector} of {info.label} is not a reply; pick a reply.")
    return conv, message


def replay_spec(snapshot: object, start, given: dict[str, object]):  # -> ModelSpec | None
    """The model ``--replay`` may load for a reply's ``snapshot``, and the sentences to
    say first. The file describes; only the command line authorizes: the snapshot's
    model loads when it is the one chat-tui starts with (``start``: the default or
    config.toml's model) or when the user names a model (``--model``), and remote code
    runs only with ``--trust-remote-code``. ``None`` spec: no snapshot (``replay`` says
    so). Raises :class:`EngineError` (one sentence) when the reply's model is another
    one the user did not name."""
    from .engine.errors import EngineError
    from .engine.provenance import Provenance
    from .engine.trust import same_model

    saved = Provenance.from_dict(snapshot)
    if saved is None or not saved.spec:
        return None, []
    recorded = saved.recorded()
    if "source" not in given and not same_model(recorded.spec, start):
        raise EngineError(
            f"This reply was made by {recorded.spec.display_name} ({recorded.source}), not the "
            f"model chat-tui starts with; to replay it with that model, name it: --model "
            f"{recorded.source}."
        )
    said = list(recorded.refused)
    if recorded.remote_code and given.get("trust_remote_code") is True:
        said = said[1:]  # the user allowed it, now, on the command line
    return recorded.spec.with_changes(**given), said


def run_replay(ns: argparse.Namespace, start, given: dict[str, object]) -> int:
    """--replay: make a saved reply again from its snapshot; print "identical" or where
    it diverges and why (stdout). Exit 0 when identical, 1 otherwise."""
    from .engine import EngineError
    from .engine.replay import replay
    from .safe_text import one_line
    from .store import SessionStore, StoreError

    store = SessionStore(ns.data_dir)
    try:
        conv, message = _replay_target(store, ns.replay)
        spec, said = replay_spec(message.provenance, start, given)
    except (StoreError, EngineError) as exc:
        error(str(exc))
        return EXIT_ERROR
    for sentence in said:
        note(sentence)
    history = [m.as_chat() for m in conv.path(message.parent) if m.role != "system"]
    if message.parent is None:
        history = []
    progress = _StderrProgress()
    stop = threading.Event()
    interrupts = _Interrupts(stop)
    try:
        report = replay(
            history,
            message.content,
            message.provenance or {},
            system_prompt=conv.system_prompt or None,
            saved_stop_reason=message.stop_reason,
            progress=progress,
            stop_event=stop,
            spec=spec,
            allow_download=True,  # the model chat-tui starts with, or one the user named
        )
    except EngineError as exc:
        progress.clear()
        error(str(exc))
        return EXIT_ERROR
    finally:
        interrupts.restore()
    progress.clear()
    if interrupts.received:
        error("Interrupted.")
        return interrupts.exit_code
    try:
        Stdout(raw=True).write(one_line(report.describe()) + "\n", flush=True)
    except StdoutFailed as exc:
        return exc.report()
    if ns.stats and report.result is not None:
        note(report.result.stats.describe())
    return EXIT_OK if report.identical else EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before a reply started (e.g. while loading)
        error("Interrupted.")
        return EXIT_INTERRUPTED


def _not_utf8(args: Sequence[str]) -> str | None:
    """The first argument that was not valid UTF-8 (Python keeps such bytes as lone
    surrogates), if any."""
    return next((a for a in args if any("\udc80" <= c <= "\udcff" for c in a)), None)


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    bad = _not_utf8(args)
    if bad is not None:
        error(f"An argument is not valid UTF-8 text ({bad!r}); chat-tui takes UTF-8.")
        return EXIT_USAGE
    parser = build_parser()
    ns = parser.parse_intermixed_args(args)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .config import AppConfig
    from .engine.errors import EngineError

    try:
        model, settings_args = split_positionals(ns.args)
        given = spec_overrides(ns, model)
        config = AppConfig.load()
        spec = choose_spec(given, None if ns.endpoint else config.model)
        if ns.prompt_lookup is not None and ns.prompt_lookup < 1:
            raise UsageError("--prompt-lookup takes a whole number of at least 1.")
        if ns.endpoint and ns.timeout <= 0:
            raise UsageError("--timeout takes a number of seconds above 0.")
        if ns.compare and ns.prompt is None:
            raise UsageError("--compare goes with --prompt (in the app, use /compare).")
        if ns.compare and ns.endpoint:
            raise UsageError("--compare runs models on this machine; it cannot use --endpoint.")
        if ns.compare:
            from .engine.spec import parse_compare_spec

            for text in ns.compare:
                parse_compare_spec(text)
    except (UsageError, EngineError) as exc:
        parser.print_usage(sys.stderr)
        error(str(exc))
        return EXIT_USAGE
    if ns.serve:
        from .serve import serve

        return serve(ns, args, settings_args)
    if ns.list or ns.search is not None or ns.export is not None or ns.import_file is not None:
        return run_store_command(ns)
    if ns.replay is not None:
        return run_replay(ns, spec, given)
    if ns.prompt is not None:
        return run_one_shot(ns, spec, settings_args)

    return launch_app(ns, given, config, settings_args)


def launch_app(ns: argparse.Namespace, given: dict[str, object], config, settings_args) -> int:
    from .app import LaunchOptions, run_app
    from .engine import EngineError, GenerationSettings
    from .state import AppState
    from .store import SessionStore

    try:
        GenerationSettings().update(settings_args)
        endpoint = make_endpoint(ns) if ns.endpoint else None
        remembered = AppState.load(SessionStore(ns.data_dir).root).last_model
        spec = choose_spec(given, config.model, remembered)
    except EngineError as exc:
        error(str(exc))
        return EXIT_USAGE
    options = LaunchOptions(
        spec=spec if endpoint is None else choose_spec({}, config.model, remembered),
        endpoint=endpoint,
        endpoint_model=str(given.get("source") or "default"),
        settings_args=settings_args,
        system_prompt=ns.system_prompt,
        data_dir=ns.data_dir,
        prompt_lookup=ns.prompt_lookup,
        assistant_model=ns.assistant_model,
    )
    return run_app(options)


if __name__ == "__main__":
    sys.exit(main())
