"""What --list, --search, --export and --import print carries no control characters,
whatever the conversations, their names or their file names hold; exports are clean
(Markdown) or lossless yet escaped (JSON); a stdout that fails is one sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile import CORPUS, TERMINAL_CONTROLS, controls_in
from tui.store import SessionStore
from tui.store import export as exporter

ROOT = Path(__file__).resolve().parents[2]
UNSAFE = TERMINAL_CONTROLS | set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def cli(data_dir: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHAT_TUI_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "--data-dir", str(data_dir), *args],
        cwd=ROOT,
        env=env,
        capture_output="stdout" not in kwargs,
        timeout=120,
        **kwargs,
    )


def clean(raw: bytes) -> str:
    """The output as text; fails on invalid UTF-8 or any control character."""
    text = raw.decode("utf-8")
    found = {c for c in text if c in UNSAFE}
    assert not found, sorted(found)
    return text


def arg_safe(text: str) -> bool:
    """Text that can be passed as a command-line argument (no NUL, no lone surrogate)."""
    return "\0" not in text and not any("\ud800" <= c <= "\udfff" for c in text)


@pytest.fixture
def hostile_store(tmp_path: Path) -> SessionStore:
    store = SessionStore(tmp_path / "data")
    for label, text in CORPUS.items():
        conv = store.new(
            name=f"{label} {text[:200]}",
            title=text[:300] or "t",
            model={"source": text[:100]},
            system_prompt=text,
        )
        conv.append("user", f"needle {text}")
        conv.append("assistant", f"{text} needle", stop_reason="interrupted", model=text[:50])
        store.save(conv)
    # hostile file names: one readable conversation, one unreadable file
    good = store.new(title="good one")
    good.append("user", "needle in a file with a strange name")
    good.id = "\x1b]0;pwned\x07\x9b2J"
    store.save(good)
    (store.folder / "\x1b[2J\x1b[H\u202ebad.toml").write_text("not = [toml")
    (store.folder / "\x1b]52;c;cm0=\x07.toml").write_bytes(b"\xff")
    return store


def test_list_prints_no_controls(hostile_store: SessionStore) -> None:
    done = cli(hostile_store.root, "--list")
    assert done.returncode == 0, done.stderr
    out = clean(done.stdout)
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "TITLE", "MODEL", "UPDATED", "MESSAGES"]
    assert len(lines) == 1 + len(CORPUS) + 1 + 2
    assert sum(line.startswith("unreadable: ") for line in lines) == 2
    assert "␛" in out  # escapes are shown, not acted on


def test_search_prints_no_controls(hostile_store: SessionStore) -> None:
    done = cli(hostile_store.root, "--search", "needle")
    assert done.returncode == 0, done.stderr
    out = clean(done.stdout)
    headers = [line for line in out.splitlines() if not line.startswith("    ")]
    assert len(headers) == len(CORPUS) + 1
    for query in ("\x1b]0;x\x07", "\u202eevil"):
        done = cli(hostile_store.root, "--search", query)
        assert done.returncode == 0
        clean(done.stdout)


@pytest.mark.parametrize("label", sorted(CORPUS))
def test_exports_print_no_controls(hostile_store: SessionStore, label: str) -> None:
    name = f"{label} {CORPUS[label][:200]}"
    conv = hostile_store.load(hostile_store.find(name).id)
    if not arg_safe(name):  # NUL or a lone surrogate cannot be an argument: use the id
        name = conv.id
    md = cli(hostile_store.root, "--export", name, "--format", "md")
    assert md.returncode == 0, md.stderr
    assert clean(md.stdout).startswith("# ")
    js = cli(hostile_store.root, "--export", name, "--format", "json")
    assert js.returncode == 0, js.stderr
    data = json.loads(clean(js.stdout))  # lossless: the exact text comes back
    assert data["messages"][-1]["content"] == conv.transcript[-1].content
    assert data["chat_tui"]["system_prompt"] == conv.system_prompt


def test_export_functions_on_every_corpus_string() -> None:
    from tui.store import Conversation

    conv = Conversation(id="x", title=CORPUS["osc title (BEL)"], system_prompt=CORPUS["dcs"])
    conv.model = {"source": CORPUS["csi clear screen"]}
    for text in CORPUS.values():
        conv.append("user", text)
        conv.append("assistant", text, error=text, stop_reason="error")
    md = exporter.to_markdown(conv)
    assert not controls_in(md) and "\ud800" not in md
    js = exporter.to_json(conv)
    assert not {c for c in js if c in UNSAFE or "\ud800" <= c <= "\udfff"}
    js.encode("utf-8")
    back = json.loads(js)
    assert back["messages"][0]["content"] == conv.system_prompt
    assert [m["content"] for m in back["messages"][1:]] == [m.content for m in conv.transcript]
    assert back["chat_tui"]["title"] == conv.title


def test_import_and_errors_print_no_controls(hostile_store: SessionStore, tmp_path: Path) -> None:
    source = tmp_path / "\x1b]0;t\x07in.json"
    source.write_text(json.dumps({"messages": [{"role": "user", "content": CORPUS["dcs"]}]}))
    done = cli(hostile_store.root, "--import", str(source))
    assert done.returncode == 0, done.stderr
    assert clean(done.stdout).startswith("Imported ")
    missing = cli(hostile_store.root, "--export", "\x1b[2Jnope\x9b")
    assert missing.returncode == 1
    clean(missing.stderr)
    broken = tmp_path / "\x1b[31mbroken.json"
    broken.write_text("{")
    done = cli(hostile_store.root, "--import", str(broken))
    assert done.returncode == 1 and b"Traceback" not in done.stderr
    clean(done.stderr)


# -- a stdout that fails -----------------------------------------------------------------


@pytest.fixture
def one(tmp_path: Path) -> SessionStore:
    store = SessionStore(tmp_path / "data")
    conv = store.new(name="one")
    conv.append("user", "x" * 200_000)  # more than any pipe or stdio buffer holds
    store.save(conv)
    return store


def test_export_to_a_full_disk_is_one_sentence(one: SessionStore) -> None:
    with open("/dev/full", "wb") as full:
        done = cli(one.root, "--export", "one", stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == 1
    assert done.stderr == (
        b"chat-tui: Could not write to standard output: no space left on device.\n"
    )


@pytest.mark.parametrize("args", [("--export", "one"), ("--list",), ("--search", "x")])
def test_a_closed_pipe_is_silent(one: SessionStore, args: tuple[str, ...]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: the first write fails with EPIPE
    try:
        done = cli(one.root, *args, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert done.returncode == 141  # 128 + SIGPIPE, as `git log | head -1`
    assert done.stderr == b""
