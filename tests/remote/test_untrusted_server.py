"""The server is not trusted: every answer it controls is bounded, stopping is prompt in
every phase, odd answers get one clear sentence, and credentials in the URL never leak.

Each run measures stop latency and peak Python memory (tracemalloc around stream_chat)
and asserts generous bounds: they catch a hang or an unbounded buffer, not slowness."""

from __future__ import annotations

import dataclasses
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest

from tui.engine import remote
from tui.engine.remote import (
    MAX_LINE,
    MAX_REPLY,
    MIN_REPLY,
    Endpoint,
    RemoteEngine,
    list_models,
    redact_url,
    stream_chat,
)
from tui.engine.settings import GenerationSettings
from tui.engine.spec import ModelSpec
from tui.store import SessionStore

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20
STOP_WITHIN = 2.0  # generous: the design polls every 0.1 s
PEAK_UNDER = 64 * MiB


@dataclass
class Run:
    text: str
    stop_reason: str
    error: str | None
    chunks: int
    seconds: float  # the whole call
    stop_latency: float | None  # from the stop event being set to the call returning
    peak: int  # bytes, tracemalloc


def run(
    url: str,
    *,
    settings: dict | None = None,
    stop_after: float | None = None,
    stop_on_text: bool = False,
    timeout: float = 60.0,
    verify_tls: bool = True,
) -> Run:
    stop = threading.Event()
    stopped_at: list[float] = []
    chunks = 0

    def set_stop() -> None:
        stopped_at.append(time.monotonic())
        stop.set()

    def on_text(_text: str) -> None:
        nonlocal chunks
        chunks += 1
        if stop_on_text and not stop.is_set():
            set_stop()

    timer = threading.Timer(stop_after, set_stop) if stop_after is not None else None
    endpoint = Endpoint(url, timeout=timeout, verify_tls=verify_tls)
    tracemalloc.start()
    try:
        started = time.monotonic()
        if timer is not None:
            timer.start()
        result = stream_chat(
            endpoint,
            "fake-model",
            [{"role": "user", "content": "x"}],
            GenerationSettings(settings or {}),
            stop,
            on_text,
        )
        ended = time.monotonic()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        if timer is not None:
            timer.cancel()
    return Run(
        result.text,
        result.stats.stop_reason,
        result.stats.error,
        chunks,
        ended - started,
        ended - stopped_at[0] if stopped_at else None,
        peak,
    )


def report(mode: str, r: Run) -> None:
    latency = f"{r.stop_latency * 1000:.0f} ms" if r.stop_latency is not None else "-"
    print(
        f"\n{mode}: {r.stop_reason}, stop latency {latency}, call {r.seconds:.2f} s, "
        f"peak {r.peak / MiB:.1f} MiB, text {len(r.text)} chars, error: {r.error}"
    )


# -- bounds on what the server sends --------------------------------------------------------
def test_an_endless_stream_stops_promptly_with_little_memory(misbehaving) -> None:
    r = run(f"{misbehaving}/endless", stop_on_text=True)
    report("endless, stop at the first text", r)
    assert r.stop_reason == "stopped" and r.error is None
    assert r.stop_latency < STOP_WITHIN and r.peak < PEAK_UNDER
    assert r.text.startswith("endless")


def test_an_endless_stream_is_cut_at_what_was_asked(misbehaving) -> None:
    r = run(f"{misbehaving}/endless", settings={"max_new_tokens": 12})
    report("endless, max_new_tokens=12", r)
    assert r.stop_reason == "error"
    assert "sent more than was asked for" in r.error and "max_tokens=12" in r.error
    assert "partial reply was kept" in r.error
    # the text up to the allowance is kept (the crossing event whole, 1 KiB here)
    assert MIN_REPLY < len(r.text) <= MIN_REPLY + 1024
    assert r.peak < PEAK_UNDER


def test_an_endless_stream_is_cut_at_the_hard_cap(misbehaving, tmp_path) -> None:
    r = run(f"{misbehaving}/endless")  # no max_tokens: only the hard cap applies
    report("endless, no max_tokens", r)
    assert r.stop_reason == "error" and "over 2 MiB" in r.error
    assert MAX_REPLY < len(r.text) <= MAX_REPLY + 1024
    assert r.peak < PEAK_UNDER, "the reply's text must be held compactly"
    # what was received can be saved, and the conversation goes on being saved
    store = SessionStore(tmp_path)
    conv = store.new(title="endless")
    conv.append("user", "go on")
    conv.append("assistant", r.text, stop_reason="error")
    store.save(conv)
    conv.append("user", "and after it?")
    store.save(conv)
    assert store.load(conv.id).messages[1].content == r.text


def test_the_allowance_follows_max_tokens() -> None:
    limit = remote.reply_limit
    assert limit({"max_tokens": 12}) == MIN_REPLY
    assert limit({"max_tokens": 10_000}) == 10_000 * remote.BYTES_PER_TOKEN
    assert limit({"max_tokens": 10**9}) == MAX_REPLY and limit({}) == MAX_REPLY


def test_a_huge_line_ends_the_reply_with_a_sentence(misbehaving) -> None:
    r = run(f"{misbehaving}/hugeline")  # 100 MB without a newline
    report("hugeline", r)
    assert r.stop_reason == "error"
    assert "event-stream line over 1 MiB" in r.error and "partial reply was kept" in r.error
    assert r.text == "partial"
    assert r.peak < PEAK_UNDER and r.seconds < 10


def test_line_splitting_is_linear(monkeypatch) -> None:
    """64 MiB in one line, fed in 64 KiB pieces: linear is ~0.2 s; the old
    ``buffer += piece`` and ``b"\\n" in buffer`` took ~70 s for 100 MB."""
    monkeypatch.setattr(remote.stream, "MAX_LINE", 128 * MiB)
    lines = remote.stream._Lines()
    piece = b"x" * 65536
    started = time.monotonic()
    for _ in range(1024):
        assert lines.feed(piece) == []
    line, after = lines.feed(b"\ndata: next\n")
    assert len(line) == 64 * MiB and after == b"data: next"
    assert time.monotonic() - started < 10


def test_lines_split_anywhere_come_out_whole() -> None:
    lines = remote.stream._Lines()
    stream = b"data: one\n\ndata: caf\xc3\xa9\r\n: comment\ndata: three\n"
    got = []
    for i in range(len(stream)):
        got += lines.feed(stream[i : i + 1])
    assert got == [b"data: one", b"", b"data: caf\xc3\xa9\r", b": comment", b"data: three"]
    with pytest.raises(remote.stream._LineTooLong):
        remote.stream._Lines().feed(b"x" * (MAX_LINE + 1))


def test_a_flood_stops_promptly(misbehaving) -> None:
    r = run(f"{misbehaving}/flood", stop_after=0.5)
    report("flood, stop at 0.5 s", r)
    assert r.stop_reason == "stopped" and r.chunks > 100
    assert r.stop_latency < STOP_WITHIN and r.peak < PEAK_UNDER
    assert set(r.text) == {"x"}


def test_an_endless_error_body_is_read_only_so_far(misbehaving) -> None:
    r = run(f"{misbehaving}/endlesserror")
    report("endlesserror", r)
    assert r.stop_reason == "error" and "server error (500)" in r.error
    assert len(r.error) < 400 and r.seconds < 10 and r.peak < PEAK_UNDER


def test_a_long_hostile_error_text_is_bounded_plain_text(misbehaving) -> None:
    r = run(f"{misbehaving}/longerror")
    assert r.stop_reason == "error" and "server error (500)" in r.error
    detail = r.error[r.error.index("(", r.error.index("(500)") + 5) + 1 : r.error.rindex(")")]
    assert len(detail) <= remote.MAX_DETAIL and detail.endswith("…")
    assert "\n" not in r.error  # kept as text: the UI neutralizes the escape where shown
    assert detail.startswith("\x1b]0;pwned\x07[/bold]")


def test_endless_response_headers_are_bounded(raw_server) -> None:
    def endless_headers(conn: socket.socket, closing: threading.Event) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: ")
        while not closing.is_set():
            conn.sendall(b"a" * 65536)

    r = run(f"http://{raw_server(endless_headers)}/v1")
    assert r.stop_reason == "error" and "response headers over 64 KiB" in r.error
    assert r.peak < PEAK_UNDER


# -- stopping in every phase ----------------------------------------------------------------
def test_stop_while_connecting(unanswered_port) -> None:
    r = run(f"http://127.0.0.1:{unanswered_port}/v1", stop_after=0.3)
    report("connect (SYN unanswered), stop at 0.3 s", r)
    assert r.stop_reason == "stopped" and r.error is None
    assert r.stop_latency < STOP_WITHIN


def test_connecting_past_the_timeout_is_one_sentence(unanswered_port) -> None:
    r = run(f"http://127.0.0.1:{unanswered_port}/v1", timeout=1.0)
    assert r.stop_reason == "error" and "did not answer within 1 s" in r.error
    assert r.seconds < 5


def test_stop_while_resolving(monkeypatch) -> None:
    release = threading.Event()

    def slow_getaddrinfo(*args, **kwargs):
        release.wait(30)  # a resolver that hangs
        raise socket.gaierror("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    try:
        r = run("http://slow-resolver.test:8000/v1", stop_after=0.3)
    finally:
        release.set()
    report("resolve (hanging resolver), stop at 0.3 s", r)
    assert r.stop_reason == "stopped" and r.stop_latency < STOP_WITHIN


def test_stop_while_waiting_for_headers(misbehaving) -> None:
    r = run(f"{misbehaving}/noheaders", stop_after=0.3)
    report("headers (accepted, never answered), stop at 0.3 s", r)
    assert r.stop_reason == "stopped" and r.error is None
    assert r.stop_latency < STOP_WITHIN


def test_no_headers_within_the_timeout_is_one_sentence(misbehaving) -> None:
    r = run(f"{misbehaving}/noheaders", timeout=1.0)
    assert r.stop_reason == "error" and "did not answer within 1 s" in r.error
    assert r.seconds < 5


def test_stop_during_the_tls_handshake(raw_server) -> None:
    r = run(f"https://{raw_server(raw_server.hold)}/v1", stop_after=0.3)
    report("TLS handshake (silent peer), stop at 0.3 s", r)
    assert r.stop_reason == "stopped" and r.stop_latency < STOP_WITHIN


def test_stop_mid_stream_on_a_quiet_server(misbehaving) -> None:
    r = run(f"{misbehaving}/stall", stop_after=0.3, timeout=30)
    report("mid-stream (server silent after one chunk), stop at 0.3 s", r)
    assert r.stop_reason == "stopped" and r.text == "partial"
    assert r.stop_latency < STOP_WITHIN


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_is_handled_promptly_however_fast_the_server_floods(
    misbehaving, test_env, tmp_path, sig
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "--endpoint",
            f"{misbehaving}/flood",
            "--prompt",
            "x",
            "--data-dir",
            str(tmp_path),
            "--session",
            "flood",
        ],
        cwd=ROOT,
        env=test_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.read(3) == b"xxx"
    time.sleep(0.2)  # deep in the flood
    sent = time.monotonic()
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    print(f"\nflood, {sig.name}: exited {proc.returncode} {took * 1000:.0f} ms after the signal")
    assert proc.returncode == 128 + sig, err
    assert took < 3.0, f"took {took:.1f} s to honour {sig.name}"
    store = SessionStore(tmp_path)
    reply = store.load(store.find("flood").id).transcript[-1]
    assert reply.role == "assistant" and reply.stop_reason == "interrupted"
    assert reply.content and set(reply.content) == {"x"}


# -- answers that are not an OpenAI API -----------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("html", "answered with a web page: this is not an OpenAI-compatible API at"),
        ("html404", "answered 404 with a web page: this is not an OpenAI-compatible API at"),
        ("notopenai", "is not a chat completion: this is not an OpenAI-compatible API at"),
    ],
)
def test_a_non_api_answer_says_so(misbehaving, mode, words) -> None:
    r = run(f"{misbehaving}/{mode}")
    assert r.stop_reason == "error" and words in r.error
    assert f"{misbehaving}/{mode}/v1" in r.error and "mid-reply" not in r.error


def test_a_web_page_on_a_server_error_keeps_the_status(misbehaving) -> None:
    r = run(f"{misbehaving}/html502")
    assert "server error (502) (a web page, not an API answer)" in r.error
    assert "<" not in r.error


def test_an_answer_that_is_not_http_says_so(raw_server) -> None:
    def garbage(conn: socket.socket, closing: threading.Event) -> None:
        conn.recv(65536)
        conn.sendall(b"\x15\x03\x01\x00\x02\x02\x46 not http at all")

    r = run(f"http://{raw_server(garbage)}/v1")
    assert r.stop_reason == "error" and "did not answer in HTTP" in r.error
    assert "is not an OpenAI-compatible API at" in r.error


def test_events_that_are_not_chat_chunks_say_so(raw_server) -> None:
    def other_sse(conn: socket.socket, closing: threading.Event) -> None:
        conn.recv(65536)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
            b'data: {"temperature": 21.5}\n\n'
        )

    r = run(f"http://{raw_server(other_sse)}/v1")
    assert "sent events that are not chat-completion chunks" in r.error
    assert "is not an OpenAI-compatible API at" in r.error


def test_malformed_chunked_framing_keeps_the_partial_reply(raw_server) -> None:
    def bad_chunks(conn: socket.socket, closing: threading.Event) -> None:
        conn.recv(65536)
        event = b'data: {"choices": [{"delta": {"content": "partial"}}]}\n\n'
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + f"{len(event):x}\r\n".encode()
            + event
            + b"\r\nzz-not-hex\r\n"
        )
        raw_server.hold(conn, closing)

    r = run(f"http://{raw_server(bad_chunks)}/v1")
    assert r.stop_reason == "error" and "malformed chunked framing" in r.error
    assert r.text == "partial"


def test_models_from_a_non_api_say_so(misbehaving) -> None:
    for mode in ("html", "notopenai"):
        with pytest.raises(remote.RemoteError, match="is not an OpenAI-compatible API at"):
            list_models(Endpoint(f"{misbehaving}/{mode}"))


def test_listing_models_stops_promptly(misbehaving) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(remote.RemoteError, match="Stopped asking"):
        list_models(Endpoint(f"{misbehaving}/noheaders"), stop)
    assert time.monotonic() - started < 0.3 + STOP_WITHIN


# -- odd but valid answers ------------------------------------------------------------------
def test_invalid_utf8_becomes_replacement_characters(misbehaving) -> None:
    r = run(f"{misbehaving}/badutf8")
    report("badutf8", r)
    assert r.error is None and r.stop_reason == "eos"
    # a split four-byte character decodes whole; bad bytes and a lone surrogate become U+FFFD
    assert r.text == "café a\ufffd\ufffdb c\ufffdd \U0001f600!"
    r.text.encode("utf-8")  # storable as is


def test_chunked_framing_split_anywhere(misbehaving) -> None:
    r = run(f"{misbehaving}/chunked")
    assert r.error is None and r.text == "Grüße aus Köln" and r.chunks == 3


def test_a_server_that_ignores_stream_still_answers(misbehaving) -> None:
    r = run(f"{misbehaving}/completion")
    assert r.error is None and r.text == "Whole reply." and r.stop_reason == "eos"


def test_tls_streams_and_a_bad_certificate_is_one_sentence(tls_misbehaving) -> None:
    good = run(f"{tls_misbehaving}/ok", verify_tls=False)
    assert good.error is None and good.text == "Hello there!"
    stopped = run(f"{tls_misbehaving}/slow", verify_tls=False, stop_after=0.3)
    assert stopped.stop_reason == "stopped" and stopped.stop_latency < STOP_WITHIN
    bad = run(f"{tls_misbehaving}/ok")
    assert bad.stop_reason == "error" and "TLS with 127.0.0.1:" in bad.error
    assert "certificate" in bad.error


# -- credentials in the URL -----------------------------------------------------------------
KEY = "sk-url-secret-42"


def test_url_credentials_are_redacted_everywhere() -> None:
    endpoint = Endpoint(f"http://user:{KEY}@127.0.0.1:9/v1")
    assert endpoint.url == "http://127.0.0.1:9/v1" and endpoint.host == "127.0.0.1:9"
    for shown in (repr(endpoint), str(endpoint), str(dataclasses.asdict(endpoint))):
        assert KEY not in shown and "user" not in shown
    assert Endpoint(endpoint.url).api_key() is None  # the clean URL carries no key
    assert redact_url(f"https://u:{KEY}@h.example:8/v1?x=1#f") == "https://h.example:8/v1?x=1#f"
    assert redact_url(f"u:{KEY}@h:8/v1") == "h:8/v1"
    assert redact_url("http://h/p@th") == "http://h/p@th"
    with pytest.raises(remote.RemoteError) as bad:
        Endpoint(f"ftp://user:{KEY}@host/v1")
    assert KEY not in str(bad.value)


@pytest.mark.parametrize(
    ("userinfo", "key"),
    [(f"user:{KEY}", KEY), (KEY, KEY), (f":{KEY}", KEY), ("u:p%40ss%3Aw", "p@ss:w")],
)
def test_url_credentials_are_sent_as_a_bearer_token(
    misbehaving, seen_headers, monkeypatch, userinfo, key
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    url = misbehaving.replace("http://", f"http://{userinfo}@") + "/ok"
    r = run(url)
    assert r.error is None and seen_headers[-1]["Authorization"] == f"Bearer {key}"


def test_the_environment_key_wins_over_the_url(misbehaving, seen_headers, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    run(misbehaving.replace("http://", f"http://user:{KEY}@") + "/ok")
    assert seen_headers[-1]["Authorization"] == "Bearer sk-from-env"


def test_url_credentials_never_reach_an_error(misbehaving, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with_key = misbehaving.replace("http://", f"http://user:{KEY}@")
    for mode in ("status401", "status404", "html", "notopenai", "truncated"):
        r = run(f"{with_key}/{mode}")
        assert r.error and KEY not in r.error and "user" not in r.error
    engine = RemoteEngine(Endpoint(f"{with_key}/status401"))
    with pytest.raises(remote.RemoteError) as refused:
        engine.load(ModelSpec(source="default"))
    assert KEY not in str(refused.value)
    engine = RemoteEngine(Endpoint(f"{with_key}/ok"))
    loaded = engine.load(ModelSpec(source="default"))
    assert KEY not in repr(loaded) and KEY not in loaded.device


def test_a_key_that_would_inject_headers_is_refused(misbehaving, seen_headers) -> None:
    before = len(seen_headers)
    r = run(misbehaving.replace("http://", "http://u:sk%0d%0aX-Evil:%201@") + "/ok")
    assert r.stop_reason == "error" and "cannot go in an HTTP header" in r.error
    assert len(seen_headers) == before


def test_one_shot_never_saves_url_credentials(misbehaving, test_env, tmp_path) -> None:
    env = {k: v for k, v in test_env.items() if k != "OPENAI_API_KEY"}
    url = misbehaving.replace("http://", f"http://user:{KEY}@") + "/ok"
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--endpoint", url, "--prompt", "x"]
        + ["--data-dir", str(tmp_path), "--session", "creds"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert KEY not in done.stdout and KEY not in done.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
