"""The OpenAI-compatible backend against a real `transformers serve` and a server that
misbehaves in every way the issue lists."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import CliRun, run_cli
from tui.engine import ChatRequest
from tui.engine.remote import Endpoint, RemoteEngine, list_models, request_body, stream_chat
from tui.engine.settings import GenerationSettings
from tui.engine.spec import ModelSpec
from tui.store import SessionStore

ROOT = Path(__file__).resolve().parents[2]


USER = [{"role": "user", "content": "x"}]


def greedy(n: int = 12) -> GenerationSettings:
    return GenerationSettings({"do_sample": False, "max_new_tokens": n})


# -- against a real transformers serve ------------------------------------------------------
def test_models_are_listed(serve) -> None:
    assert serve["model"] in list_models(Endpoint(serve["url"]))


def test_streams_a_reply_with_stats(serve) -> None:
    engine = RemoteEngine(Endpoint(serve["url"]))
    engine.load(ModelSpec(source=serve["model"]))
    chunks: list[str] = []
    result = engine.chat(
        ChatRequest([{"role": "user", "content": "hi"}], settings=greedy()), on_text=chunks.append
    )
    assert result.stats.error is None, result.stats.error
    assert len(chunks) > 1 and "".join(chunks) == result.text
    assert result.stats.new_tokens == 12 and result.stats.stop_reason == "length"
    assert result.stats.prompt_tokens > 0 and result.stats.time_to_first_token > 0


def test_stop_closes_the_stream(serve) -> None:
    engine = RemoteEngine(Endpoint(serve["url"]))
    engine.load(ModelSpec(source=serve["model"]))
    stop = threading.Event()
    chunks: list[str] = []

    def on_text(text: str) -> None:
        chunks.append(text)
        if len(chunks) == 3:
            stop.set()

    result = engine.chat(
        ChatRequest([{"role": "user", "content": "hi"}], settings=greedy(2000)),
        stop_event=stop,
        on_text=on_text,
    )
    assert result.stats.stop_reason == "stopped"
    assert 3 <= len(chunks) < 2000 and result.text == "".join(chunks)


def test_multi_turn_sends_the_history(serve) -> None:
    engine = RemoteEngine(Endpoint(serve["url"]))
    engine.load(ModelSpec(source=serve["model"]))
    first = engine.chat(
        ChatRequest([{"role": "user", "content": "My name is Ada."}], settings=greedy(4))
    )
    history = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "What is my name?"},
    ]
    second = engine.chat(ChatRequest(history, settings=greedy(4)))
    alone = engine.chat(ChatRequest(history[-1:], settings=greedy(4)))
    assert second.stats.prompt_tokens > alone.stats.prompt_tokens > 0


def cli(env, *args: str) -> CliRun:
    """``chat-tui ARGS`` in this process, with what ``env`` changes in the environment."""
    return run_cli(*args, env={k: v for k, v in env.items() if os.environ.get(k) != v})


def test_cli_one_shot_and_session_never_store_the_key(serve, test_env, tmp_path) -> None:
    env = dict(test_env, CHAT_TUI_TEST_KEY="sk-secret-value-123")
    args = [
        "--endpoint",
        serve["url"],
        "--model",
        serve["model"],
        "--api-key-env",
        "CHAT_TUI_TEST_KEY",
        "--data-dir",
        str(tmp_path),
        "max_new_tokens=6",
        "do_sample=false",
    ]
    first = cli(env, *args, "--session", "remote", "--prompt", "hello")
    assert first.returncode == 0, first.stderr
    second = cli(env, *args, "--session", "remote", "--prompt", "again")
    assert second.returncode == 0, second.stderr
    store = SessionStore(tmp_path)
    conv = store.load(store.find("remote").id)
    assert [m.role for m in conv.transcript] == ["user", "assistant"] * 2
    assert conv.transcript[3].prompt_tokens > conv.transcript[1].prompt_tokens
    assert conv.model["endpoint"] == serve["url"]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"sk-secret-value-123" not in path.read_bytes()


def test_cli_with_no_server_exits_nonzero_with_one_sentence(
    test_env, tmp_path, unused_port
) -> None:
    done = cli(
        test_env,
        "--endpoint",
        f"http://127.0.0.1:{unused_port}/v1",
        "--prompt",
        "hi",
        "--data-dir",
        str(tmp_path),
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "connection refused" in lines[0] and "Traceback" not in done.stderr


# -- faults ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("status401", "refused the request (401)"),
        ("status404", "does not know model 'fake-model' (404)"),
        ("status429", "rate-limiting requests (429)"),
        ("status500", "server error (500)"),
    ],
)
def test_http_errors_are_one_sentence(misbehaving, mode, words) -> None:
    result = stream_chat(
        Endpoint(f"{misbehaving}/{mode}"),
        "fake-model",
        [{"role": "user", "content": "x"}],
        greedy(),
    )
    assert result.stats.stop_reason == "error" and words in result.stats.error
    assert "\n" not in result.stats.error and result.text == ""


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("malformed", "malformed event stream"),
        ("truncated", "closed mid-reply"),
        ("drop", "mid-reply"),
    ],
)
def test_broken_streams_keep_the_partial_reply(misbehaving, mode, words) -> None:
    chunks: list[str] = []
    result = stream_chat(
        Endpoint(f"{misbehaving}/{mode}"),
        "fake-model",
        [{"role": "user", "content": "x"}],
        greedy(),
        on_text=chunks.append,
    )
    assert result.stats.stop_reason == "error"
    assert words in result.stats.error
    assert result.text.startswith("partial") and result.text == "".join(chunks)


def test_a_stalled_server_times_out_with_the_partial_reply(misbehaving) -> None:
    box: list = []
    worker = threading.Thread(
        target=lambda: box.append(
            stream_chat(
                Endpoint(f"{misbehaving}/stall", timeout=1.0),
                "fake-model",
                [{"role": "user", "content": "x"}],
                greedy(),
            )
        )
    )
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "stream_chat hung past its timeout"
    (result,) = box
    assert result.text == "partial" and "sent nothing for 1 s" in result.stats.error


def test_stop_is_prompt_even_mid_stream(misbehaving) -> None:
    stop = threading.Event()
    chunks: list[str] = []

    def on_text(text: str) -> None:
        chunks.append(text)
        if len(chunks) == 2:
            stop.set()

    result = stream_chat(
        Endpoint(f"{misbehaving}/slow"),
        "fake-model",
        [{"role": "user", "content": "x"}],
        greedy(),
        stop,
        on_text,
    )
    assert result.stats.stop_reason == "stopped" and len(chunks) < 200


def test_two_tabs_replies_run_at_once_on_their_own_connections(misbehaving) -> None:
    """The server batches: the remote engine sends a second tab's request while the first
    tab's reply is still streaming (held here after its first chunk), and says no wait."""
    engine = RemoteEngine(Endpoint(f"{misbehaving}/ok"))
    engine.load(ModelSpec(source="default"))
    first_streaming, release = threading.Event(), threading.Event()
    results: dict[str, object] = {}
    waits: list[str] = []

    def hold(_text: str) -> None:
        first_streaming.set()
        release.wait(30)

    first = threading.Thread(
        target=lambda: results.setdefault("first", engine.chat(ChatRequest(USER), on_text=hold))
    )
    first.start()
    try:
        assert first_streaming.wait(30)
        second = engine.chat(ChatRequest(USER), on_wait=waits.append)
        assert not release.is_set() and first.is_alive()  # the first is still streaming
    finally:
        release.set()
        first.join(30)
    assert second.stats.error is None and second.text == "Hello there!"
    assert results["first"].text == "Hello there!" and waits == []


def test_retry_after_a_fault_works(misbehaving) -> None:
    bad = stream_chat(
        Endpoint(f"{misbehaving}/status500"),
        "fake-model",
        [{"role": "user", "content": "x"}],
        greedy(),
    )
    good = stream_chat(
        Endpoint(f"{misbehaving}/ok"), "fake-model", [{"role": "user", "content": "x"}], greedy()
    )
    assert bad.stats.error and good.stats.error is None and good.text == "Hello there!"


def test_api_key_comes_from_the_named_variable(misbehaving, monkeypatch, seen_headers) -> None:
    monkeypatch.setenv("MY_KEY_VAR", "sk-abc")
    stream_chat(
        Endpoint(f"{misbehaving}/ok", api_key_env="MY_KEY_VAR"),
        "fake-model",
        [{"role": "user", "content": "x"}],
        greedy(),
    )
    assert seen_headers[-1]["Authorization"] == "Bearer sk-abc"
    monkeypatch.delenv("MY_KEY_VAR")
    stream_chat(
        Endpoint(f"{misbehaving}/ok", api_key_env="MY_KEY_VAR"),
        "fake-model",
        [{"role": "user", "content": "x"}],
        greedy(),
    )
    assert "Authorization" not in seen_headers[-1]


def test_plain_http_to_a_remote_host_warns() -> None:
    assert Endpoint("http://127.0.0.1:8000/v1").warnings == []
    assert Endpoint("http://localhost:8000").warnings == []
    assert Endpoint("https://example.com/v1").warnings == []
    assert "unencrypted" in Endpoint("http://example.com/v1").warnings[0]
    assert Endpoint("http://127.0.0.1:8000").url == "http://127.0.0.1:8000/v1"


def test_settings_map_to_api_fields() -> None:
    body = request_body(
        "m",
        [{"role": "user", "content": "x"}],
        GenerationSettings(
            {
                "max_new_tokens": 50,
                "temperature": 0.7,
                "top_p": 0.9,
                "top_k": 40,
                "seed": 3,
                "stop_strings": ["END"],
                "repetition_penalty": 1.1,
            }
        ),
    )
    assert body["max_tokens"] == 50 and body["temperature"] == 0.7 and body["top_p"] == 0.9
    assert body["top_k"] == 40 and body["seed"] == 3 and body["stop"] == ["END"]
    assert body["stream"] is True and body["repetition_penalty"] == 1.1
    assert request_body("m", [], GenerationSettings({"do_sample": False}))["temperature"] == 0.0


def test_sigterm_during_a_remote_reply_keeps_it(misbehaving, test_env, tmp_path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "--endpoint",
            f"{misbehaving}/slow",
            "--prompt",
            "x",
            "--data-dir",
            str(tmp_path),
            "--session",
            "slow",
        ],
        cwd=ROOT,
        env=test_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.read(3)
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    store = SessionStore(tmp_path)
    reply = store.load(store.find("slow").id).transcript[-1]
    assert reply.stop_reason == "interrupted" and reply.content.startswith(" w0")
