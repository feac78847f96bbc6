"""Helpers for the ``chat-tui --serve`` tests: the server as a user starts it (a real
process: the process boundary, signals and children are what these tests are about),
and browser tabs played by websocket clients that read the page's terminal with a VT
emulator."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
URL = re.compile(r"(http://\S+/)\?token=(\S+)")
START_LIMIT = 120  # seconds: generous for a busy 2-core machine; never a measurement


def wait_for(condition: Callable[[], Any], what: str, timeout: float = START_LIMIT) -> Any:
    """Poll ``condition`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


async def async_wait_for(condition: Callable[[], Any], what: str, timeout: float = START_LIMIT):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


@dataclass
class Served:
    """A running ``chat-tui --serve`` and everything it printed."""

    process: subprocess.Popen
    data_dir: Path
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    base: str = ""  # http://127.0.0.1:PORT/
    token: str = ""

    @property
    def url(self) -> str:
        return f"{self.base}?token={self.token}"

    def ws_url(self, token: str | None = None) -> str:
        return f"ws{self.base[4:]}ws/{self.token if token is None else token}"

    def apps(self) -> list[psutil.Process]:
        """The app processes the server runs (its children)."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=START_LIMIT)

    def conversations(self) -> list[dict[str, Any]]:
        folder = self.data_dir / "sessions"
        found = []
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            try:
                found.append(tomllib.loads(path.read_text(encoding="utf-8")))
            except (OSError, tomllib.TOMLDecodeError):
                continue  # being replaced this instant: read again on the next poll
        return found

    def replies(self) -> list[str]:
        return [
            m["content"]
            for conv in self.conversations()
            for m in conv.get("messages", [])
            if m.get("role") == "assistant"
        ]


def _drain(stream, into: list[str]) -> None:
    for line in iter(stream.readline, ""):
        into.append(line)


class Screen:
    """What the page's terminal shows: the app's output fed to a VT emulator."""

    def __init__(self, columns: int = 120, rows: int = 36) -> None:
        import pyte

        self.columns, self.rows = columns, rows
        self._screen = pyte.Screen(columns, rows)
        self._stream = pyte.ByteStream(self._screen)
        self.received = 0

    def resize(self, columns: int, rows: int) -> None:
        self.columns, self.rows = columns, rows
        self._screen.resize(rows, columns)

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        self._stream.feed(data)

    @property
    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self._screen.display)

    def shows(self, text: str) -> bool:
        return text in self.text


class Tab:
    """One browser tab as textual.js is one: a websocket that sends keys and sizes
    and draws what it receives."""

    def __init__(self, served: Served, token: str | None = None) -> None:
        self.served = served
        self.token = token
        self.screen = Screen()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._session = None
        self._socket = None
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> Tab:
        import aiohttp

        self._session = aiohttp.ClientSession()
        url = f"{self.served.ws_url(self.token)}?width={self.screen.columns}&height={self.screen.rows}"
        self._socket = await self._session.ws_connect(url)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        import aiohttp

        async for message in self._socket:
            if message.type == aiohttp.WSMsgType.BINARY:
                self.screen.feed(message.data)
        self.close_code = self._socket.close_code
        self.closed.set()

    async def type(self, text: str) -> None:
        await self._socket.send_str(json.dumps(["stdin", text]))

    async def shows(self, text: str, timeout: float = START_LIMIT) -> None:
        await async_wait_for(lambda: self.screen.shows(text), f"{text!r} on the screen", timeout)

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            await self._reader
        if self._session is not None:
            await self._session.close()
        self._socket = self._reader = self._session = None

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def no_orphans(pids: list[int]) -> bool:
    return all(pid_gone(pid) for pid in pids)


def start_server(args, test_env: dict[str, str], data_dir: Path) -> Served:
    """``chat-tui --serve --port 0 --data-dir DATA_DIR ARGS``, once its link is printed."""
    env = {**test_env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "tui.cli", "--serve", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--data-dir", str(data_dir), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    served = Served(process, data_dir)
    for stream, into in ((process.stdout, served.out), (process.stderr, served.err)):
        threading.Thread(target=_drain, args=(stream, into), daemon=True).start()

    def link():
        assert process.poll() is None, f"--serve ended: {''.join(served.err)}"
        return next((m for m in map(URL.search, served.out) if m), None)

    try:
        found = wait_for(link, "the printed link")
    except BaseException:
        process.kill()
        raise
    served.base, served.token = found.group(1), found.group(2)
    return served
