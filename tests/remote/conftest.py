"""A real `transformers serve` with a tiny model, and a misbehaving server for faults."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
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


def _chunk(text: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


class Misbehaving(BaseHTTPRequestHandler):
    """The first path segment picks the behaviour: /<mode>/v1/..."""

    protocol_version = "HTTP/1.1"
    seen_headers: ClassVar[list[dict[str, str]]] = []

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

    def do_GET(self) -> None:
        if self._mode() == "status401":
            self._json(401, {"error": {"message": "bad key"}})
        else:
            self._json(200, {"data": [{"id": "fake-model"}]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        type(self).seen_headers.append(dict(self.headers))
        mode = self._mode()
        if mode.startswith("status"):
            status = int(mode[6:])
            self._json(status, {"error": {"message": f"simulated {status}"}})
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
        w.flush()
        self.close_connection = True


@pytest.fixture
def seen_headers() -> list[dict[str, str]]:
    """Headers of the requests the misbehaving server received (cleared per test)."""
    Misbehaving.seen_headers.clear()
    return Misbehaving.seen_headers


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def misbehaving() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
