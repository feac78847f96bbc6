"""Helpers for the ``chat-tui --serve`` tests: the server as a user starts it (a real
process: the process boundary, signals and children are what these tests are about),
and browser tabs played by websocket clients that read the page's terminal with a VT
emulator."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import psutil

from bench.serve import START_LIMIT, Screen, Served, start_server, wait_for

__all__ = ["START_LIMIT", "Screen", "Served", "Tab", "async_wait_for", "start_server", "wait_for"]


async def async_wait_for(condition: Callable[[], Any], what: str, timeout: float = START_LIMIT):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


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
