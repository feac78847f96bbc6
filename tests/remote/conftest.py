"""A real `transformers serve` with a tiny model, and a misbehaving server for faults."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def serve(tiny_llama_dir: Path, test_env: dict[str, str], tmp_path_factory) -> Iterator[dict]:
    """`transformers serve` on 127.0.0.1 with the tiny Llama preloaded."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    handle = log.open("w")
    bin_dir = Path(sys.executable).parent
    proc = subprocess.Popen(
        [
            str(bin_dir / "transformers"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            str(tiny_llama_dir),
        ],
        env=test_env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("transformers serve did not start:\n" + log.read_text()[-3000:])
        time.sleep(0.3)
    yield {"url": url, "model": str(tiny_llama_dir), "proc": proc, "port": port}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    handle.close()


HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Welcome</title></head>"
    "<body><h1>It works!</h1><p>This is a web page, not an API.</p></body></html>"
)


def _chunk(text: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: " + json.dumps({"choices": [choice]}, ensure_ascii=False).encode() + b"\n\n"


def _delta(**delta: str) -> bytes:
    """An event whose delta has exactly these fields (``reasoning_content=...``)."""
    choice = {"index": 0, "delta": delta, "finish_reason": None}
    return b"data: " + json.dumps({"choices": [choice]}, ensure_ascii=False).encode() + b"\n\n"


HOSTILE_THOUGHT = (
    "\x1b]0;pwned\x07[bold red]loud[/] \x1b[2J\x9b2J $primary [@click=app.quit]quit[/]"
)
"""Reasoning a hostile server sends (an OSC title, markup, a screen clear, 8-bit CSI)."""


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server that does not print a traceback when a client leaves."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass


class Misbehaving(BaseHTTPRequestHandler):
    """The first path segment picks the behaviour: /<mode>/v1/..."""

    protocol_version = "HTTP/1.1"
    seen_headers: ClassVar[list[dict[str, str]]] = []
    seen_bodies: ClassVar[list[bytes]] = []  # the request bodies of POSTs
    # every request's target and client (address, port): one port is one TCP connection
    seen_requests: ClassVar[list[tuple[str, tuple[str, int]]]] = []
    # clients (address, port) whose held connection the server saw them close
    left: ClassVar[list[tuple[str, int]]] = []

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _mode(self) -> str:
        return self.path.strip("/").split("/")[0]

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _page(self, status: int) -> None:
        body = HTML_PAGE.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _hold(self, seconds: float = 30) -> None:
        """Answer nothing until the client goes away (or ``seconds`` pass)."""
        self.connection.settimeout(0.2)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if not self.connection.recv(65536):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        else:
            self.close_connection = True
            return
        type(self).left.append(self.client_address)
        self.close_connection = True

    def do_GET(self) -> None:
        type(self).seen_requests.append((self.path, self.client_address))
        mode = self._mode()
        if mode == "status401":
            self._json(401, {"error": {"message": "bad key"}})
        elif mode.startswith("html"):
            self._page(int(mode[4:] or 200))
        elif mode == "noheaders":
            self._hold()
        elif mode == "notopenai":
            self._json(200, {"status": "ok", "version": "1.2"})
        else:
            self._json(200, {"data": [{"id": "fake-model"}]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        type(self).seen_bodies.append(self.rfile.read(length))
        type(self).seen_headers.append(dict(self.headers))
        type(self).seen_requests.append((self.path, self.client_address))
        mode = self._mode()
        if mode.startswith("status"):
            status = int(mode[6:])
            self._json(status, {"error": {"message": f"simulated {status}"}})
            return
        if mode.startswith("html"):
            self._page(int(mode[4:] or 200))
            return
        if mode in ("noheaders", "postholds"):  # postholds: GET lists models, kept alive
            self._hold()
            return
        if mode == "notopenai":
            self._json(200, {"status": "ok", "version": "1.2"})
            return
        if mode == "kept":  # a reply as real servers send it: chunked, connection kept
            self._chunked_events([_chunk("Hello"), _chunk(" again"), _chunk(finish="stop")])
            return
        if mode == "completion":  # a server that ignores "stream": one JSON answer
            message = {"role": "assistant", "content": "Whole reply."}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            usage = {"prompt_tokens": 5, "completion_tokens": 3}
            self._json(200, {"object": "chat.completion", "choices": [choice], "usage": usage})
            return
        if mode == "longerror":  # a 500 whose error text is long, multi-line and hostile
            text = "\x1b]0;pwned\x07[/bold]" + "very long reason\n" * 2000
            self._json(500, {"error": {"message": text}})
            return
        if mode == "endlesserror":  # a 500 whose body never ends
            self.send_response(500)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self._pour(b"oops " * 4096)
            return
        if mode == "chunked":  # HTTP chunked framing split in awkward places
            self._chunked()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        w = self.wfile
        if mode == "ok":
            for word in ("Hello", " there", "!"):
                w.write(_chunk(word))
            w.write(_chunk(finish="stop"))
            w.write(b"data: [DONE]\n\n")
        elif mode in ("thinking", "reasoning"):  # vLLM / llama.cpp, or newer vLLM / Ollama
            key = "reasoning_content" if mode == "thinking" else "reasoning"
            for piece in ("Let me", " think", " it over.\n\n"):
                w.write(_delta(**{key: piece}))
            for word in ("\n\nParis", " it is."):
                w.write(_chunk(word))
            usage = {"prompt_tokens": 5, "completion_tokens": 9}
            usage["completion_tokens_details"] = {"reasoning_tokens": 6}
            w.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
            w.write(_chunk(finish="stop"))
            w.write(b"data: [DONE]\n\n")
        elif mode == "hostilethinking":  # escape sequences, markup, a lone surrogate
            w.write(_delta(reasoning_content=HOSTILE_THOUGHT))
            w.write(b'data: {"choices": [{"index": 0, "delta": {"reasoning": "x\\ud800y"}}]}\n\n')
            w.write(_chunk("Fine."))
            w.write(_chunk(finish="stop"))
            w.write(b"data: [DONE]\n\n")
        elif mode == "endlessthinking":  # reasoning that never ends, 1 KiB an event
            self._pour(
                b"".join(_delta(reasoning_content="pondering " * 102 + "hmm") for _ in range(16))
            )
            return
        elif mode == "malformed":
            w.write(_chunk("partial"))
            w.write(b"data: {not json\n\n")
        elif mode == "truncated":
            w.write(_chunk("partial"))
            w.write(_chunk(" reply"))
        elif mode == "drop":
            w.write(_chunk("partial"))
            w.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.connection.close()
            return
        elif mode == "stall":
            w.write(_chunk("partial"))
            w.flush()
            time.sleep(4)
        elif mode == "slow":  # a long reply, for stop
            for i in range(200):
                w.write(_chunk(f" w{i}"))
                w.flush()
                time.sleep(0.05)
            w.write(_chunk(finish="stop"))
        elif mode == "endless":  # a reply that never ends, 1 KiB of text per event
            self._pour(b"".join(_chunk("endless " * 128) for _ in range(16)))
            return
        elif mode == "flood":  # one-character events, as fast as the socket takes them
            self._pour(_chunk("x") * 1000)
            return
        elif mode == "hugeline":  # 100 MB without a newline
            w.write(_chunk("partial"))
            w.write(b'data: {"choices": [{"index": 0, "delta": {"content": "')
            self._pour(b"x" * (1 << 20), limit=100)
            return
        elif mode == "badutf8":
            w.write(_chunk("caf\u00e9 "))
            # invalid UTF-8 inside the JSON string, then a lone surrogate escape
            w.write(b'data: {"choices": [{"index": 0, "delta": {"content": "a\xff\xfeb "}}]}\n\n')
            w.write(b'data: {"choices": [{"index": 0, "delta": {"content": "c\\ud800d "}}]}\n\n')
            # a four-byte character split across two writes (two reads for the client)
            emoji = _chunk("\U0001f600!")
            cut = emoji.index(b"\xf0") + 2
            w.write(emoji[:cut])
            w.flush()
            time.sleep(0.3)
            w.write(emoji[cut:])
            w.write(_chunk(finish="stop"))
            w.write(b"data: [DONE]\n\n")
        w.flush()
        self.close_connection = True

    def _pour(self, block: bytes, limit: int | None = None) -> None:
        """Write ``block`` over and over (``limit`` times, or until the client leaves)."""
        count = 0
        try:
            while limit is None or count < limit:
                self.wfile.write(block)
                count += 1
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    def _chunked_events(self, events: list[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in [*events, b"data: [DONE]\n\n"]:
            self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunked(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        stream = b"".join(
            [
                _chunk("Gr\u00fc\u00dfe"),
                b": a comment\r\n\r\n",
                _chunk(" aus"),
                _chunk(" K\u00f6ln"),
            ]
        )
        stream += _chunk(finish="stop") + b"data: [DONE]\n\n"
        # framing cut at every 7 bytes (inside lines and characters), with an extension
        for start in range(0, len(stream), 7):
            piece = stream[start : start + 7]
            self.wfile.write(f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def seen_bodies() -> list[bytes]:
    """Bodies of the POSTs the misbehaving server received (cleared per test)."""
    Misbehaving.seen_bodies.clear()
    return Misbehaving.seen_bodies


@pytest.fixture
def seen_headers() -> list[dict[str, str]]:
    """Headers of the requests the misbehaving server received (cleared per test)."""
    Misbehaving.seen_headers.clear()
    return Misbehaving.seen_headers


@pytest.fixture
def seen_requests() -> list[tuple[str, tuple[str, int]]]:
    """(target, client address) of each request the misbehaving server received."""
    Misbehaving.seen_requests.clear()
    return Misbehaving.seen_requests


@pytest.fixture
def server_saw_leave() -> list[tuple[str, int]]:
    """Clients whose held connection the misbehaving server saw them close."""
    return Misbehaving.left


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def misbehaving() -> Iterator[str]:
    server = QuietServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class RawServer:
    """A bare TCP server: each connection is handed to ``behaviour(conn)`` on a thread.
    For answers no HTTP library would send (silence, garbage, endless headers)."""

    def __init__(self, behaviour) -> None:
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.behaviour(conn, self.closing)
            except OSError:
                pass

    def close(self) -> None:
        self.closing.set()
        self.thread.join(2)
        self.sock.close()


def hold(conn: socket.socket, closing: threading.Event) -> None:
    """Accept, read, never answer, until the client leaves."""
    conn.settimeout(0.2)
    while not closing.is_set():
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue


@pytest.fixture
def raw_server() -> Iterator:
    servers: list[RawServer] = []

    def start(behaviour) -> str:
        server = RawServer(behaviour)
        servers.append(server)
        return f"127.0.0.1:{server.port}"

    start.hold = hold  # for behaviours that answer a little, then go silent
    yield start
    for server in servers:
        server.close()


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose SYNs go unanswered: a listener with a full accept queue (Linux drops
    SYNs then, so a connect neither succeeds nor fails)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)  # the one slot
    probe = socket.socket()
    probe.setblocking(False)
    probe.connect_ex(("127.0.0.1", port))
    _, writable, _ = select.select([], [probe], [], 0.3)
    probe.close()
    if writable:
        pytest.skip("this kernel completes connections past a full accept queue")
    yield port
    filler.close()
    listener.close()


@pytest.fixture(scope="session")
def tls_misbehaving(tmp_path_factory) -> Iterator[str]:
    """The misbehaving server behind TLS, with a self-signed certificate for 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = QuietServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


NEED_TINYPROXY = "CHAT_TUI_NEED_TINYPROXY"  # .ci/run sets it: there a missing tinyproxy fails


@dataclass
class Proxy:
    url: str
    log: Path

    def requests(self) -> list[str]:
        """The request lines the proxy logged so far ("GET http://host:port/path
        HTTP/1.1", "CONNECT host:port HTTP/1.1")."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        mark = "Request (file descriptor "
        return [line.split("): ", 1)[1] for line in text.splitlines() if mark in line]


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Proxy]:
    """A real HTTP proxy, Debian's tinyproxy, on 127.0.0.1, logging every request line."""
    binary = shutil.which("tinyproxy") or next(
        (p for p in ("/usr/bin/tinyproxy", "/usr/sbin/tinyproxy") if os.access(p, os.X_OK)),
        None,
    )
    if binary is None:
        if os.environ.get(NEED_TINYPROXY):
            pytest.fail("tinyproxy is not installed, though .ci/run installs it")
        pytest.skip("tinyproxy is not installed (apt-get install tinyproxy; .ci/run does)")
    port = free_port()
    conf, log = tmp_path / "tinyproxy.conf", tmp_path / "tinyproxy.log"
    conf.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 20\nAllow 127.0.0.1\n"
        f'LogFile "{log}"\nLogLevel Info\nPidFile "{tmp_path / "tinyproxy.pid"}"\n'
        "DisableViaHeader Yes\n"
    )
    proc = subprocess.Popen(
        [binary, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while "listening on fd" not in (log.read_text(errors="replace") if log.exists() else ""):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"tinyproxy did not start: {proc.communicate()[1]!r}")
        time.sleep(0.05)
    yield Proxy(f"http://127.0.0.1:{port}", log)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stderr.close()


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def proxy_env(monkeypatch) -> Iterator:
    """Set proxy variables for the test (both spellings cleared first, as the ones
    from outside must not leak in): ``proxy_env(http=URL, no="127.0.0.1")``."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)

    def set_proxies(**values: str) -> dict[str, str]:
        for scheme, value in values.items():
            monkeypatch.setenv(f"{scheme.upper()}_PROXY", value)
        return {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES} | {
            f"{scheme.upper()}_PROXY": value for scheme, value in values.items()
        }

    yield set_proxies
