"""The web server behind ``chat-tui --serve``: textual-serve's, behind a token.

textual-serve starts one app process per websocket connection and relays the
terminal between it and xterm.js in the page. Here:

- Every request needs the token: the page and the static files take it as
  ``?token=``, the websocket (the only route that starts an app) in its path. A
  request without it gets 403 before any handler runs, so no app process starts for
  it. Tokens are compared in constant time. Only the routes below exist (no
  textual-serve download route: chat-tui delivers no files).
- At most ``max_sessions`` app processes run at once (each loads its own model); the
  next page gets a page saying so, the next websocket a message and a close.
- Each app runs in its own session (a Ctrl-C in the server's terminal reaches the
  server only). A closed tab, and the server stopping, end it with SIGTERM, which the
  app handles like a hangup (every tab saved, then exit); SIGKILL only if it has not
  ended ``STOP_GRACE`` seconds later. If the server itself is killed, the app's stdin
  reaches EOF and :class:`tui.serve.driver.ServedDriver` ends it the same way.
- Nothing is logged per request (aiohttp's access log would carry the token), and
  every log line goes through a formatter that blanks the token out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

log = logging.getLogger("chat-tui.serve")

STOP_GRACE = 20.0  # seconds an app gets to save and end before it is killed
DRIVER = "tui.serve.driver:ServedDriver"
HERE = Path(__file__).parent

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Session(AppService):
    """One browser tab's app: its own process (and model), in its own session."""

    def __init__(self, argv: Sequence[str], **kwargs: Any) -> None:
        super().__init__(" ".join(argv), **kwargs)
        self.argv = list(argv)
        self.ending = False  # the tab closed or the server is stopping
        self._stopping: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        environment = super()._build_environment(width=width, height=height)
        environment["TEXTUAL_DRIVER"] = DRIVER
        return environment

    async def _open_app_process(self, width: int = 80, height: int = 24):
        # exec, not textual-serve's shell: the pid is the app's, and no shell quoting
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._build_environment(width=width, height=height),
            start_new_session=True,
        )
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    async def run(self) -> None:
        try:
            await super().run()
        finally:  # the app ended (or died): the tab's socket closes with it
            with contextlib.suppress(Exception):
                await self.remote_close()

    async def stop(self) -> None:
        """End the app: SIGTERM (it saves every tab, as on a hangup), then wait;
        SIGKILL to its process group if it has not ended after ``STOP_GRACE`` s.
        Safe to call more than once, from several tasks."""
        self.ending = True
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE)
            except TimeoutError:
                log.warning("An app did not end %d s after SIGTERM; killed it.", STOP_GRACE)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if self._task is not None:
            await self._task


class RedactingFormatter(logging.Formatter):
    """Formats log lines with every occurrence of the token blanked out."""

    def __init__(self, token: str, fmt: str) -> None:
        super().__init__(fmt)
        self._token = token

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace(self._token, "<token>")


def quiet_logging(token: str) -> logging.Handler:
    """Warnings and errors on stderr, the token never in them; nothing per request."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(token, "chat-tui --serve: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    return handler


def _page(status: int, title: str, text: str) -> web.Response:
    title, text = escape(title), escape(text)
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>chat-tui: {title}</title>"
        "<style>body{font-family:monospace;background:#0c181f;color:#eee;"
        "max-width:40em;margin:4em auto;line-height:1.5}</style></head>"
        f"<body><h1>{title}</h1><p>{text}</p></body></html>"
    )
    return web.Response(status=status, text=page, content_type="text/html")


FORBIDDEN_TEXT = (
    "This chat-tui server opens only with the link it printed when it started "
    "(the link carries a token, which is the password)."
)


class ChatServer(Server):
    """textual-serve's server, with a token on every route and a cap on sessions."""

    def __init__(
        self,
        app_argv: Sequence[str],
        *,
        token: str,
        host: str,
        port: int,
        max_sessions: int,
    ) -> None:
        super().__init__(" ".join(app_argv), host=host, port=port, title="chat-tui")
        self.app_argv = list(app_argv)
        self._token = token.encode("utf-8")
        self.max_sessions = max_sessions
        self.sessions: set[Session] = set()
        self.stopped = asyncio.Event()
        self.bound_port: int | None = None

    # -- who may come in ---------------------------------------------------------------------
    def token_matches(self, given: str | None) -> bool:
        if not given:
            return False
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._token)

    @web.middleware
    async def require_token(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.match_info.get("token") or request.query.get("token")
        if not self.token_matches(given):
            return _page(403, "403 Forbidden", FORBIDDEN_TEXT)
        response = await handler(request)
        if not response.prepared:
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        return response

    async def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.require_token])
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE), autoescape=True)
        app.add_routes(
            [
                web.get("/", self.handle_index, name="index"),
                web.get("/ws/{token}", self.handle_websocket, name="websocket"),
                web.static("/static", self.statics_path, name="static"),
            ]
        )
        return app

    # -- sessions ----------------------------------------------------------------------------
    def open_sessions(self) -> int:
        """Apps running for an open tab (one that is ending no longer counts)."""
        return sum(1 for session in self.sessions if not session.ending)

    def full_text(self) -> str:
        n = self.max_sessions
        return (
            f"{n} browser {'tab is' if n == 1 else 'tabs are'} using this chat-tui server "
            f"already, the most it allows (--max-sessions {n}): each tab runs its own "
            "chat-tui with its own copy of the model in memory. Close one of them, then "
            "reload this page."
        )

    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        if self.open_sessions() >= self.max_sessions:
            return _page(503, "All sessions are in use", self.full_text())
        token = self._token.decode("utf-8")
        context = {
            "font_size": max(6, min(48, to_int(request.query.get("fontsize", "16"), 16))),
            "static": "/static/",
            "query": f"?token={token}",
            "ws_path": f"/ws/{token}",
        }
        return aiohttp_jinja2.render_template("page.html", request, context)

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
        websocket = web.WebSocketResponse(heartbeat=15)
        await websocket.prepare(request)
        if self.open_sessions() >= self.max_sessions or self.stopped.is_set():
            text = "Stopping." if self.stopped.is_set() else self.full_text()
            await websocket.send_bytes(f"\r\nchat-tui: {text}\r\n".encode())
            await websocket.close(code=1013, message=b"no free session")
            return websocket
        width = max(10, min(1000, to_int(request.query.get("width", "80"), 80)))
        height = max(5, min(500, to_int(request.query.get("height", "24"), 24)))
        session = Session(
            self.app_argv,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=websocket.close,
            download_manager=self.download_manager,
        )
        self.sessions.add(session)
        try:
            await session.start(width, height)
            await self._process_messages(websocket, session)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("A browser session failed.")
        finally:
            try:
                await session.stop()
            finally:
                self.sessions.discard(session)
                with contextlib.suppress(Exception):
                    await websocket.close()
        return websocket

    async def stop_sessions(self) -> None:
        """End every app (each saves first) and wait for all of them."""
        self.stopped.set()
        await asyncio.gather(
            *(session.stop() for session in list(self.sessions)), return_exceptions=True
        )

    # -- running -----------------------------------------------------------------------------
    async def run(self, started: Callable[[int], None]) -> int:
        """Serve until SIGINT, SIGTERM or SIGHUP; then end every app and return the
        signal's number. ``started(port)`` is called once the port is listening."""
        loop = asyncio.get_running_loop()
        received: list[int] = []

        def on_signal(number: int) -> None:
            received.append(number)
            self.stopped.set()

        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(number, on_signal, number)
        runner = web.AppRunner(
            await self._make_app(), access_log=None, handle_signals=False, shutdown_timeout=5
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.bound_port = runner.addresses[0][1]
            started(self.bound_port)
            await self.stopped.wait()
            await site.stop()  # no new connections while the apps save
            await self.stop_sessions()
        finally:
            await self.stop_sessions()
            await runner.cleanup()
        return received[0] if received else 0
