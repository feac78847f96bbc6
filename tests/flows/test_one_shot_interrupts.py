"""One-shot mode never loses a word: every way a reply ends early saves exactly the
text already printed, says so only when it did, and disk faults are one sentence."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui.store import SessionStore

ROOT = Path(__file__).resolve().parents[2]
LONG = ["do_sample=false", "max_new_tokens=1500", "min_new_tokens=1500"]


def start(env, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def read_some(proc: subprocess.Popen, at_least: int = 40, timeout: float = 120) -> bytes:
    """Read the reply's first bytes (the model is generating once they arrive)."""
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < at_least:
        assert time.monotonic() < deadline, "no reply on stdout"
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, proc.stderr.read().decode()
        got += chunk
    return got


def the_reply(data_dir: Path, name: str = "s"):
    store = SessionStore(data_dir)
    info = store.find(name)
    assert info is not None
    return store.load(info.id).transcript


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
)
def test_an_interrupt_saves_exactly_what_was_printed(
    test_env, tiny_llama_dir, tmp_path, sig, code
) -> None:
    proc = start(
        test_env,
        "--model", str(tiny_llama_dir), "--data-dir", str(tmp_path), "--session", "s",
        "--raw", "--prompt", "Write a long story about a cat.", *LONG,
    )  # fmt: skip
    first = read_some(proc)
    proc.send_signal(sig)
    rest, err = proc.communicate(timeout=60)
    printed = (first + rest).decode("utf-8", "replace")
    assert proc.returncode == code, err.decode()
    user, reply = the_reply(tmp_path)
    assert user.content == "Write a long story about a cat."
    assert reply.stop_reason == "interrupted"
    assert reply.content and printed.rstrip("\n") == reply.content.rstrip("\n")
    if sig == signal.SIGINT:
        assert err.decode().strip().splitlines()[-1] == (
            "chat-tui: Interrupted; the partial reply was saved."
        )


def test_no_save_never_claims_a_save(test_env, tiny_llama_dir, tmp_path) -> None:
    proc = start(
        test_env,
        "--model", str(tiny_llama_dir), "--data-dir", str(tmp_path), "--no-save",
        "--prompt", "Write a long story about a cat.", *LONG,
    )  # fmt: skip
    read_some(proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.decode().strip().splitlines()[-1] == "chat-tui: Interrupted."
    assert "saved" not in err.decode()
    assert not (tmp_path / "sessions").exists() or not list((tmp_path / "sessions").glob("*.toml"))


def test_a_closed_pipe_stops_quietly_and_keeps_the_reply(test_env, tiny_llama_dir, tmp_path):
    proc = start(
        test_env,
        "--model", str(tiny_llama_dir), "--data-dir", str(tmp_path), "--session", "s",
        "--prompt", "Write.", *LONG,
    )  # fmt: skip
    read_some(proc)
    proc.stdout.close()  # `chat-tui ... | head -c 40`
    started = time.monotonic()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert time.monotonic() - started < 30, "kept generating for nobody"
    assert err == b"", err.decode()
    assert proc.returncode == 141  # 128 + SIGPIPE, as `git log | head -1`
    assert the_reply(tmp_path)[-1].stop_reason == "interrupted"


def one_line_error(done) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("chat-tui: ") and "Traceback" not in lines[0]
    return lines[0]


# The disk faults below are about files, not the process: the command line runs in
# this process (the ``cli`` fixture), as the other CLI tests do.
def test_a_data_dir_that_is_a_file_prints_the_reply_then_one_sentence(
    cli, tiny_llama_dir, tmp_path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    done = cli(
        "--model", str(tiny_llama_dir), "--data-dir", str(blocker),
        "--prompt", "hello", "do_sample=false", "max_new_tokens=5",
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout.strip(), "the reply was not printed"
    line = one_line_error(done)
    assert "not-a-folder" in line and "save" in line.lower()
    assert blocker.read_text() == "a file"


def test_an_unreadable_session_is_reported_and_nothing_is_created(
    cli, tiny_llama_dir, tmp_path
) -> None:
    store = SessionStore(tmp_path)
    conv = store.new(name="notes")
    conv.append("user", "hi")
    store.save(conv)
    path = store.path_for(conv.id)
    path.write_bytes(b"this is = not [ toml")
    before = sorted(p.name for p in store.folder.iterdir())
    done = cli(
        "--model", str(tiny_llama_dir), "--data-dir", str(tmp_path),
        "--session", "notes", "--prompt", "hello", "max_new_tokens=3",
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert path.name in one_line_error(done)
    assert sorted(p.name for p in store.folder.iterdir()) == before
    assert path.read_bytes() == b"this is = not [ toml"


@pytest.mark.parametrize("where", ["--prompt", "--session"])
def test_arguments_that_are_not_utf8_get_one_sentence(test_env, tmp_path, where) -> None:
    args = ["--data-dir", str(tmp_path), "--prompt", "hi"]
    if where == "--session":
        args += ["--session", os.fsdecode(b"s\xff")]
    else:
        args[-1] = os.fsdecode(b"bad \xff")
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=ROOT, env=test_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "not valid UTF-8" in one_line_error(done)


def test_an_existing_data_dir_keeps_its_mode(cli, tiny_llama_dir, tmp_path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    done = cli(
        "--model", str(tiny_llama_dir), "--data-dir", str(shared),
        "--prompt", "hi", "do_sample=false", "max_new_tokens=3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / "sessions").stat().st_mode) == 0o700
