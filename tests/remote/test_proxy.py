"""Behind a proxy: HTTP_PROXY and HTTPS_PROXY carry the model list and the chat through a
real HTTP proxy (tinyproxy, whose log proves each request went through it); NO_PROXY
bypasses it; a proxy that is down or refuses is one sentence; Esc stops at once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from tui.engine.protocol import ChatRequest
from tui.engine.remote import Endpoint, RemoteEngine, list_models, stream_chat
from tui.engine.settings import GenerationSettings
from tui.engine.spec import ModelSpec
from tui.store import SessionStore

ROOT = Path(__file__).resolve().parents[2]
USER = [{"role": "user", "content": "x"}]


def chat(endpoint: Endpoint, stop: threading.Event | None = None):
    return stream_chat(endpoint, "fake-model", USER, GenerationSettings({}), stop)


def test_the_model_list_and_a_chat_go_through_the_proxy(tinyproxy, proxy_env, misbehaving) -> None:
    proxy_env(http=tinyproxy.url)
    engine = RemoteEngine(Endpoint(f"{misbehaving}/ok"))
    loaded = engine.load(ModelSpec(source="default"))  # asks /models
    result = engine.chat(ChatRequest(USER))
    assert loaded.name == "fake-model"
    assert result.stats.error is None and result.text == "Hello there!"
    assert tinyproxy.requests() == [
        f"GET {misbehaving}/ok/v1/models HTTP/1.1",
        f"POST {misbehaving}/ok/v1/chat/completions HTTP/1.1",
    ]


def test_https_goes_through_the_proxy_as_a_tunnel(tinyproxy, proxy_env, tls_misbehaving) -> None:
    proxy_env(https=tinyproxy.url)
    endpoint = Endpoint(f"{tls_misbehaving}/ok", verify_tls=False)
    assert list_models(endpoint) == ["fake-model"]
    result = chat(endpoint)
    assert result.stats.error is None and result.text == "Hello there!"
    host = tls_misbehaving.removeprefix("https://")
    tunnels = [line for line in tinyproxy.requests() if line.startswith(f"CONNECT {host} ")]
    assert len(tunnels) >= 1  # one per connection: tinyproxy does not keep them
    # the certificate is still checked end to end, through the tunnel
    bad = chat(Endpoint(f"{tls_misbehaving}/ok"))
    assert "TLS with 127.0.0.1:" in bad.stats.error and "certificate" in bad.stats.error


def test_no_proxy_bypasses_the_proxy(tinyproxy, proxy_env, misbehaving) -> None:
    proxy_env(http=tinyproxy.url, all=tinyproxy.url, no="localhost,127.0.0.1")
    endpoint = Endpoint(f"{misbehaving}/ok")
    assert list_models(endpoint) == ["fake-model"]
    assert chat(endpoint).text == "Hello there!"
    assert tinyproxy.requests() == []


def test_a_proxy_that_is_down_is_one_sentence(proxy_env, misbehaving, unused_port) -> None:
    proxy_env(http=f"http://127.0.0.1:{unused_port}")
    result = chat(Endpoint(f"{misbehaving}/ok"))
    host = misbehaving.removeprefix("http://")
    assert result.stats.error == (
        f"Cannot reach the proxy 127.0.0.1:{unused_port} (for {host}): connection refused "
        "(is the proxy running?)."
    )


def test_a_tunnel_the_proxy_cannot_open_is_one_sentence(tinyproxy, proxy_env, unused_port) -> None:
    proxy_env(https=tinyproxy.url)
    result = chat(Endpoint(f"https://127.0.0.1:{unused_port}/v1"))
    proxy = tinyproxy.url.removeprefix("http://")
    assert result.stats.error.startswith(
        f"The proxy {proxy} would not connect to 127.0.0.1:{unused_port} ("
    )
    assert "\n" not in result.stats.error


def test_stop_while_the_proxy_waits_for_the_server(tinyproxy, proxy_env, misbehaving) -> None:
    proxy_env(http=tinyproxy.url)
    stop = threading.Event()
    box: list = []
    worker = threading.Thread(
        target=lambda: box.append(chat(Endpoint(f"{misbehaving}/noheaders", timeout=60), stop))
    )
    worker.start()
    deadline = time.monotonic() + 30
    while not any("/noheaders/" in line for line in tinyproxy.requests()):
        assert time.monotonic() < deadline, "the request never reached the proxy"
        time.sleep(0.02)
    stop.set()
    worker.join(30)
    assert not worker.is_alive(), "a stop through the proxy hung"
    assert box[0].stats.stop_reason == "stopped"


def test_one_shot_goes_through_the_proxy(tinyproxy, proxy_env, misbehaving, tmp_path) -> None:
    env = proxy_env(http=tinyproxy.url)
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--endpoint", f"{misbehaving}/ok", "--prompt", "x"]
        + ["--data-dir", str(tmp_path), "--session", "proxied"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello there!"
    assert [line.split()[0] for line in tinyproxy.requests()] == ["GET", "POST"]
    store = SessionStore(tmp_path)
    assert store.load(store.find("proxied").id).transcript[-1].content == "Hello there!"


def test_an_error_page_of_the_proxy_says_it_came_through_the_proxy(
    tinyproxy, proxy_env, unused_port
) -> None:
    proxy_env(http=tinyproxy.url)
    result = chat(Endpoint(f"http://127.0.0.1:{unused_port}/v1"))  # nothing listens there
    proxy = tinyproxy.url.removeprefix("http://")
    assert result.stats.error == (
        f"127.0.0.1:{unused_port}, through the proxy {proxy}, failed with a server error "
        "(500) (a web page, not an API answer); retry."
    )
