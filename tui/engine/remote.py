"""A second backend: any server that speaks the OpenAI chat-completions API with
server-sent events (``transformers serve``, vLLM, TGI, the llama.cpp server, Ollama).

HTTP goes through one kept ``httpx2`` client per :class:`Endpoint`: connections are
reused, proxies come from ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``/``NO_PROXY``, TLS
is verified (``verify_tls=False`` turns that off). This module keeps the bounds, the stop
and the sentences. Every fault (server or proxy down, refused, 401/404/429/5xx, a web
page or other non-API answer, a malformed or truncated event stream, a drop mid-reply,
a stall past the timeout, an oversized answer) becomes one sentence; a reply that was
partly streamed is returned with what arrived, ``stop_reason='error'``, so the caller
keeps it.

**The server is not trusted.** Everything it controls is bounded:

* time to the response headers: the endpoint's ``timeout`` (resolve, connect, TLS, send
  and wait for headers together); while streaming, ``timeout`` without reply data
  (silence, or only keep-alive comments and empty events, count alike); an answer that
  is not a stream must arrive whole within ``timeout`` of its headers;
* response headers: :data:`MAX_HEADERS`; one event-stream line: :data:`MAX_LINE`
  (parsed in linear time, the line buffer never holds more than that);
* the reply's text: what was asked for (:data:`BYTES_PER_TOKEN` UTF-8 bytes per requested
  ``max_tokens``, at least :data:`MIN_REPLY`) and never more than :data:`MAX_REPLY`;
  past that, reading stops and the text so far is kept with the reason;
* error texts: :data:`MAX_ERROR_BODY` read, :data:`MAX_DETAIL` characters quoted, as
  plain text (the UI neutralizes controls where it shows them);
* invalid UTF-8 becomes U+FFFD (each line is decoded whole, so a character split between
  two reads still decodes), lone surrogates from JSON escapes too.

**Stopping is prompt in every phase** (resolving, connecting, TLS, sending, waiting for
headers, streaming). A request is sent from a helper thread (:class:`_Call`) while the
caller waits at most :data:`POLL` at a time, checking the stop event and the timeout;
the caller then reads the answer itself, and the helper watches the stop event until
the call ends: a stop shuts the connection's socket down, which wakes a blocked read at
once. So a signal handler that sets the event (one-shot mode runs this on the main
thread) is honoured within a fraction of a second however fast the server floods. A
stop is ``stop_reason='stopped'``.

**The API key** is read from an environment variable (default ``OPENAI_API_KEY``) when a
request is made, and sent as ``Authorization: Bearer <key>``. A key may also be written
into the URL, ``http://user:KEY@host/v1``: the password is the key (or, when there is no
password, the user name is), percent-decoding applied; the environment variable wins
when both are set. The URL's credentials are removed from :attr:`Endpoint.url` and
:attr:`Endpoint.host` at once (so from every message, every saved file and the repr) and
kept only in a private attribute. Query parameters whose names look like credentials
(``key``, ``api_key``, ``access_token``, ``sig``, ``password``, ...) are still sent, as
some servers take keys that way, but :attr:`Endpoint.url` shows them as ``***``;
:func:`redact_url` does the same for any URL string, fragment included.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from ..reasons import StopReason
from ..safe_text import fix_surrogates
from .chat_format import template_arguments, with_system
from .errors import EngineError
from .generation import (
    GenerationResult,
    GenerationStats,
    TurnInfo,
)
from .progress import Progress
from .protocol import Capabilities, ChatEngine, ChatRequest, OnStart, OnText, OnWait
from .reasoning import ReplySplitter
from .settings import GenerationSettings
from .spec import ModelSpec

if TYPE_CHECKING:
    import httpx2

DEFAULT_TIMEOUT = 60.0
POLL = 0.05  # the longest the caller waits before the stop event is checked again
MAX_HEADERS = 64 * 1024  # all response headers together
MAX_LINE = 1 << 20  # one event-stream line (an OpenAI chunk is well under 1 KiB)
# a reply's text in UTF-8 bytes, whatever was asked for: well under a conversation
# file's limit (store.MAX_FILE_BYTES, 16 MiB), so that what was received can be saved
MAX_REPLY = 2 << 20
MIN_REPLY = 64 * 1024  # the least a reply may hold before it counts as oversized
BYTES_PER_TOKEN = 64  # allowance per requested token (the longest real tokens are ~16)
MAX_ERROR_BODY = 64 * 1024  # how much of an error answer is read
MAX_MODEL_LIST = 8 << 20  # a /models answer
MAX_DETAIL = 200  # characters of a server's own error text quoted in a sentence
KEEPALIVE = 4.0  # seconds an idle connection is kept: under the 5 s of uvicorn and llama.cpp
DRAIN = 0.5  # after the last event, how long the end of the body is awaited (for reuse)
REDACTED = "***"


class RemoteError(EngineError):
    pass


class _Stopped(Exception):
    """The stop event was set: unwinds to the caller, which reports ``stopped``."""


class _Lost(Exception):
    """The connection broke under us (reset, cut short, malformed framing)."""


class _Silent(Exception):
    """Nothing arrived within the endpoint's timeout."""


class _Secret:
    """A credential that never shows itself in a repr, a str or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<hidden>"

    __str__ = __repr__


# names of query (or fragment) parameters whose values are shown as ***: api_key,
# x-api-key, access_token, sig, X-Amz-Signature, password, client_secret, auth, ...
_SECRET_NAME = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential|session", re.I)


def _redact_params(text: str) -> str:
    items = []
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if eq and value and _SECRET_NAME.search(unquote_plus(name)):
            item = f"{name}={REDACTED}"
        items.append(item)
    return "&".join(items)


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` removed and the values of query or fragment
    parameters that look like credentials shown as ``***``; never raises, whatever the
    string."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    cut = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if found != -1:
            cut = min(cut, found)
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        authority = authority.rpartition("@")[2]
    tail, hash_mark, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    tail = path + question + _redact_params(query) + hash_mark + _redact_params(fragment)
    return f"{scheme}{sep}{authority}{tail}"


@dataclass
class Endpoint:
    url: str  # base URL ending in /v1 (added if missing); credentials removed or ***
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = DEFAULT_TIMEOUT
    verify_tls: bool = True
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        given = str(self.url).strip()
        url = given.rstrip("/")
        if "://" not in url:
            url = "http://" + url
        # a URL that does not parse may hide a key anywhere: then it is not echoed at all
        shown = "The endpoint URL" if "@" in given else repr(redact_url(given))
        bad = RemoteError(f"{shown} is not an http(s) URL.")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises ValueError for a bad port
            hostname = parts.hostname
        except ValueError:
            raise bad from None
        if parts.scheme not in ("http", "https") or not hostname:
            raise bad
        userinfo, at, hostport = parts.netloc.rpartition("@")
        # not dataclass fields: never in repr(), asdict() or anything saved
        self._url_key: _Secret | None = None
        if at:
            user, colon, password = userinfo.partition(":")
            key = unquote(password if colon and password else user)
            self._url_key = _Secret(key) if key else None
        path = parts.path.rstrip("/")
        if not path.endswith("/v1"):
            path += "/v1"
        self._base = urlunsplit((parts.scheme, hostport, path, "", ""))
        self._query = _Secret(parts.query)  # sent as given (it may carry a key)
        self.url = redact_url(urlunsplit((parts.scheme, hostport, path, parts.query, "")))
        self._hostport = hostport
        self._http = _Kept(self)
        if parts.scheme == "http" and not _is_loopback(hostname):
            self.warnings.append(
                f"{hostname} is reached over plain http: prompts, replies and the API key "
                "travel unencrypted."
            )

    @property
    def host(self) -> str:
        return self._hostport

    def api_key(self) -> str | None:
        """The key to send: the environment variable's, else the one from the URL."""
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        return self._url_key.reveal() if self._url_key is not None else None

    def _key_source(self) -> str:
        return f"${self.api_key_env}" if os.environ.get(self.api_key_env) else "the endpoint URL"

    def _target(self, path: str) -> str:
        query = self._query.reveal()
        return self._base + path + (f"?{query}" if query else "")


def _is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _size(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10} KiB"
    return f"{n} bytes"


def _detail(value: Any) -> str:
    """A server's own text for a sentence: one line, plain, at most MAX_DETAIL chars."""
    try:
        if isinstance(value, str):
            text = value
        elif isinstance(value, dict | list):
            text = json.dumps(value, ensure_ascii=False)
        else:
            text = str(value)
    except (TypeError, ValueError, RecursionError):
        text = ""
    text = " ".join(fix_surrogates(text[: MAX_DETAIL * 4]).split())
    if len(text) > MAX_DETAIL:
        text = text[: MAX_DETAIL - 1] + "…"
    return text


def _loads(text: str) -> Any:
    """JSON from the server, or ``_INVALID`` (never RecursionError or ValueError)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _INVALID


_INVALID = object()
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


def _not_openai(endpoint: Endpoint, how: str, who: str | None = None) -> RemoteError:
    return RemoteError(
        f"{who or endpoint.host} {how}: this is not an OpenAI-compatible API at "
        f"{endpoint.url}; check the URL."
    )


def _cause(exc: BaseException | None, kind: type[BaseException]) -> Any:
    """The first exception of ``kind`` among ``exc`` and its causes, or None."""
    for _ in range(8):
        if exc is None or isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


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


class _RedactUrls:
    """A logging filter: httpx logs each request's URL, which may carry a key."""

    def filter(self, record: Any) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(str(arg)) if "://" in str(arg) else arg for arg in record.args
            )
        return True


def _quiet_url_logs() -> None:
    import logging

    logger = logging.getLogger("httpx2")
    if not any(isinstance(f, _RedactUrls) for f in logger.filters):
        logger.addFilter(_RedactUrls())


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


def _looks_like_html(content_type: str, body: bytes) -> bool:
    if content_type in ("text/html", "application/xhtml+xml"):
        return True
    return body.lstrip()[:1] == b"<"


def _http_error(call: _Call, model: str | None) -> RemoteError:
    """One sentence for a non-200 answer (reads at most MAX_ERROR_BODY of it)."""
    endpoint, status = call.endpoint, call.status
    try:
        body, _cut = call.read_all(MAX_ERROR_BODY)
    except (RemoteError, _Lost):
        body = b""
    host = call.who
    if _looks_like_html(call.content_type, body):
        if status in (401, 403, 429) or status >= 500:
            detail = "a web page, not an API answer"
        else:
            return _not_openai(endpoint, f"answered {status} with a web page", host)
    else:
        text = body.decode("utf-8", "replace")
        payload = _loads(text)
        detail = ""
        if isinstance(payload, dict):
            err = payload.get("error", payload)
            if isinstance(err, dict):
                detail = err.get("message") or err.get("detail") or ""
            else:
                detail = err
        elif payload is _INVALID:
            detail = text
        else:
            detail = payload
        detail = _detail(detail)
    suffix = f" ({detail})" if detail else ""
    if status == 401 or status == 403:
        return RemoteError(
            f"{host} refused the request ({status}): set the API key in "
            f"${endpoint.api_key_env} (or name another variable with --api-key-env){suffix}."
        )
    if status == 404:
        what = f"model {model!r}" if model else "the chat endpoint"
        return RemoteError(f"{host} does not know {what} (404){suffix}; check the URL and model.")
    if status == 407:
        return RemoteError(
            f"The proxy for {endpoint.host} wants credentials (407): put them in the proxy "
            "URL in $HTTP_PROXY or $HTTPS_PROXY."
        )
    if status == 429:
        return RemoteError(f"{host} is rate-limiting requests (429); retry in a moment{suffix}.")
    if status >= 500:
        return RemoteError(f"{host} failed with a server error ({status}){suffix}; retry.")
    return RemoteError(f"{host} answered {status}{suffix}.")


def list_models(endpoint: Endpoint, stop_event: threading.Event | None = None) -> list[str]:
    """The model ids the server lists (``GET /models``)."""
    call = _Call(endpoint, stop_event or threading.Event())
    host = endpoint.host
    try:
        call.open("GET", "/models", None)
        if call.status != 200:
            raise _http_error(call, None)
        body, cut = call.read_all(MAX_MODEL_LIST)
        if _looks_like_html(call.content_type, body):
            raise _not_openai(endpoint, "answered with a web page")
        if cut:
            raise RemoteError(f"{host} sent a model list over {_size(MAX_MODEL_LIST)}.")
        data = _loads(body.decode("utf-8", "replace"))
        if data is _INVALID:
            raise _not_openai(endpoint, "answered with something other than JSON")
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise _not_openai(endpoint, "answered with JSON that is not a model list")
        models = []
        for item in data["data"]:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str | int):
                raise RemoteError(f"{host} sent a malformed model list.")
            models.append(fix_surrogates(str(item["id"])))
        return models
    except _Stopped:
        raise RemoteError(f"Stopped asking {host} for its models.") from None
    except _Lost as exc:
        raise RemoteError(f"The connection to {host} dropped ({exc}).") from None
    finally:
        call.close()


def request_body(
    model: str, messages: list[dict[str, str]], settings: GenerationSettings
) -> dict[str, Any]:
    """The chat-completions request: generation settings mapped to the API's fields."""
    values = dict(settings.values)
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if "max_new_tokens" in values:
        body["max_tokens"] = values["max_new_tokens"]
    sampling = values.get("do_sample")
    if sampling is False or values.get("temperature") == 0:
        body["temperature"] = 0.0
    elif "temperature" in values:
        body["temperature"] = values["temperature"]
    for ours, theirs in (
        ("top_p", "top_p"),
        ("top_k", "top_k"),
        ("min_p", "min_p"),
        ("seed", "seed"),
        ("repetition_penalty", "repetition_penalty"),
    ):
        if ours in values:
            body[theirs] = values[ours]
    if values.get("stop_strings"):
        stops = values["stop_strings"]
        body["stop"] = [stops] if isinstance(stops, str) else list(stops)
    template_kwargs = template_arguments(settings.template_kwargs())
    if template_kwargs:  # vLLM, SGLang, llama.cpp and transformers serve read it
        body["chat_template_kwargs"] = template_kwargs
    return body


def reply_limit(body: dict[str, Any]) -> int:
    """How many UTF-8 bytes of reply text a request may bring back."""
    asked = body.get("max_tokens")
    if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
        return min(MAX_REPLY, max(MIN_REPLY, asked * BYTES_PER_TOKEN))
    return MAX_REPLY


class _LineTooLong(Exception):
    pass


class _Lines:
    """Split a byte stream into lines in linear time; a line over MAX_LINE raises."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.scanned = 0  # bytes of ``buffer`` known to hold no newline

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self.buffer
        buffer += data
        lines = []
        start = 0
        while (newline := buffer.find(b"\n", max(start, self.scanned))) != -1:
            if newline - start > MAX_LINE:
                raise _LineTooLong
            lines.append(bytes(buffer[start:newline]))
            start = newline + 1
        if start:
            del buffer[:start]
        self.scanned = len(buffer)
        if len(buffer) > MAX_LINE:
            raise _LineTooLong
        return lines

    def rest(self) -> bytes:
        return bytes(self.buffer)


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 53:
        return value
    return 0


REASONING_DELTAS = ("reasoning_content", "reasoning")


class _Reply:
    """What the server streamed so far: the text (held compactly), the stats, and the
    checks on what an OpenAI chunk must look like."""

    def __init__(
        self,
        endpoint: Endpoint,
        limit: int,
        asked: Any,
        stats: GenerationStats,
        on_text: Callable[[str], None] | None,
    ) -> None:
        self.endpoint = endpoint
        self.limit = limit
        self.asked = asked
        self.stats = stats
        self.on_text = on_text
        self.parts = ReplySplitter(None, on_text)  # the reasoning and the answer
        self.size = 0  # UTF-8 bytes of text, reasoning included
        self.thought_chunks = 0
        self.chunks = 0
        self.events = 0
        self.finish: str | None = None
        self.first_at: float | None = None
        self.progress_at = time.monotonic()  # the last event that carried reply data

    def text(self) -> str:
        return self.parts.answer

    def reasoning(self) -> str:
        return self.parts.reasoning

    def malformed(self) -> RemoteError:
        return RemoteError(
            f"{self.endpoint.host} sent a malformed event stream; the partial reply was kept."
        )

    def add(self, text: str, thought: bool = False) -> None:
        """A piece of the answer, or of the reasoning (``thought``): both count towards
        the bound on what a reply may bring back."""
        text = fix_surrogates(text)
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.chunks += 1
        self.thought_chunks += thought
        self.size += len(text) if text.isascii() else len(text.encode("utf-8"))
        self.parts.put(thought, text)
        if self.size > self.limit:
            host = self.endpoint.host
            if self.limit < MAX_REPLY:
                raise RemoteError(
                    f"{host} sent more than was asked for (over {_size(self.limit)} of text "
                    f"for max_tokens={self.asked}); stopped reading, the partial reply was kept."
                )
            raise RemoteError(
                f"{host} sent a reply over {_size(MAX_REPLY)}; stopped reading, the partial "
                "reply was kept."
            )

    def line(self, raw: bytes) -> bool:
        """Handle one event-stream line; True once the stream says it is done."""
        line = raw.strip()
        if not line or line.startswith(b":"):
            return False
        if not line.startswith(b"data:"):
            if self.events == 0 and not line.startswith((b"event:", b"id:", b"retry:")):
                if line.startswith(b"<"):
                    raise _not_openai(self.endpoint, "answered with a web page")
                raise _not_openai(
                    self.endpoint, "answered with something other than an event stream"
                )
            return False
        data = line[5:].strip()
        if data == b"[DONE]":
            return True
        first = self.events == 0
        self.events += 1
        chunk = _loads(data.decode("utf-8", "replace"))
        if first and not (
            isinstance(chunk, dict) and {"choices", "error", "usage"}.intersection(chunk)
        ):
            raise _not_openai(self.endpoint, "sent events that are not chat-completion chunks")
        if not isinstance(chunk, dict):
            raise self.malformed()
        self.chunk(chunk)
        return False

    def chunk(self, chunk: dict[str, Any]) -> None:
        if "error" in chunk:
            err = chunk["error"]
            message = _detail(err.get("message", err) if isinstance(err, dict) else err)
            when = "mid-reply" if self.chunks else "instead of a reply"
            raise RemoteError(f"{self.endpoint.host} reported an error {when}: {message}.")
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.stats.prompt_tokens = _count(usage.get("prompt_tokens"))
            self.stats.new_tokens = _count(usage.get("completion_tokens"))
            details = usage.get("completion_tokens_details")
            if isinstance(details, dict) and _count(details.get("reasoning_tokens")):
                self.stats.reasoning_tokens = _count(details.get("reasoning_tokens"))
            self.progress_at = time.monotonic()
        choices = chunk.get("choices")
        if choices is None:
            return
        if not isinstance(choices, list):
            raise self.malformed()
        for choice in choices:
            if not isinstance(choice, dict):
                raise self.malformed()
            delta = choice.get("delta", choice.get("message")) or {}
            if not isinstance(delta, dict):
                raise self.malformed()
            # vLLM, llama.cpp and transformers serve send the reasoning apart, as
            # reasoning_content or (newer vLLM, Ollama) reasoning: one of them, once
            thought = next(
                (delta[k] for k in REASONING_DELTAS if isinstance(delta.get(k), str) and delta[k]),
                None,
            )
            if thought is not None:
                self.add(thought, thought=True)
            text = delta.get("content")
            if isinstance(text, str) and text:
                self.add(text)
            reason = choice.get("finish_reason")
            if reason:
                self.finish = _detail(reason)[:40]
            # text, reasoning, tool calls or the end count; a role alone or {} does not
            if reason or any(value for name, value in delta.items() if name != "role"):
                self.progress_at = time.monotonic()

    def whole(self, body: bytes) -> None:
        """A server that ignored ``stream``: one JSON chat completion."""
        answer = _loads(body.decode("utf-8", "replace"))
        if answer is _INVALID:
            raise _not_openai(self.endpoint, "answered with something other than JSON")
        if not (isinstance(answer, dict) and {"choices", "error"}.intersection(answer)):
            raise _not_openai(self.endpoint, "answered with JSON that is not a chat completion")
        self.chunk(answer)
        if self.finish is None:
            self.finish = "stop"


def _stream_events(call: _Call, reply: _Reply) -> None:
    endpoint = call.endpoint
    timeout = endpoint.timeout
    lines = _Lines()
    ended = False
    try:
        for data in call.pieces():
            try:
                found = lines.feed(data)
            except _LineTooLong:
                raise RemoteError(
                    f"{endpoint.host} sent an event-stream line over {_size(MAX_LINE)}; "
                    "stopped reading, the partial reply was kept."
                ) from None
            for line in found:
                if call.stop.is_set():
                    raise _Stopped
                if reply.line(line):
                    ended = True
                    break
            if ended:
                break
            if time.monotonic() - reply.progress_at > timeout:
                raise RemoteError(
                    f"{endpoint.host} sent no reply data for {timeout:g} s, only keep-alive "
                    "lines; the partial reply was kept."
                )
    except _Silent:
        raise RemoteError(
            f"{endpoint.host} sent nothing for {timeout:g} s; the partial reply was kept."
        ) from None
    if ended:
        call.drain()  # the end of the body follows: read it, so the connection is kept
        return
    if lines.rest().strip() and reply.line(lines.rest()):  # a last line without "\n"
        return
    if reply.finish is None:
        raise RemoteError(
            f"The connection to {endpoint.host} closed mid-reply, before the reply ended; "
            "the partial reply was kept."
        )


def stream_chat(
    endpoint: Endpoint,
    model: str,
    messages: list[dict[str, str]],
    settings: GenerationSettings,
    stop_event: threading.Event | None = None,
    on_text: Callable[[str], None] | None = None,
) -> GenerationResult:
    """Stream one reply. Never raises for a fault of the server or the network: the
    partial text comes back with ``stop_reason='error'`` and the sentence in ``error``;
    a stop in any phase comes back at once with ``stop_reason='stopped'``."""
    event = stop_event or threading.Event()
    stats = GenerationStats()
    started = time.perf_counter()
    body = request_body(model, messages, settings)
    reply = _Reply(endpoint, reply_limit(body), body.get("max_tokens"), stats, on_text)
    call = _Call(endpoint, event)
    try:
        call.open("POST", "/chat/completions", json.dumps(body).encode("utf-8"))
        if call.status != 200:
            raise _http_error(call, model)
        kind = call.content_type
        if kind in ("text/html", "application/xhtml+xml"):
            raise _not_openai(endpoint, "answered with a web page")
        if kind == "application/json" or kind.endswith("+json"):
            whole, cut = call.read_all(reply.limit + MAX_LINE)
            if cut:
                raise RemoteError(
                    f"{endpoint.host} sent an answer over {_size(reply.limit + MAX_LINE)}; "
                    "no reply was kept."
                )
            reply.whole(whole)
        else:
            reply.progress_at = time.monotonic()
            _stream_events(call, reply)
        stats.stop_reason = StopReason.LENGTH if reply.finish == "length" else StopReason.EOS
    except _Stopped:
        stats.stop_reason = StopReason.STOPPED
    except RemoteError as exc:  # reported as a result, with whatever was streamed
        stats.stop_reason = StopReason.ERROR
        stats.error = str(exc)
    except _Lost as exc:
        stats.stop_reason = StopReason.ERROR
        if reply.chunks:
            stats.error = (
                f"The connection to {endpoint.host} dropped mid-reply ({exc}); the partial "
                "reply was kept."
            )
        else:
            stats.error = f"The connection to {endpoint.host} dropped before the reply ({exc})."
    finally:
        call.close()
    finished = time.perf_counter()
    stats.total_seconds = finished - started
    if not stats.new_tokens:
        stats.new_tokens = reply.chunks  # servers without usage: one chunk is about one token
    if reply.first_at is not None:
        stats.time_to_first_token = reply.first_at - started
        if stats.new_tokens > 1 and finished > reply.first_at:
            stats.tokens_per_second = (stats.new_tokens - 1) / (finished - reply.first_at)
    reply.parts.finish()
    if reply.parts.had_reasoning:
        stats.reasoning_seconds = reply.parts.thought_seconds
        if stats.reasoning_tokens is None:
            stats.reasoning_tokens = reply.thought_chunks  # about one token a chunk
    return GenerationResult(reply.text(), stats, reasoning=reply.reasoning())


@dataclass
class RemoteModel:
    """Stands where a LoadedModel does, for the UI and the store."""

    spec: ModelSpec
    endpoint: Endpoint
    name: str
    dtype: str = "remote"
    footprint_bytes: int = 0
    load_seconds: float = 0.0
    context_limit: int | None = None

    @property
    def device(self) -> str:
        return self.endpoint.host


class RemoteEngine(ChatEngine):
    """The :class:`~tui.engine.protocol.ChatEngine` interface over an OpenAI-compatible
    server. The chat-completions API has no portable way to continue a partial
    assistant message, so ``continue_reply`` is off and such a request is refused."""

    capabilities = Capabilities(
        kind="endpoint",
        weights_in_memory=False,
        continue_reply=False,
        kv_cache=False,
        token_count=False,
        speculative=False,
    )

    def __init__(self, endpoint: Endpoint, settings: GenerationSettings | None = None) -> None:
        self.endpoint = endpoint
        self.settings = settings or GenerationSettings()
        self.loaded: RemoteModel | None = None
        self.reuse_cache = False

    @property
    def endpoint_url(self) -> str | None:
        return self.endpoint.url

    def load(self, spec: ModelSpec, progress: Progress | None = None) -> RemoteModel:
        report = progress or (lambda f, s: None)
        report(0.1, f"asking {self.endpoint.host} for its models")
        models = list_models(self.endpoint)
        source = spec.source
        if source in ("", "default"):
            if not models:
                raise RemoteError(f"{self.endpoint.host} lists no models; pass one with --model.")
            source = models[0]
        elif models and source not in models:
            raise RemoteError(
                f"{self.endpoint.host} does not serve {source!r}; it lists: "
                + ", ".join(_detail(m)[:80] for m in models[:8])
                + ("…" if len(models) > 8 else "")
                + "."
            )
        remote = RemoteModel(spec.with_changes(source=source), self.endpoint, source)
        self.loaded = remote
        report(1.0, f"using {source} on {self.endpoint.host}")
        return remote

    def load_assistant(self, spec: ModelSpec | None, progress: Progress | None = None) -> None:
        if spec is not None:
            raise RemoteError("Speculative decoding is up to the server with an endpoint.")

    def chat(
        self,
        request: ChatRequest,
        *,
        stop_event: threading.Event | None = None,
        on_text: OnText | None = None,
        on_start: OnStart | None = None,
        on_wait: OnWait | None = None,
    ) -> GenerationResult:
        """Requests run at once, each on its own connection: the server batches them."""
        if self.loaded is None:
            raise RemoteError("No endpoint model is selected yet.")
        if request.continue_final:
            self.refuse_continue()
        msgs = with_system(request.messages, request.system_prompt)
        if on_start is not None:
            on_start(TurnInfo(context_limit=self.loaded.context_limit))
        settings = request.settings or self.settings
        return stream_chat(self.endpoint, self.loaded.name, msgs, settings, stop_event, on_text)
