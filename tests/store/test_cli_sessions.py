"""The store's CLI surface: --session, --continue, --no-save, --list, --export, --import,
--search, and SIGTERM during a reply."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import CliRun, run_cli
from tui.engine import LocalEngine, ModelSpec
from tui.store import SessionStore

ROOT = Path(__file__).resolve().parents[2]


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> CliRun:
    """``chat-tui ARGS`` in this process, with what ``env`` changes in the environment."""
    changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
    return run_cli(*args, stdin=stdin or "", env=changed)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def ask(env, model: Path, data_dir: Path, prompt: str, *extra: str):
    return cli(
        env,
        "--model",
        str(model),
        "--data-dir",
        str(data_dir),
        "--prompt",
        prompt,
        "do_sample=false",
        "max_new_tokens=6",
        *extra,
    )


def test_session_continues_with_earlier_turns_in_context(
    test_env, tiny_llama_dir: Path, data_dir: Path
) -> None:
    first = ask(test_env, tiny_llama_dir, data_dir, "My name is Ada.", "--session", "named")
    assert first.returncode == 0, first.stderr
    second = ask(test_env, tiny_llama_dir, data_dir, "What is my name?", "--session", "named")
    assert second.returncode == 0, second.stderr
    store = SessionStore(data_dir)
    conv = store.load(store.find("named").id)
    transcript = conv.transcript
    assert [m.role for m in transcript] == ["user", "assistant", "user", "assistant"]
    assert transcript[0].content == "My name is Ada."
    assert transcript[1].content == first.stdout.rstrip("\n")
    # the second reply was generated from the whole history, not the last question alone
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(tiny_llama_dir)))
    history = [m.as_chat() for m in transcript[:3]]
    assert transcript[3].prompt_tokens == engine.count_tokens(history)
    assert transcript[3].prompt_tokens > engine.count_tokens([history[-1]])
    assert transcript[3].stop_reason in ("eos", "length")


def test_continue_and_no_save(test_env, tiny_llama_dir: Path, data_dir: Path) -> None:
    assert ask(test_env, tiny_llama_dir, data_dir, "first").returncode == 0
    assert ask(test_env, tiny_llama_dir, data_dir, "second", "--continue").returncode == 0
    assert ask(test_env, tiny_llama_dir, data_dir, "unsaved", "--no-save").returncode == 0
    infos = SessionStore(data_dir).list()
    assert len(infos) == 1 and infos[0].messages == 4
    nothing = cli(test_env, "--data-dir", str(data_dir / "empty"), "--continue", "--prompt", "x")
    assert nothing.returncode == 1
    assert nothing.stderr.strip() == "chat-tui: There is no saved conversation to continue."


def test_list_reports_unreadable_files_and_leaves_them(test_env, tiny_llama_dir, data_dir) -> None:
    assert ask(test_env, tiny_llama_dir, data_dir, "hello", "--session", "ok").returncode == 0
    broken = data_dir / "sessions" / "broken.toml"
    broken.write_bytes(b'schema_version = 2\nid = "broken"\n[[messages]\n')
    before = broken.read_bytes()
    out = cli(test_env, "--data-dir", str(data_dir), "--list")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TITLE", "MODEL", "UPDATED", "MESSAGES"]
    assert lines[1].startswith("ok") and lines[1].rstrip().endswith("2")
    assert any(line.startswith("unreadable: broken.toml: not valid TOML") for line in lines)
    assert broken.read_bytes() == before


def test_export_import_search(test_env, tiny_llama_dir, data_dir: Path, tmp_path: Path) -> None:
    assert (
        ask(
            test_env, tiny_llama_dir, data_dir, "Tell me about zebras", "--session", "zoo"
        ).returncode
        == 0
    )
    md = cli(test_env, "--data-dir", str(data_dir), "--export", "zoo", "--format", "md")
    assert md.returncode == 0 and "## User\n\nTell me about zebras" in md.stdout
    js = cli(test_env, "--data-dir", str(data_dir), "--export", "zoo", "--format", "json")
    data = json.loads(js.stdout)
    assert data["messages"][0] == {"role": "user", "content": "Tell me about zebras"}
    file = tmp_path / "zoo.json"
    file.write_text(js.stdout)
    imported = cli(test_env, "--data-dir", str(data_dir), "--import", str(file))
    assert imported.returncode == 0 and imported.stdout.startswith(f"Imported {file} as ")
    found = cli(test_env, "--data-dir", str(data_dir), "--search", "ZEBRAS")
    assert found.returncode == 0
    headers = [line for line in found.stdout.splitlines() if not line.startswith(" ")]
    # the import keeps the name with a number, so every name stays one conversation
    assert sorted(headers) == ["zoo  Tell me about zebras", "zoo (2)  Tell me about zebras"]
    assert found.stdout.count("    user: Tell me about zebras") == 2
    missing = cli(test_env, "--data-dir", str(data_dir), "--export", "nope")
    assert missing.returncode == 1 and "No saved conversation called 'nope'" in missing.stderr


def test_sigterm_mid_reply_saves_partial_reply_marked_interrupted(
    test_env, tiny_llama_dir: Path, data_dir: Path
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "--model",
            str(tiny_llama_dir),
            "--data-dir",
            str(data_dir),
            "--session",
            "long",
            "--prompt",
            "Go on forever",
            "do_sample=false",
            "min_new_tokens=100000",
            "max_new_tokens=100000",
        ],
        cwd=ROOT,
        env=test_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = proc.stdout.read(1)  # the reply has started streaming
    assert first
    proc.send_signal(signal.SIGTERM)
    rest, _err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    store = SessionStore(data_dir)
    reply = store.load(store.find("long").id).transcript[-1]
    assert reply.role == "assistant" and reply.stop_reason == "interrupted"
    assert reply.content and (first + rest).startswith(reply.content[:1])
    assert 0 < reply.new_tokens < 100000


def test_sighup_is_handled_like_an_ssh_drop(test_env, tiny_llama_dir, data_dir) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "--model",
            str(tiny_llama_dir),
            "--data-dir",
            str(data_dir),
            "--prompt",
            "x",
            "min_new_tokens=100000",
            "max_new_tokens=100000",
        ],
        cwd=ROOT,
        env=test_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.read(1)
    time.sleep(0.05)
    proc.send_signal(signal.SIGHUP)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGHUP
    (info,) = SessionStore(data_dir).list()
    assert info.messages == 2


def test_an_endpoint_conversation_lists_the_servers_model(tmp_path) -> None:
    """`--list` showed "default" (the local spec an endpoint conversation also records)."""
    from tests.support import run_cli
    from tui.store import SessionStore

    store = SessionStore(tmp_path)
    conv = store.new(
        title="remote chat",
        model={"source": "default", "endpoint": "http://box:8000/v1", "endpoint_model": "qwen3"},
    )
    conv.append("user", "hi")
    store.save(conv)
    code, out, _ = run_cli("--data-dir", str(tmp_path), "--list")
    assert code == 0
    row = next(line for line in out.splitlines() if "remote chat" in line)
    assert "qwen3 @ http://box:8000/v1" in row and "default" not in row
