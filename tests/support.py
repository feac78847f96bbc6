"""What tests share outside fixtures: the command line run in this process, as every CLI
test calls it, and a wait for a condition in a test's own thread.

A subprocess pays ``import torch, transformers`` (about 5 s here) on every call; in
this process they are imported once. Tests whose subject is the process boundary
itself (signals, pipes, a pty, argv bytes, import hygiene) still start a process.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass


@dataclass
class CliRun:
    """What ``chat-tui ARGS`` did: named as :class:`subprocess.CompletedProcess` is."""

    returncode: int
    stdout: str
    stderr: str

    def __iter__(self) -> Iterator[object]:  # code, out, err = run_cli(...)
        return iter((self.returncode, self.stdout, self.stderr))


@contextlib.contextmanager
def _environment(changes: Mapping[str, str] | None) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in changes or {}}
    os.environ.update(changes or {})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_cli(*args: str, stdin: str = "", env: Mapping[str, str] | None = None) -> CliRun:
    """``chat-tui ARGS`` in this process, with ``stdin`` as its input and ``env`` added to
    the environment for the call: (exit code, stdout, stderr)."""
    from tui.cli import main

    out, err = io.StringIO(), io.StringIO()
    source = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
    saved_stdin = sys.stdin
    sys.stdin = source
    try:
        with _environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # --help, --version, argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        sys.stdin = saved_stdin
    return CliRun(code, out.getvalue(), err.getvalue())


WAIT_LIMIT = 30.0
"""Seconds :func:`wait_until` waits for a condition at most."""


def wait_until(condition: Callable[[], object], what: str, limit: float = WAIT_LIMIT) -> None:
    """Return once ``condition()`` holds (checked every 10 ms); fail with ``what`` after
    ``limit`` seconds. Never a fixed pause: a busy machine only makes it wait longer."""
    pause = threading.Event()
    for _ in range(int(limit / 0.01)):
        if condition():
            return
        pause.wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")
