"""How fast Esc (the stop event) ends a remote request in each phase, and how many TCP
connections a few requests to one endpoint open.

Two latencies per phase: until ``stream_chat`` returns (what the user sees), and, where
the server holds the connection, until the server sees it closed (the request really
ended, so a real server stops working on it).

Each phase runs against a local server that misbehaves in one way (a resolver that
hangs, SYNs that go unanswered, a TLS peer that stays silent, a server that accepts and
never answers, one that goes silent mid-reply, one that floods). The stop event is set
at a known moment (0.3-0.4 s after the request starts, or after the first reply text;
the jitter keeps a design that polls every 0.1 s from being caught on its beat) and the
time from setting it to ``stream_chat`` returning is the latency. Only the public API
(``Endpoint``, ``stream_chat``, ``list_models``) is used, so the same script measures
any version of ``tui/engine/remote`` (a package, or once one module):

    PYTHONPATH=. python bench/remote_stop.py [--trials 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import select
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tui.engine.devices import cpu_name  # noqa: E402
from tui.engine.remote import Endpoint, list_models, stream_chat  # noqa: E402
from tui.engine.settings import GenerationSettings  # noqa: E402

STOP_AT = 0.3  # seconds into a phase (before the first text, or after it) ...
JITTER = 0.1  # ... plus up to this, so a design that polls is not caught at its own beat


def _event(text: str) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


class Handler(BaseHTTPRequestHandler):
    """GET answers a model list (kept alive); POST /<mode>/v1/... misbehaves."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _hold(self) -> None:
        """Send nothing more until the client closes the connection (noted) or leaves."""
        self.connection.settimeout(0.2)
        while not self.server.closing.is_set():
            try:
                if not self.connection.recv(65536):
                    self.server.left.append(time.monotonic())
                    break
            except TimeoutError:
                continue
            except OSError:
                self.server.left.append(time.monotonic())
                break
        self.close_connection = True

    def do_GET(self) -> None:
        body = json.dumps({"data": [{"id": "fake-model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        mode = self.path.strip("/").split("/")[0]
        if mode == "hold":
            self._hold()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if mode == "ok":  # a whole reply with a length, so the connection can be kept
            body = _event("Hello") + _event("!") + b"data: [DONE]\n\n"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            if mode == "stall":
                self.wfile.write(_event("partial"))
                self.wfile.flush()
                self._hold()
            elif mode == "flood":
                block = _event("x") * 1000
                while not self.server.closing.is_set():
                    self.wfile.write(block)
        except OSError:
            pass
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.closing = threading.Event()
        self.connections = 0
        self.left: list[float] = []  # when a held connection saw the client close it
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def verify_request(self, request, client_address) -> bool:
        self.connections += 1
        return True

    def handle_error(self, request, client_address) -> None:
        pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.closing.set()
        self.shutdown()
        self.server_close()


class Silent:
    """Accepts connections and never sends a byte (a TLS peer that never shakes hands)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def stop(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


class Unanswered:
    """A port whose SYNs go unanswered: a listener with a full accept queue."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        probe = socket.socket()
        probe.setblocking(False)
        probe.connect_ex(("127.0.0.1", self.port))
        _, writable, _ = select.select([], [probe], [], 0.3)
        probe.close()
        self.works = not writable

    def stop(self) -> None:
        self.filler.close()
        self.listener.close()


def stop_latency(
    endpoint: Endpoint, at: float | None, before: Callable[[], None] | None = None
) -> tuple[float, str, float]:
    """Run one chat; set the stop event ``at`` seconds in (None: STOP_AT seconds after
    the first text, when the reader waits on a silent or flooding server)."""
    stop = threading.Event()
    stopped_at: list[float] = []

    def set_stop() -> None:
        if not stop.is_set():
            stopped_at.append(time.monotonic())
            stop.set()

    delay = (STOP_AT if at is None else at) + random.uniform(0, JITTER)
    timer = threading.Timer(delay, set_stop)

    started = False

    def on_text(_text: str) -> None:
        nonlocal started
        if at is None and not started:
            started = True
            timer.start()

    if before is not None:
        before()
    if at is not None:
        timer.start()
    try:
        result = stream_chat(
            endpoint,
            "fake-model",
            [{"role": "user", "content": "x"}],
            GenerationSettings({}),
            stop,
            on_text,
        )
    finally:
        timer.cancel()
    ended = time.monotonic()
    if not stopped_at:
        return float("nan"), str(result.stats.stop_reason), ended
    return ended - stopped_at[0], str(result.stats.stop_reason), stopped_at[0]


def closed_after(server: Server, stopped_at: float, wait: float = 5.0) -> float:
    """Seconds from the stop to the server seeing that connection closed (inf: not
    within ``wait``: the connection was left open)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        seen = [t for t in server.left if t >= stopped_at]
        if seen:
            return min(seen) - stopped_at
        time.sleep(0.002)
    return float("inf")


def tls_context(folder: Path) -> ssl.SSLContext | None:
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    random.seed(15)

    server = Server()
    silent = Silent()
    unanswered = Unanswered()
    folder = Path(tempfile.mkdtemp())
    context = tls_context(folder)
    tls_server = Server(context) if context is not None else None

    release = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def hanging_getaddrinfo(host, *args, **kwargs):
        if str(host).endswith(".hang.test"):
            release.wait(30)
            raise socket.gaierror("no answer")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = hanging_getaddrinfo

    def kept(url: str) -> tuple[float, str, float]:
        """Stop on an endpoint whose first request (a model list) already ran, so a
        client that keeps connections sends the chat on that connection."""
        endpoint = Endpoint(url)
        return stop_latency(endpoint, STOP_AT, lambda: list_models(endpoint))

    phases: list[tuple[str, Callable[[], tuple[float, str, float]]]] = [
        (
            "resolving (resolver hangs)",
            lambda: stop_latency(Endpoint("http://slow.hang.test:8000/v1"), STOP_AT),
        ),
    ]
    if unanswered.works:
        phases.append(
            (
                "connecting (SYN unanswered)",
                lambda: stop_latency(Endpoint(f"http://127.0.0.1:{unanswered.port}/v1"), STOP_AT),
            )
        )
    phases += [
        (
            "TLS handshake (silent peer)",
            lambda: stop_latency(Endpoint(f"https://127.0.0.1:{silent.port}/v1"), STOP_AT),
        ),
        (
            "headers, new connection",
            lambda: stop_latency(Endpoint(f"{server.url}/hold"), STOP_AT),
        ),
        (
            "headers, kept connection",
            lambda: kept(f"{server.url}/hold"),
        ),
        (
            "streaming, server silent",
            lambda: stop_latency(Endpoint(f"{server.url}/stall", timeout=60), None),
        ),
        (
            "streaming, flood",
            lambda: stop_latency(Endpoint(f"{server.url}/flood"), STOP_AT),
        ),
    ]
    if tls_server is not None:
        phases.append(
            (
                "streaming over TLS, silent",
                lambda: stop_latency(
                    Endpoint(
                        f"https://127.0.0.1:{tls_server.server_address[1]}/stall",
                        verify_tls=False,
                    ),
                    None,
                ),
            )
        )

    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"Python {platform.python_version()}, {args.trials} trials per phase")
    package = ROOT / "tui" / "engine" / "remote"
    files = sorted(package.glob("*.py")) or [package.with_suffix(".py")]  # or one module
    lines = sum(path.read_text().count("\n") for path in files)
    print(f"tui/engine/remote: {lines} lines in {len(files)} files\n")
    print(f"{'phase':30} {'stop: call returns':>20} {'server sees close':>18}  result")
    print(f"{'':30} {'median':>10} {'max':>9} {'median':>9} {'max':>8}")
    held = {"headers, new connection", "headers, kept connection", "streaming, server silent"}

    def ms(seconds: float) -> str:
        if seconds != seconds:  # nan: not measured
            return "-"
        if seconds == float("inf"):
            return ">5 s"
        return f"{seconds * 1000:.0f} ms"

    try:
        for name, trial in phases:
            latencies, closes, reasons = [], [], set()
            for _ in range(args.trials):
                latency, reason, stopped_at = trial()
                latencies.append(latency)
                closes.append(closed_after(server, stopped_at) if name in held else float("nan"))
                reasons.add(reason)
            print(
                f"{name:30} {ms(statistics.median(latencies)):>10} {ms(max(latencies)):>9}"
                f" {ms(statistics.median(closes)):>9} {ms(max(closes)):>8}"
                f"  {', '.join(sorted(reasons))}"
            )

        before = server.connections
        endpoint = Endpoint(f"{server.url}/ok")
        list_models(endpoint)
        for _ in range(3):
            result = stream_chat(
                endpoint, "fake-model", [{"role": "user", "content": "x"}], GenerationSettings({})
            )
            assert result.stats.error is None, result.stats.error
        print(
            f"\none endpoint, a model list and 3 chats: {server.connections - before} "
            "TCP connection(s)"
        )
    finally:
        release.set()
        socket.getaddrinfo = real_getaddrinfo
        server.stop()
        silent.stop()
        unanswered.stop()
        if tls_server is not None:
            tls_server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
