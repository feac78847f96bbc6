"""The kept HTTP client: connections are reused, a stop shuts a reused connection too,
``--timeout`` bounds time without reply data (not only silence), and credentials in the
URL's query or fragment are sent as given but never shown or saved."""

from __future__ import annotations

import dataclasses
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tui.engine.protocol import ChatRequest
from tui.engine.remote import Endpoint, RemoteEngine, list_models, redact_url, stream_chat
from tui.engine.settings import GenerationSettings
from tui.engine.spec import ModelSpec
from tui.store import SessionStore

ROOT = Path(__file__).resolve().parents[2]
USER = [{"role": "user", "content": "x"}]
KEY = "sk-query-secret-77"


def chat(endpoint: Endpoint, stop: threading.Event | None = None):
    return stream_chat(endpoint, "fake-model", USER, GenerationSettings({}), stop)


def in_thread(call, limit: float = 60.0):
    """Run ``call`` on a thread; fail (rather than hang the suite) if it outlives ``limit``."""
    box: list = []
    worker = threading.Thread(target=lambda: box.append(call()), daemon=True)
    worker.start()
    worker.join(limit)
    assert not worker.is_alive(), f"still running after {limit:g} s"
    return box[0]


# -- connection reuse -----------------------------------------------------------------------
def test_a_model_list_and_two_chats_share_one_connection(misbehaving, seen_requests) -> None:
    engine = RemoteEngine(Endpoint(f"{misbehaving}/kept"))
    engine.load(ModelSpec(source="default"))
    first, second = engine.chat(ChatRequest(USER)), engine.chat(ChatRequest(USER))
    assert first.text == second.text == "Hello again"
    assert first.stats.error is None and second.stats.error is None
    assert [path.rsplit("/", 1)[1] for path, _ in seen_requests] == ["models"] + ["completions"] * 2
    assert len({client for _, client in seen_requests}) == 1, seen_requests


def test_a_stop_shuts_a_reused_connection_at_once(
    misbehaving, seen_requests, server_saw_leave
) -> None:
    """The model list leaves a kept connection; the chat goes out on it and the server
    holds the answer. Esc must return at once and close that connection (the server sees
    the client leave), not leave it open until the 60 s timeout."""
    endpoint = Endpoint(f"{misbehaving}/postholds", timeout=60)
    list_models(endpoint)
    stop = threading.Event()
    box: list = []
    worker = threading.Thread(target=lambda: box.append(chat(endpoint, stop)))
    worker.start()
    deadline = time.monotonic() + 30
    while len(seen_requests) < 2:  # the chat reached the server
        assert time.monotonic() < deadline, "the chat never reached the server"
        time.sleep(0.01)
    stop.set()
    worker.join(30)
    assert not worker.is_alive() and box[0].stats.stop_reason == "stopped"
    (client,) = {client for _, client in seen_requests}  # one connection for both
    while client not in server_saw_leave:
        assert time.monotonic() < deadline, "the stopped connection was left open"
        time.sleep(0.01)


# -- --timeout bounds time without reply data -----------------------------------------------
def _keepalive_only(line: bytes):
    """A server that lists one model, and answers a chat with one piece of text, then
    ``line`` every 0.1 s, forever."""
    models = b'{"data": [{"id": "m"}]}'

    def behaviour(conn: socket.socket, closing: threading.Event) -> None:
        while conn.recv(65536).startswith(b"GET"):  # the model list (connection kept)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(models)}\r\n\r\n".encode()
                + models
            )
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
            b'data: {"choices": [{"delta": {"content": "partial"}}]}\n\n'
        )
        while not closing.wait(0.1):
            conn.sendall(line)

    return behaviour


@pytest.mark.parametrize(
    "line",
    [
        b":\n",
        b": ping\n\n",
        b'data: {"choices": [{"delta": {"role": "assistant"}}]}\n\n',
        b'data: {"choices": []}\n\n',
    ],
    ids=["comment", "comment-event", "role-only", "no-choices"],
)
def test_keep_alive_lines_do_not_reset_the_timeout(raw_server, line) -> None:
    endpoint = Endpoint(f"http://{raw_server(_keepalive_only(line))}/v1", timeout=1)
    result = in_thread(lambda: chat(endpoint))
    assert result.stats.stop_reason == "error" and result.text == "partial"
    assert result.stats.error.endswith(
        "sent no reply data for 1 s, only keep-alive lines; the partial reply was kept."
    )


def test_reasoning_events_count_as_reply_data(raw_server) -> None:
    """A reasoning model streams thoughts (not shown) before its answer: that is data."""

    def thinking(conn: socket.socket, closing: threading.Event) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
        for _ in range(25):  # 2.5 s of thoughts with a 1 s timeout
            conn.sendall(b'data: {"choices": [{"delta": {"reasoning_content": "hm"}}]}\n\n')
            if closing.wait(0.1):
                return
        conn.sendall(
            b'data: {"choices": [{"delta": {"content": "42"}, "finish_reason": "stop"}]}\n\n'
            b"data: [DONE]\n\n"
        )

    result = in_thread(lambda: chat(Endpoint(f"http://{raw_server(thinking)}/v1", timeout=1)))
    assert result.stats.error is None and result.text == "42"


def test_one_shot_with_only_keep_alive_comments_ends_with_one_sentence(
    raw_server, test_env, tmp_path
) -> None:
    address = raw_server(_keepalive_only(b":\n"))
    url = f"http://{address}/v1"
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--endpoint", url, "--model", "m", "--timeout", "1"]
        + ["--prompt", "x", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        env=test_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout.startswith("partial")
    (line,) = done.stderr.strip().splitlines()
    assert "sent no reply data for 1 s, only keep-alive lines" in line


# -- credentials in the query or the fragment -----------------------------------------------
@pytest.mark.parametrize(
    ("given", "shown"),
    [
        (f"http://h/v1?key={KEY}", "http://h/v1?key=***"),
        (f"http://h/v1?api-version=2024-06-01&api_key={KEY}", "http://h/v1?api-version=2024-06-01&api_key=***"),
        (f"https://h/v1?access_token={KEY}&x=1", "https://h/v1?access_token=***&x=1"),
        (f"https://h/v1?token={KEY}&sig={KEY}", "https://h/v1?token=***&sig=***"),
        (f"https://h/v1?X-Amz-Signature={KEY}&password={KEY}", "https://h/v1?X-Amz-Signature=***&password=***"),
        (f"https://h/v1?subscription-key={KEY}&client_secret={KEY}", "https://h/v1?subscription-key=***&client_secret=***"),
        (f"https://u:{KEY}@h/v1#access_token={KEY}&state=s", "https://h/v1#access_token=***&state=s"),
        ("https://h/v1?model=x&stream=1#top", "https://h/v1?model=x&stream=1#top"),
        (f"h:8/v1?apikey={KEY}", "h:8/v1?apikey=***"),
    ],
)  # fmt: skip
def test_credentials_in_the_query_or_fragment_are_redacted(given, shown) -> None:
    assert redact_url(given) == shown


def test_a_query_key_is_sent_but_never_shown(misbehaving, seen_requests) -> None:
    endpoint = Endpoint(f"{misbehaving}/ok?api-version=1&key={KEY}#access_token={KEY}")
    assert endpoint.url == f"{misbehaving}/ok/v1?api-version=1&key=***"
    for shown in (endpoint.url, endpoint.host, repr(endpoint), str(dataclasses.asdict(endpoint))):
        assert KEY not in shown
    engine = RemoteEngine(endpoint)
    loaded = engine.load(ModelSpec(source="default"))
    assert engine.chat(ChatRequest(USER)).text == "Hello there!" and KEY not in repr(loaded)
    # the server gets the query as given (that is how some servers take keys), never the
    # fragment
    assert [path for path, _ in seen_requests] == [
        f"/ok/v1/models?api-version=1&key={KEY}",
        f"/ok/v1/chat/completions?api-version=1&key={KEY}",
    ]
    bad = chat(Endpoint(f"{misbehaving}/html?key={KEY}"))
    assert "not an OpenAI-compatible API at" in bad.stats.error and KEY not in bad.stats.error


def test_a_query_key_never_reaches_a_log(misbehaving, caplog) -> None:
    with caplog.at_level(logging.DEBUG):
        assert chat(Endpoint(f"{misbehaving}/ok?key={KEY}")).text == "Hello there!"
    assert "HTTP Request: POST" in caplog.text  # httpx logged the request...
    assert KEY not in caplog.text  # ...without the key


def test_one_shot_never_saves_or_shows_a_query_key(misbehaving, test_env, tmp_path) -> None:
    url = f"{misbehaving}/ok?key={KEY}#token={KEY}"
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--endpoint", url, "--prompt", "x"]
        + ["--data-dir", str(tmp_path), "--session", "query"],
        cwd=ROOT,
        env=test_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert KEY not in done.stdout and KEY not in done.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    store = SessionStore(tmp_path)
    saved = store.load(store.find("query").id).model["endpoint"]
    assert saved == f"{misbehaving}/ok?key=***#token=***"
