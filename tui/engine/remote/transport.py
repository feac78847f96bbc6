"""The transport: an endpoint's kept ``httpx2`` client (:class:`_Kept`, with its
verifying TLS context) and one request on it (:class:`_Call`), which bounds every phase
(resolving, connecting, TLS, sending, waiting for headers, reading) by the timeout and
the stop event, and words a request that got no answer."""

from __future__ import annotations

import functools
import re
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import RemoteError, _cause, _detail, _Lost, _not_openai, _Silent, _size, _Stopped
from .redact import _quiet_url_logs

if TYPE_CHECKING:
    import httpx2

    from .endpoint import Endpoint

POLL = 0.05  # the longest the caller waits before the stop event is checked again
MAX_HEADERS = 64 * 1024  # all response headers together
MAX_LINE = 1 << 20  # one event-stream line (an OpenAI chunk is well under 1 KiB)
KEEPALIVE = 4.0  # seconds an idle connection is kept: under the 5 s of uvicorn and llama.cpp
DRAIN = 0.5  # after the last event, how long the end of the body is awaited (for reuse)
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


def _shut(sock: socket.socket | None) -> None:
    """Shut a socket down for both directions: a read or write blocked on it in another
    thread returns at once (closing it would not wake them). For a TLS socket this
    bypasses the TLS layer, so it is safe while another thread is inside it."""
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _Kept:
    """An endpoint's one kept ``httpx2.Client``, made at its first request (so the
    proxy variables are read then), and the sockets of the connections the client holds
    idle: a request that reuses one learns its socket from here, to shut it on a stop."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._verify = endpoint.verify_tls
        self._timeout = endpoint.timeout
        self._lock = threading.Lock()
        self._client: httpx2.Client | None = None
        self._idle: list[socket.socket] = []
        self.via: str | None = None  # the proxy the client goes through, once seen

    def client(self) -> httpx2.Client:
        with self._lock:
            if self._client is None:
                import httpx2

                self._client = httpx2.Client(
                    verify=_tls_context() if self._verify else False,
                    trust_env=True,  # HTTP(S)_PROXY, ALL_PROXY, NO_PROXY, SSL_CERT_FILE
                    timeout=self._timeout,  # each connect, write or read
                    follow_redirects=False,
                    limits=httpx2.Limits(max_keepalive_connections=1, keepalive_expiry=KEEPALIVE),
                    headers={
                        "User-Agent": "chat-tui",
                        "Accept": "text/event-stream, application/json",
                        "Accept-Encoding": "identity",  # bytes are bounded as they arrive
                    },
                )
                _quiet_url_logs()
                weakref.finalize(self, self._client.close)
            return self._client

    def kept(self, sock: socket.socket) -> None:
        """``sock``'s connection goes back to the pool, idle."""
        with self._lock:
            if sock not in self._idle:
                self._idle.append(sock)

    def claim(self) -> socket.socket | None:
        """The socket of the idle connection a request was just given. The pool keeps at
        most one idle connection, so it is the one still open, unless two requests
        overlapped just then (None: that request's stop waits for its answer instead)."""
        with self._lock:
            self._idle = [sock for sock in self._idle if sock.fileno() != -1]
            return self._idle.pop() if len(self._idle) == 1 else None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The verifying TLS context, made once: loading the CA store takes ~50 ms."""
    import httpcore2

    return httpcore2.default_ssl_context()  # honours SSL_CERT_FILE and SSL_CERT_DIR


class _Call:
    """One request on the endpoint's kept client.

    :meth:`open` sends it from a helper thread (resolve, connect, TLS, write, wait for
    the headers) while the caller waits at most :data:`POLL` at a time for the stop
    event and the timeout; giving up shuts the connection's socket (known from httpx's
    ``trace`` extension) so the helper returns too, and a request is never written after
    the caller gave up. The caller then reads the body with :meth:`pieces`; until
    :meth:`close` the helper watches the stop event and shuts the socket on a stop,
    which wakes a read blocked on a silent server."""

    def __init__(self, endpoint: Endpoint, stop: threading.Event) -> None:
        self.endpoint = endpoint
        self.stop = stop
        self.response: httpx2.Response | None = None
        self.complete = False  # the body was read to its end: the connection is kept
        self._kept = endpoint._http
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None  # the connection's socket, once known
        self._fresh = False  # this request opened its own connection
        self._gave_up = False
        self._outcome: Any = None
        self._answered = threading.Event()  # the helper has an outcome
        self._ended = threading.Event()  # the caller is done with the call
        self._drain_by: float | None = None
        self._raw: Iterator[bytes] = iter(())
        self._sent_at: float | None = None  # when the request began to go out

    # -- sending (helper thread) ------------------------------------------------------
    def _trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's ``trace`` extension: called on the helper thread at each step."""
        if event == "connection.connect_tcp.started":
            where = f"{info.get('host')}:{info.get('port')}"
            if where != self._origin():
                self._kept.via = where
        elif event.endswith(("connect_tcp.complete", "start_tls.complete")):
            sock = info["return_value"].get_extra_info("socket")
            with self._lock:
                self._sock, self._fresh = sock, True
                late = self._gave_up
            if late:
                _shut(sock)
        elif event == "http11.send_request_headers.started":
            if not self._fresh:
                sock = self._kept.claim()
                with self._lock:
                    self._sock = sock
            if self._gave_up:
                raise _Stopped  # never write a request nobody waits for

    def _origin(self) -> str:
        parts = urlsplit(self.endpoint._base)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"

    def _send(self, method: str, path: str, body: bytes | None, headers: dict) -> None:
        try:
            client = self._kept.client()
            request = client.build_request(
                method,
                self.endpoint._target(path),
                content=body,
                headers=headers,
                extensions={"trace": self._trace},
            )
            self._sent_at = time.monotonic()  # the timeout starts here, not at the import
            outcome: Any = client.send(request, stream=True)
        except BaseException as exc:  # handed to the caller, who words it
            outcome = exc
        with self._lock:
            self._outcome = outcome
            late = self._gave_up
        self._answered.set()
        if late:
            if not isinstance(outcome, BaseException):
                outcome.close()
            return
        while not self._ended.is_set():  # watch for a stop until the caller is done
            if self.stop.wait(POLL) or (
                self._drain_by is not None and time.monotonic() > self._drain_by
            ):
                with self._lock:  # never once the connection went back to the pool
                    if not self._ended.is_set():
                        _shut(self._sock)
                return

    def _give_up(self) -> None:
        with self._lock:
            self._gave_up = True
            outcome, sock = self._outcome, self._sock
        _shut(sock)
        if outcome is not None and not isinstance(outcome, BaseException):
            outcome.close()

    # -- the caller's side ------------------------------------------------------------
    def open(self, method: str, path: str, body: bytes | None) -> httpx2.Response:
        """Send the request and wait for the answer's status and headers, all within
        the endpoint's timeout."""
        ep = self.endpoint
        headers = {}
        key = ep.api_key()
        if key:
            if not _HEADER_SAFE.fullmatch(key):
                raise RemoteError(
                    f"The API key in {ep._key_source()} holds spaces, control or non-ASCII "
                    "characters, which cannot go in an HTTP header."
                )
            headers["Authorization"] = f"Bearer {key}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        threading.Thread(
            target=self._send,
            args=(method, path, body, headers),
            name="chat-tui-http",
            daemon=True,
        ).start()
        while not self._answered.wait(POLL):
            if self.stop.is_set():
                self._give_up()
                raise _Stopped
            sent_at = self._sent_at
            if sent_at is not None and time.monotonic() - sent_at > ep.timeout:
                self._give_up()
                raise RemoteError(f"{ep.host} did not answer within {ep.timeout:g} s.")
        if self.stop.is_set():
            self._give_up()
            raise _Stopped
        if isinstance(self._outcome, BaseException):
            raise self._unanswered(self._outcome)
        self.response = response = self._outcome
        stream = response.extensions.get("network_stream")
        if stream is not None:  # authoritative, also for a connection that was reused
            with self._lock:
                self._sock = stream.get_extra_info("socket")
        self._raw = response.iter_raw()
        size = sum(len(name) + len(value) + 4 for name, value in response.headers.raw)
        if size > MAX_HEADERS:
            raise self._headers_too_long()
        return response

    def _headers_too_long(self) -> RemoteError:
        return RemoteError(
            f"{self.endpoint.host} sent response headers over {_size(MAX_HEADERS)}; no "
            "reply was read."
        )

    def _unanswered(self, exc: BaseException) -> Exception:
        """One sentence for a request that got no answer."""
        import httpx2

        ep, host, via = self.endpoint, self.endpoint.host, self._kept.via
        where = host if via is None else f"the proxy {via} (for {host})"
        if isinstance(exc, _Stopped):
            return exc
        if isinstance(exc, httpx2.ProxyError):
            return RemoteError(
                f"The proxy {via or ''} would not connect to {host} ({_detail(str(exc))})."
            )
        if isinstance(exc, httpx2.TimeoutException):
            return RemoteError(f"{host} did not answer within {ep.timeout:g} s.")
        if isinstance(exc, httpx2.ConnectError):
            if cert := _cause(exc, ssl.SSLCertVerificationError):
                reason = _detail(cert.verify_message or cert.reason or "")
                return RemoteError(f"TLS with {host} failed ({reason}); check the certificate.")
            if tls := _cause(exc, ssl.SSLError):
                return RemoteError(
                    f"TLS with {host} failed ({_detail(tls.reason or tls)}); check the "
                    "certificate, and that the server speaks https."
                )
            if _cause(exc, socket.gaierror):
                return RemoteError(f"Cannot reach {where}: the host name does not resolve.")
            if _cause(exc, ConnectionRefusedError):
                running = "proxy" if via else "server"
                return RemoteError(
                    f"Cannot reach {where}: connection refused (is the {running} running?)."
                )
            error = _cause(exc, OSError)
            reason = _detail(error.strerror or error) if error else "connection failed"
            return RemoteError(f"Cannot reach {where}: {reason}.")
        if isinstance(exc, httpx2.RemoteProtocolError):
            if "without sending a response" in str(exc):
                return RemoteError(f"{host} closed the connection without answering.")
            if "buffer too long" in str(exc):
                return self._headers_too_long()
            return _not_openai(ep, "did not answer in HTTP (is it https?)")
        if isinstance(exc, httpx2.NetworkError):  # a read or write failed
            error = _cause(exc, OSError)
            return RemoteError(
                f"The connection to {host} dropped before the reply "
                f"({_detail(error.strerror or error) if error else 'no answer'})."
            )
        if isinstance(exc, ImportError):  # say socks5:// in ALL_PROXY without socksio
            return RemoteError(f"Cannot send a request to {host}: {_detail(str(exc))}")
        if isinstance(exc, httpx2.HTTPError | httpx2.InvalidURL | ValueError):
            return RemoteError(  # not quoted: the text may hold a URL with a key
                f"Cannot send a request to {host} ({exc.__class__.__name__}); check the URL "
                "and the proxy variables."
            )
        return exc  # not a network fault: a bug, raised as it is

    def pieces(self) -> Iterator[bytes]:
        """The body's bytes as they arrive (as sent: no content decoding). Raises
        :class:`_Stopped`, :class:`_Silent` or :class:`_Lost`; the end is the body's."""
        import httpx2

        assert self.response is not None
        try:
            for piece in self._raw:
                if self.stop.is_set():
                    raise _Stopped
                yield piece
        except httpx2.TransportError as exc:
            if self.stop.is_set():
                raise _Stopped from None
            if isinstance(exc, httpx2.TimeoutException):
                raise _Silent from None
            text = str(exc)
            if "without sending complete message body" in text:
                raise _Lost("cut short") from None
            if isinstance(exc, httpx2.RemoteProtocolError):
                chunked = "chunked" in self.response.headers.get("transfer-encoding", "")
                raise _Lost(f"malformed {'chunked' if chunked else 'HTTP'} framing") from None
            error = _cause(exc, OSError)
            raise _Lost(_detail(error.strerror or error) if error else "closed") from None
        if self.stop.is_set():
            raise _Stopped
        self.complete = True

    def read_all(self, limit: int) -> tuple[bytes, bool]:
        """The whole body, up to ``limit`` bytes (``True`` if there was more), within the
        endpoint's timeout."""
        ep = self.endpoint
        deadline = time.monotonic() + ep.timeout
        out = bytearray()
        try:
            for piece in self.pieces():
                out += piece
                if len(out) > limit:
                    return bytes(out[:limit]), True
                if time.monotonic() > deadline:
                    raise RemoteError(
                        f"{ep.host} did not send its whole answer within {ep.timeout:g} s."
                    )
        except _Silent:
            raise RemoteError(f"{ep.host} sent nothing for {ep.timeout:g} s.") from None
        return bytes(out), False

    def drain(self) -> None:
        """After the last event: read to the end of the body (a little, briefly), so
        the connection can be kept for the next request."""
        self._drain_by = time.monotonic() + DRAIN
        size = 0
        try:
            for piece in self.pieces():
                size += len(piece)
                if size > MAX_LINE:
                    return
        except (_Stopped, _Silent, _Lost):
            pass

    @property
    def who(self) -> str:
        """The server, as sentences name it: an error page may be the proxy's own."""
        via = self._kept.via
        return self.endpoint.host + (f", through the proxy {via}," if via else "")

    @property
    def content_type(self) -> str:
        assert self.response is not None
        return self.response.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def status(self) -> int:
        assert self.response is not None
        return self.response.status_code

    def close(self) -> None:
        with self._lock:
            self._ended.set()
            self._gave_up = True
            sock = self._sock
        if self.response is not None:
            if self.complete and sock is not None:
                self._kept.kept(sock)  # before close() hands the connection back
            self.response.close()
        elif not self._answered.is_set():
            self._give_up()
