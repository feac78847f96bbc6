"""Helpers shared by the store tests: one healthy conversation, the CLI run
in-process, a guard against hangs, and file snapshots."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support import run_cli as _run_cli
from tui.store import Conversation, SessionStore

HEALTHY_NAME = "healthy chat"


def add_healthy(store: SessionStore, name: str = HEALTHY_NAME) -> Conversation:
    conv = store.new(name=name, model={"source": "org/model"})
    conv.append("user", "hello there, zebra")
    conv.append("assistant", "general kenobi")
    store.save(conv)
    return conv


def run_cli(*args: str) -> tuple[int, str, str]:
    """``chat-tui ARGS`` in this process: (exit code, stdout, stderr)."""
    code, out, err = _run_cli(*args)
    return code, out, err


def finishes(function: Callable[[], Any], seconds: float = 20.0) -> Any:
    """``function()``'s result; fails (instead of hanging the suite) if it takes longer
    than a generous ``seconds``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = function()
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def snapshot_files(folder: Path) -> dict[Path, bytes]:
    """The bytes of every regular file directly in ``folder`` (not dot-files)."""
    return {
        p: p.read_bytes()
        for p in folder.iterdir()
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    }
