"""A second backend: any server that speaks the OpenAI chat-completions API with
server-sent events (``transformers serve``, vLLM, TGI, the llama.cpp server, Ollama).

Standard library only, over a raw non-blocking socket (plain or TLS). Every fault
(server down, refused, 401/404/429/5xx, a web page or other non-API answer, a malformed
or truncated event stream, a drop mid-reply, a stall past the timeout, an oversized
answer) becomes one sentence; a reply that was partly streamed is returned with what
arrived, ``stop_reason='error'``, so the caller keeps it.

**The server is not trusted.** Everything it controls is bounded:

* time to the response headers: the endpoint's ``timeout`` (connect, TLS, send and wait
  for headers together), and while streaming, ``timeout`` without a byte;
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
headers, streaming): no socket wait lasts longer than :data:`POLL` before the stop event
is checked, and each step parses at most :data:`READ_SIZE` bytes, so a signal handler
that sets the event (one-shot mode runs this on the main thread) is honoured within
a fraction of a second however fast the server floods. A stop is ``stop_reason='stopped'``.

**The API key** is read from an environment variable (default ``OPENAI_API_KEY``) when a
request is made, and sent as ``Authorization: Bearer <key>``. A key may also be written
into the URL, ``http://user:KEY@host/v1``: the password is the key (or, when there is no
password, the user name is), percent-decoding applied; the environment variable wins
when both are set. The URL's credentials are removed from :attr:`Endpoint.url` and
:attr:`Endpoint.host` at once (so from every message, every saved file and the repr) and
kept only in a private attribute; :func:`redact_url` does the same for any URL string.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from ..reasons import StopReason
from ..safe_text import fix_surrogates
from .chat_format import with_system
from .errors import EngineError
from .generation import (
    GenerationResult,
    GenerationStats,
    TurnInfo,
)
from .progress import Progress
from .protocol import Capabilities, ChatEngine, ChatRequest, OnStart, OnText
from .settings import GenerationSettings
from .spec import ModelSpec

DEFAULT_TIMEOUT = 60.0
POLL = 0.1  # the longest any socket wait lasts before the stop event is checked again
READ_SIZE = 64 * 1024  # bytes taken from the socket (and so parsed) per step
MAX_HEADERS = 64 * 1024  # all response headers together
MAX_LINE = 1 << 20  # one event-stream line (an OpenAI chunk is well under 1 KiB)
MAX_REPLY = 16 << 20  # a reply's text in UTF-8 bytes, whatever was asked for
MIN_REPLY = 64 * 1024  # the least a reply may hold before it counts as oversized
BYTES_PER_TOKEN = 64  # allowance per requested token (the longest real tokens are ~16)
MAX_ERROR_BODY = 64 * 1024  # how much of an error answer is read
MAX_MODEL_LIST = 8 << 20  # a /models answer
MAX_DETAIL = 200  # characters of a server's own error text quoted in a sentence


class RemoteError(EngineError):
    pass


class _Stopped(Exception):
    """The stop event was set: unwinds to the caller, which reports ``stopped``."""


class _Lost(Exception):
    """The connection failed under us (reset, broken pipe, TLS error mid-stream)."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(_detail(exc.strerror or str(exc) or exc.__class__.__name__))


class _BadFraming(Exception):
    """Malformed chunked framing; carries the body bytes decoded before it."""


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


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` removed; never raises, whatever the string."""
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
    return f"{scheme}{sep}{authority}{tail}"


@dataclass
class Endpoint:
    url: str  # base URL ending in /v1 (added if missing); credentials removed
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
        shown = "The endpoint URL" if "@" in given else repr(given)
        bad = RemoteError(f"{shown} is not an http(s) URL.")
        try:
            parts = urlsplit(url)
            port = parts.port
            hostname = parts.hostname
        except ValueError:
            raise bad from None
        if parts.scheme not in ("http", "https") or not hostname:
            raise bad
        userinfo, at, hostport = parts.netloc.rpartition("@")
        # not a dataclass field: never in repr(), asdict() or anything saved
        self._url_key: _Secret | None = None
        if at:
            user, colon, password = userinfo.partition(":")
            key = unquote(password if colon and password else user)
            self._url_key = _Secret(key) if key else None
        path = parts.path.rstrip("/")
        if not path.endswith("/v1"):
            path += "/v1"
        self.url = urlunsplit((parts.scheme, hostport, path, parts.query, ""))
        self._scheme = parts.scheme
        self._hostname = hostname
        self._port = port or (443 if parts.scheme == "https" else 80)
        self._hostport = hostport
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
_HAVE_POLL = hasattr(select, "poll")
_PENDING = {errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK, errno.EAGAIN}
_PENDING.add(getattr(errno, "WSAEWOULDBLOCK", errno.EWOULDBLOCK))  # Windows
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


def _not_openai(endpoint: Endpoint, how: str) -> RemoteError:
    return RemoteError(
        f"{endpoint.host} {how}: this is not an OpenAI-compatible API at {endpoint.url}; "
        "check the URL."
    )


class _Exchange:
    """One HTTP/1.1 request and its response over a non-blocking socket.

    Every wait lasts at most :data:`POLL` before the stop event is checked (raising
    :class:`_Stopped`); every read takes at most :data:`READ_SIZE` bytes."""

    def __init__(self, endpoint: Endpoint, stop: threading.Event) -> None:
        self.endpoint = endpoint
        self.stop = stop
        self.sock: socket.socket | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.last_data = time.monotonic()  # when a byte last arrived
        self.truncated = False  # the connection ended before the body's framing did
        self._raw = bytearray()  # received, not yet decoded from the framing
        self._framing = "close"  # "close", "length" or "chunked"
        self._remaining = 0  # bytes left in the body ("length") or in this chunk
        self._chunk_state = "size"  # "size", "data", "crlf", "trailer"
        self._eof = False
        self._done = False
        self._broken: RemoteError | None = None  # bad framing, raised after the good bytes

    # -- waiting ----------------------------------------------------------------------
    def _check(self) -> None:
        if self.stop.is_set():
            raise _Stopped

    def _poll(self, write: bool, timeout: float) -> bool:
        assert self.sock is not None
        timeout = max(0.001, min(POLL, timeout))
        fd = self.sock.fileno()
        if _HAVE_POLL:
            poller = select.poll()
            poller.register(fd, select.POLLOUT if write else select.POLLIN)
            return bool(poller.poll(timeout * 1000))
        ready = (
            select.select([], [fd], [], timeout) if write else select.select([fd], [], [], timeout)
        )
        return bool(ready[0] or ready[1])

    def _wait(self, write: bool, deadline: float) -> bool:
        """Wait up to POLL for the socket; the stop event and ``deadline`` are checked."""
        self._check()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RemoteError(
                f"{self.endpoint.host} did not answer within {self.endpoint.timeout:g} s."
            )
        return self._poll(write, remaining)

    # -- request ----------------------------------------------------------------------
    def open(self, method: str, path: str, body: bytes | None) -> None:
        """Connect, send the request and read the response's status and headers, all
        within the endpoint's timeout."""
        request = self._request(method, path, body)
        deadline = time.monotonic() + self.endpoint.timeout
        self._connect(deadline)
        try:
            self._send(request, deadline)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may still have answered (say, 413); read that
        self._read_head(deadline)

    def _request(self, method: str, path: str, body: bytes | None) -> bytes:
        ep = self.endpoint
        parts = urlsplit(ep.url)
        target = quote(parts.path.rstrip("/") + path, safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
        try:
            host = ep._hostname.encode("idna").decode("ascii")
        except UnicodeError:
            host = quote(ep._hostname, safe="")
        if ":" in host:
            host = f"[{host}]"
        default = 443 if ep._scheme == "https" else 80
        if ep._port != default:
            host += f":{ep._port}"
        lines = [
            f"{method} {target} HTTP/1.1",
            f"Host: {host}",
            "User-Agent: chat-tui",
            "Accept: text/event-stream, application/json",
            "Accept-Encoding: identity",
            "Connection: close",
        ]
        key = ep.api_key()
        if key:
            if not _HEADER_SAFE.fullmatch(key):
                raise RemoteError(
                    f"The API key in {ep._key_source()} holds spaces, control or non-ASCII "
                    "characters, which cannot go in an HTTP header."
                )
            lines.append(f"Authorization: Bearer {key}")
        if body is not None:
            lines.append("Content-Type: application/json")
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        return head + (body or b"")

    def _resolve(self, deadline: float) -> list[tuple]:
        ep = self.endpoint
        host, port = ep._hostname, ep._port
        try:
            ipaddress.ip_address(host)
            return socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )
        except ValueError:
            pass
        except OSError as exc:
            raise RemoteError(f"Cannot reach {ep.host}: {exc.strerror or exc}.") from None
        # getaddrinfo cannot be interrupted: run it aside and keep checking the stop event
        box: dict[str, Any] = {}
        done = threading.Event()

        def resolve() -> None:
            try:
                box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=resolve, name="chat-tui-resolve", daemon=True).start()
        while not done.wait(POLL):
            self._check()
            if time.monotonic() > deadline:
                raise RemoteError(f"{ep.host} did not resolve within {ep.timeout:g} s.")
        self._check()
        if "error" in box or not box.get("infos"):
            raise RemoteError(f"Cannot reach {ep.host}: the host name does not resolve.")
        return box["infos"]

    def _connect(self, deadline: float) -> None:
        ep = self.endpoint
        code = errno.ECONNREFUSED
        for family, kind, proto, _name, address in self._resolve(deadline):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:
                code = exc.errno or errno.EAFNOSUPPORT
                continue
            sock.setblocking(False)
            self.sock = sock
            try:
                code = sock.connect_ex(address)
                if code in _PENDING:
                    while not self._wait(True, deadline):
                        pass
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            except OSError as exc:
                code = exc.errno or errno.ECONNABORTED
            if code == 0:
                break
            sock.close()
            self.sock = None
        else:
            if code == errno.ECONNREFUSED:
                raise RemoteError(
                    f"Cannot reach {ep.host}: connection refused (is the server running?)."
                )
            raise RemoteError(f"Cannot reach {ep.host}: {os.strerror(code)}.")
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if ep._scheme == "https":
            self._handshake(deadline)

    def _handshake(self, deadline: float) -> None:
        ep = self.endpoint
        context = ssl.create_default_context()
        if not ep.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        assert self.sock is not None
        try:
            self.sock = context.wrap_socket(
                self.sock, server_hostname=ep._hostname, do_handshake_on_connect=False
            )
            while True:
                try:
                    self.sock.do_handshake()
                    return
                except ssl.SSLWantReadError:
                    self._wait(False, deadline)
                except ssl.SSLWantWriteError:
                    self._wait(True, deadline)
        except ssl.SSLCertVerificationError as exc:
            reason = _detail(exc.verify_message or exc.reason or "")
            raise RemoteError(
                f"TLS with {ep.host} failed ({reason}); check the certificate."
            ) from None
        except ssl.SSLError as exc:
            raise RemoteError(
                f"TLS with {ep.host} failed ({_detail(exc.reason or exc)}); check the "
                "certificate, and that the server speaks https."
            ) from None
        except OSError as exc:
            raise RemoteError(
                f"TLS with {ep.host} failed ({_detail(exc.strerror or exc)})."
            ) from None

    def _send(self, data: bytes, deadline: float) -> None:
        assert self.sock is not None
        view = memoryview(data)
        while view:
            self._check()
            try:
                sent = self.sock.send(view[:READ_SIZE])
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                self._wait(True, deadline)
                continue
            except ssl.SSLWantReadError:
                self._wait(False, deadline)
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise
            except OSError as exc:
                raise _Lost(exc) from None
            view = view[sent:]

    # -- response ---------------------------------------------------------------------
    def _recv(self) -> bytes | None:
        """Up to READ_SIZE bytes; None if none arrived within POLL; b"" at the end."""
        self._check()
        assert self.sock is not None
        for attempt in (0, 1):
            try:
                data = self.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                write = False
            except ssl.SSLWantWriteError:
                write = True
            except OSError as exc:
                raise _Lost(exc) from None
            else:
                if data:
                    self.last_data = time.monotonic()
                return data
            if attempt or not self._poll(write, POLL):
                return None
            self._check()
        return None

    def _read_head(self, deadline: float) -> None:
        ep = self.endpoint
        buf = bytearray()
        scan = 0
        while True:
            start = max(0, scan - 3)
            ends = [
                (i, n)
                for i, n in ((buf.find(b"\n\r\n", start), 3), (buf.find(b"\n\n", start), 2))
                if i != -1
            ]
            if ends:
                end, skip = min(ends)
                status = self._parse_head(bytes(buf[:end]))
                rest = buf[end + skip :]
                if 100 <= status < 200 and status != 101:  # interim answer: the real one follows
                    buf, scan = bytearray(rest), 0
                    continue
                self._raw = bytearray(rest)
                self._set_framing()
                return
            if len(buf) > MAX_HEADERS:
                raise RemoteError(
                    f"{ep.host} sent response headers over {_size(MAX_HEADERS)}; no reply was read."
                )
            prefix = bytes(buf[:5])
            if not (prefix.startswith(b"HTTP/") or b"HTTP/".startswith(prefix)):
                raise _not_openai(ep, "did not answer in HTTP (is it https?)")
            scan = len(buf)
            if time.monotonic() > deadline:
                raise RemoteError(f"{ep.host} did not answer within {ep.timeout:g} s.")
            piece = self._recv()
            if piece is None:
                continue
            if not piece:
                if not buf:
                    raise RemoteError(f"{ep.host} closed the connection without answering.")
                raise RemoteError(f"{ep.host} closed the connection halfway through its answer.")
            buf += piece

    def _parse_head(self, head: bytes) -> int:
        lines = head.decode("latin-1").split("\n")
        words = lines[0].strip().split(None, 2)
        code = words[1] if len(words) > 1 else ""
        if not words[0].startswith("HTTP/") or not (
            len(code) == 3 and code.isascii() and code.isdigit()
        ):
            raise _not_openai(self.endpoint, "did not answer in HTTP")
        self.status = int(code)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                continue
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers = headers
        return self.status

    def _set_framing(self) -> None:
        if self.status in (204, 304):
            self._framing, self._remaining = "length", 0
        elif "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._framing = "chunked"
        elif "content-length" in self.headers:
            values = {v.strip() for v in self.headers["content-length"].split(",")}
            value = values.pop() if len(values) == 1 else ""
            if not (value.isascii() and value.isdigit()):
                raise RemoteError(f"{self.endpoint.host} sent an invalid Content-Length.")
            self._framing, self._remaining = "length", int(value)
        if self._framing == "length" and self._remaining == 0:
            self._done = True

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def read(self) -> bytes | None:
        """The next body bytes (about READ_SIZE at most); b"" if none arrived within
        POLL; None at the end of the body (``truncated`` if the connection ended early)."""
        while True:
            if self._done:
                return None
            out = self._decode()
            if out or self._done:
                return out or None
            if self._broken is not None:
                raise self._broken
            if self._eof:
                self.truncated = self._framing != "close"
                self._done = True
                return None
            piece = self._recv()
            if piece is None:
                return b""
            if not piece:
                self._eof = True
                continue
            self._raw += piece
            out = self._decode()
            if out or self._done:
                return out or None
            if self._broken is not None:
                raise self._broken
            return b""

    def _decode(self) -> bytes:
        """Take whatever the framing allows out of ``_raw``."""
        raw = self._raw
        if not raw:
            return b""
        if self._framing == "close":
            out = bytes(raw)
            raw.clear()
            return out
        if self._framing == "length":
            out = bytes(raw[: self._remaining])
            raw.clear()  # anything past Content-Length is not ours
            self._remaining -= len(out)
            self._done = self._remaining == 0
            return out
        return self._dechunk()

    def _dechunk(self) -> bytes:
        """Chunked framing, decoded incrementally; malformed framing is raised by
        :meth:`read` once the bytes before it were delivered."""
        try:
            return self._dechunk_some()
        except _BadFraming as bad:
            self._raw.clear()
            self._broken = RemoteError(
                f"The connection to {self.endpoint.host} broke mid-reply (malformed chunked "
                "framing); the partial reply was kept."
            )
            return bad.args[0]

    def _dechunk_some(self) -> bytes:
        raw, out, pos = self._raw, bytearray(), 0

        def bad() -> _BadFraming:
            return _BadFraming(bytes(out))

        while pos < len(raw):
            state = self._chunk_state
            if state == "data":
                take = min(self._remaining, len(raw) - pos)
                out += raw[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._chunk_state = "crlf"
                continue
            newline = raw.find(b"\n", pos)
            if newline == -1:
                if len(raw) - pos > (MAX_HEADERS if state == "trailer" else 4096):
                    raise bad()
                break
            line = bytes(raw[pos:newline]).strip()
            pos = newline + 1
            if state == "crlf":
                if line:
                    raise bad()
                self._chunk_state = "size"
            elif state == "size":
                digits = line.split(b";", 1)[0].strip()
                if not digits or len(digits) > 16:
                    raise bad()
                try:
                    self._remaining = int(digits, 16)
                except ValueError:
                    raise bad() from None
                self._chunk_state = "data" if self._remaining else "trailer"
            elif not line:  # the empty line that ends the trailer
                self._done = True
                break
        del raw[:pos]
        return bytes(out)

    def read_all(self, limit: int) -> tuple[bytes, bool]:
        """The whole body, up to ``limit`` bytes (``True`` if there was more)."""
        out = bytearray()
        while True:
            piece = self.read()
            if piece is None:
                return bytes(out), False
            if not piece and time.monotonic() - self.last_data > self.endpoint.timeout:
                raise RemoteError(
                    f"{self.endpoint.host} sent nothing for {self.endpoint.timeout:g} s."
                )
            out += piece
            if len(out) > limit:
                return bytes(out[:limit]), True

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


def _looks_like_html(content_type: str, body: bytes) -> bool:
    if content_type in ("text/html", "application/xhtml+xml"):
        return True
    return body.lstrip()[:1] == b"<"


def _http_error(exchange: _Exchange, model: str | None) -> RemoteError:
    """One sentence for a non-200 answer (reads at most MAX_ERROR_BODY of it)."""
    endpoint, status = exchange.endpoint, exchange.status
    try:
        body, _cut = exchange.read_all(MAX_ERROR_BODY)
    except (RemoteError, _Lost):
        body = b""
    host = endpoint.host
    if _looks_like_html(exchange.content_type, body):
        if status in (401, 403, 429) or status >= 500:
            detail = "a web page, not an API answer"
        else:
            return _not_openai(endpoint, f"answered {status} with a web page")
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
    if status == 429:
        return RemoteError(f"{host} is rate-limiting requests (429); retry in a moment{suffix}.")
    if status >= 500:
        return RemoteError(f"{host} failed with a server error ({status}){suffix}; retry.")
    return RemoteError(f"{host} answered {status}{suffix}.")


def list_models(endpoint: Endpoint, stop_event: threading.Event | None = None) -> list[str]:
    """The model ids the server lists (``GET /models``)."""
    exchange = _Exchange(endpoint, stop_event or threading.Event())
    host = endpoint.host
    try:
        exchange.open("GET", "/models", None)
        if exchange.status != 200:
            raise _http_error(exchange, None)
        body, cut = exchange.read_all(MAX_MODEL_LIST)
        if _looks_like_html(exchange.content_type, body):
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
        exchange.close()


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
        self.blocks: list[str] = []  # joined runs of pieces
        self.pending: list[str] = []  # the latest pieces, joined every 512
        self.size = 0  # UTF-8 bytes of text
        self.chunks = 0
        self.events = 0
        self.finish: str | None = None
        self.first_at: float | None = None

    def text(self) -> str:
        return "".join(self.blocks + self.pending)

    def malformed(self) -> RemoteError:
        return RemoteError(
            f"{self.endpoint.host} sent a malformed event stream; the partial reply was kept."
        )

    def add(self, text: str) -> None:
        text = fix_surrogates(text)
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.chunks += 1
        self.pending.append(text)
        if len(self.pending) >= 512:
            self.blocks.append("".join(self.pending))
            self.pending.clear()
        self.size += len(text) if text.isascii() else len(text.encode("utf-8"))
        if self.on_text is not None:
            self.on_text(text)
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
            text = delta.get("content")
            if isinstance(text, str) and text:
                self.add(text)
            reason = choice.get("finish_reason")
            if reason:
                self.finish = _detail(reason)[:40]

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


def _stream_events(exchange: _Exchange, reply: _Reply, stop: threading.Event) -> None:
    endpoint = exchange.endpoint
    lines = _Lines()
    while True:
        if stop.is_set():
            raise _Stopped
        data = exchange.read()
        if data is None:
            break
        if not data:
            if time.monotonic() - exchange.last_data > endpoint.timeout:
                raise RemoteError(
                    f"{endpoint.host} sent nothing for {endpoint.timeout:g} s; the partial "
                    "reply was kept."
                )
            continue
        try:
            found = lines.feed(data)
        except _LineTooLong:
            raise RemoteError(
                f"{endpoint.host} sent an event-stream line over {_size(MAX_LINE)}; stopped "
                "reading, the partial reply was kept."
            ) from None
        for line in found:
            if stop.is_set():
                raise _Stopped
            if reply.line(line):
                return
    if lines.rest().strip() and reply.line(lines.rest()):  # a last line without "\n"
        return
    if exchange.truncated:
        raise RemoteError(
            f"The connection to {endpoint.host} dropped mid-reply; the partial reply was kept."
        )
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
    exchange = _Exchange(endpoint, event)
    try:
        exchange.open("POST", "/chat/completions", json.dumps(body).encode("utf-8"))
        if exchange.status != 200:
            raise _http_error(exchange, model)
        kind = exchange.content_type
        if kind in ("text/html", "application/xhtml+xml"):
            raise _not_openai(endpoint, "answered with a web page")
        if kind == "application/json" or kind.endswith("+json"):
            whole, cut = exchange.read_all(reply.limit + MAX_LINE)
            if cut:
                raise RemoteError(
                    f"{endpoint.host} sent an answer over {_size(reply.limit + MAX_LINE)}; "
                    "no reply was kept."
                )
            reply.whole(whole)
        else:
            _stream_events(exchange, reply, event)
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
        exchange.close()
    finished = time.perf_counter()
    stats.total_seconds = finished - started
    if not stats.new_tokens:
        stats.new_tokens = reply.chunks  # servers without usage: one chunk is about one token
    if reply.first_at is not None:
        stats.time_to_first_token = reply.first_at - started
        if stats.new_tokens > 1 and finished > reply.first_at:
            stats.tokens_per_second = (stats.new_tokens - 1) / (finished - reply.first_at)
    return GenerationResult(reply.text(), stats)


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
    ) -> GenerationResult:
        if self.loaded is None:
            raise RemoteError("No endpoint model is selected yet.")
        if request.continue_final:
            self.refuse_continue()
        msgs = with_system(request.messages, request.system_prompt)
        if on_start is not None:
            on_start(TurnInfo(context_limit=self.loaded.context_limit))
        settings = request.settings or self.settings
        return stream_chat(self.endpoint, self.loaded.name, msgs, settings, stop_event, on_text)
