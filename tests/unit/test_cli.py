"""The command line as users run it, called in this process (``tests/support.py``)."""

from __future__ import annotations

import pytest

from tests.support import CliRun
from tui import __version__
from tui.engine import ChatRequest


@pytest.fixture
def run_cli(cli):
    return cli


def assert_one_line_error(done: CliRun, code: int = 1) -> str:
    assert done.returncode == code, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("chat-tui: ")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    return lines[0]


def test_version(run_cli) -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"chat-tui {__version__}" == "chat-tui 0.1.0"


def test_help(run_cli) -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    for option in ("--prompt", "--model", "--dtype", "--load-in-8bit", "--chat-template"):
        assert option in done.stdout


def test_one_shot_with_a_local_folder(run_cli, tiny_llama_dir) -> None:
    done = run_cli(
        "--model",
        str(tiny_llama_dir),
        "--prompt",
        "hi",
        "do_sample=false",
        "max_new_tokens=8",
        "--stats",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert done.stdout.endswith("\n")
    assert "Traceback" not in done.stderr
    assert "prompt tokens" in done.stderr


def test_prompt_from_stdin(run_cli, tiny_llama_dir, llama_engine, greedy) -> None:
    question = "What is in the box?\nTell me."
    done = run_cli(
        "--model",
        str(tiny_llama_dir),
        "--stats",
        "--prompt",
        "-",
        "do_sample=false",
        "max_new_tokens=6",
        "min_new_tokens=6",
        stdin=question,
    )
    assert done.returncode == 0, done.stderr
    expected = llama_engine.chat(
        ChatRequest(
            [{"role": "user", "content": question}],
            settings=greedy("max_new_tokens=6", "min_new_tokens=6"),
        )
    )
    assert done.stdout == expected.text + "\n"
    assert f"{expected.stats.prompt_tokens} prompt tokens" in done.stderr


def test_model_then_options_then_settings(run_cli, tiny_llama_dir) -> None:
    """``chat-tui ./my-model --prompt hi temperature=0`` (positional model, options, then
    settings) is how the README's pieces combine; argparse's ``parse_args`` refuses the
    settings after the options as 'unrecognized arguments' (``parse_intermixed_args``
    accepts them)."""
    done = run_cli(str(tiny_llama_dir), "--prompt", "hi", "do_sample=false", "max_new_tokens=3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_empty_stdin_prompt_is_a_usage_error(run_cli, tiny_llama_dir) -> None:
    done = run_cli("--model", str(tiny_llama_dir), "--prompt", "-", stdin="  \n")
    assert_one_line_error(done, code=2)


def test_missing_folder(run_cli) -> None:
    line = assert_one_line_error(run_cli("--model", "./does-not-exist", "--prompt", "hi"))
    assert "./does-not-exist" in line


def test_bad_setting_value(run_cli, tiny_llama_dir) -> None:
    line = assert_one_line_error(run_cli("-m", str(tiny_llama_dir), "--prompt", "hi", "top_p=1.5"))
    assert "top_p" in line


def test_unknown_setting(run_cli, tiny_llama_dir) -> None:
    line = assert_one_line_error(
        run_cli("-m", str(tiny_llama_dir), "--prompt", "hi", "tempurature=1")
    )
    assert "tempurature" in line


def test_cuda_on_a_cpu_machine(run_cli, tiny_llama_dir) -> None:
    line = assert_one_line_error(run_cli(str(tiny_llama_dir), "--prompt", "hi", "--device", "cuda"))
    assert "cuda" in line


def test_bad_dtype_is_a_usage_error(run_cli) -> None:
    done = run_cli("--dtype", "fp8", "--prompt", "hi")
    assert done.returncode == 2
    assert "--dtype" in done.stderr
    assert "Traceback" not in done.stderr


def test_two_models_is_a_usage_error(run_cli, tiny_llama_dir, tiny_qwen_dir) -> None:
    done = run_cli(str(tiny_llama_dir), "--model", str(tiny_qwen_dir), "--prompt", "hi")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith("chat-tui: Two models given")


def test_base_model_reply_stops_before_the_next_user_turn(run_cli, bigram_dir) -> None:
    """The bigram model answers ' Paris' and then writes the '\\nUser:' stop string;
    stdout must carry the reply only."""
    done = run_cli(
        "-m", str(bigram_dir), "--prompt", "What is the capital of France?", "do_sample=false"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == " Paris\n"
    assert "no chat template" in done.stderr


def test_8bit_does_not_flood_stderr(run_cli, tiny_llama_dir) -> None:
    """bitsandbytes logs 'MatMul8bitLt: inputs will be cast ...' on every 8-bit matmul on
    CPU; the loader means to silence it (``loader.py``: 'one notice in the log is
    enough'), or the terminal fills with it."""
    done = run_cli(
        "-m",
        str(tiny_llama_dir),
        "--load-in-8bit",
        "--prompt",
        "hi",
        "do_sample=false",
        "max_new_tokens=4",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert done.stderr.count("MatMul8bitLt") <= 1


def test_default_model_one_shot(run_cli) -> None:
    done = run_cli("--prompt", "What is the capital of France?", "do_sample=false")
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout
    assert "Traceback" not in done.stderr


def test_the_start_model_is_decided_in_one_place() -> None:
    """Command line > the user's [model] > the last model loaded > the bundled one; an
    option given on the command line always wins (``--dtype fp32`` over a remembered
    4-bit model means an unquantized fp32 model)."""
    from tui.cli.model_choice import choose_spec, spec_overrides
    from tui.cli.parser import build_parser

    def given(*argv: str) -> dict:
        return spec_overrides(build_parser().parse_intermixed_args(list(argv)), None)

    remembered = {"source": "org/remembered", "quantization": "4bit", "dtype": "auto"}
    configured = {"source": "org/configured", "dtype": "bf16"}
    assert choose_spec(given(), None, None).source == "default"
    assert choose_spec(given(), None, remembered).quantization == "4bit"
    assert choose_spec(given(), configured, remembered).source == "org/configured"
    spec = choose_spec(given("--dtype", "fp32"), None, remembered)
    assert (spec.source, spec.dtype, spec.quantization) == ("org/remembered", "fp32", "none")
    spec = choose_spec(given("--model", "org/named"), configured, remembered)
    assert (spec.source, spec.dtype, spec.quantization) == ("org/named", "auto", "none")
    assert choose_spec(given("--device", "cpu"), {"source": 5}, remembered).device == "cpu"
