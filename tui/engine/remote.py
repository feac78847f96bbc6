"""A second backend: any server that speaks the OpenAI chat-completions API with
server-sent events (``transformers serve``, vLLM, TGI, the llama.cpp server, Ollama).

Standard library HTTP only. Every fault (server down, refused, 401/404/429/5xx, a
malformed or truncated event stream, a drop mid-reply, a stall past the timeout)
becomes one sentence; a reply that was partly streamed is returned with what arrived,
``stop_reason='error'``, so the caller keeps it. Stopping closes the stream at once.

The API key is read from an environment variable (default ``OPENAI_API_KEY``) when a
request is made; it is never stored on the objects chat-tui saves.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .chat_format import with_system
from .errors import EngineError
from .generation import (
    STOP_EOS,
    STOP_ERROR,
    STOP_LENGTH,
    STOP_STOPPED,
    GenerationResult,
    GenerationStats,
    TurnInfo,
)
from .progress import Progress
from .protocol import Capabilities, ChatEngine, OnStart, OnText
from .settings import GenerationSettings
from .spec import ModelSpec

DEFAULT_TIMEOUT = 60.0
POLL = 0.2  # how often a blocked read wakes up to check the stop event


class RemoteError(EngineError):
    pass


@dataclass
class Endpoint:
    url: str  # base URL ending in /v1 (added if missing)
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = DEFAULT_TIMEOUT
    verify_tls: bool = True
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        url = self.url.strip().rstrip("/")
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"{self.url!r} is not an http(s) URL.")
        if not parts.path.rstrip("/").endswith("/v1"):
            url += "/v1"
        self.url = url
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            self.warnings.append(
                f"{parts.hostname} is reached over plain http: prompts, replies and the API key "
                "travel unencrypted."
            )

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None


def _is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Connection:
    def __init__(self, endpoint: Endpoint) -> None:
        parts = urlsplit(endpoint.url)
        self.endpoint = endpoint
        self.base_path = parts.path.rstrip("/")
        if parts.scheme == "https":
            context = ssl.create_default_context()
            if not endpoint.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self.conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=endpoint.timeout, context=context
            )
        else:
            self.conn = http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=endpoint.timeout
            )

    def request(self, method: str, path: str, body: dict[str, Any] | None = None):
        headers = {"Accept": "application/json, text/event-stream"}
        key = self.endpoint.api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        where = self.endpoint.host
        try:
            self.conn.request(method, self.base_path + path, body=data, headers=headers)
            return self.conn.getresponse()
        except ConnectionRefusedError:
            raise RemoteError(
                f"Cannot reach {where}: connection refused (is the server running?)."
            ) from None
        except socket.gaierror:
            raise RemoteError(f"Cannot reach {where}: the host name does not resolve.") from None
        except TimeoutError:
            raise RemoteError(
                f"{where} did not answer within {self.endpoint.timeout:g} s."
            ) from None
        except ssl.SSLError as exc:
            raise RemoteError(
                f"TLS with {where} failed ({exc.reason or exc}); check the certificate."
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise RemoteError(f"Cannot reach {where}: {exc.__class__.__name__}: {exc}.") from None

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass


def _http_error(status: int, body: bytes, endpoint: Endpoint, model: str | None) -> RemoteError:
    detail = ""
    try:
        payload = json.loads(body.decode("utf-8", "replace"))
        err = payload.get("error", payload) if isinstance(payload, dict) else payload
        detail = err.get("message") if isinstance(err, dict) else str(err)
        detail = detail or (payload.get("detail") if isinstance(payload, dict) else "") or ""
    except ValueError:
        detail = body.decode("utf-8", "replace").strip()[:200]
    detail = " ".join(str(detail).split())[:200]
    suffix = f" ({detail})" if detail else ""
    host = endpoint.host
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


def list_models(endpoint: Endpoint) -> list[str]:
    conn = _Connection(endpoint)
    try:
        response = conn.request("GET", "/models")
        body = response.read()
        if response.status != 200:
            raise _http_error(response.status, body, endpoint, None)
        try:
            data = json.loads(body)
            return [str(m["id"]) for m in data.get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RemoteError(f"{endpoint.host} sent a malformed model list.") from None
    finally:
        conn.close()


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


def stream_chat(
    endpoint: Endpoint,
    model: str,
    messages: list[dict[str, str]],
    settings: GenerationSettings,
    stop_event: threading.Event | None = None,
    on_text: Callable[[str], None] | None = None,
) -> GenerationResult:
    """Stream one reply. Never raises for a fault after the request was accepted: the
    partial text comes back with ``stop_reason='error'`` and the sentence in ``error``."""
    event = stop_event or threading.Event()
    stats = GenerationStats()
    started = time.perf_counter()
    first_at: float | None = None
    parts: list[str] = []
    finish: str | None = None
    chunks = 0
    conn = _Connection(endpoint)
    try:
        response = conn.request(
            "POST", "/chat/completions", request_body(model, messages, settings)
        )
        if response.status != 200:
            raise _http_error(response.status, response.read(), endpoint, model)
        sock = conn.conn.sock
        if sock is not None:
            sock.settimeout(POLL)  # wake up to check the stop event and the stall timer
        last_data = time.monotonic()
        buffer = b""
        done = False
        while not done:
            if event.is_set():
                stats.stop_reason = STOP_STOPPED
                break
            try:
                piece = response.read1(65536)
            except TimeoutError:
                if time.monotonic() - last_data > endpoint.timeout:
                    raise RemoteError(
                        f"{endpoint.host} sent nothing for {endpoint.timeout:g} s; the partial "
                        "reply was kept."
                    ) from None
                continue
            except (OSError, http.client.HTTPException):
                raise RemoteError(
                    f"The connection to {endpoint.host} dropped mid-reply; the partial reply "
                    "was kept."
                ) from None
            if not piece:
                if finish is None:
                    raise RemoteError(
                        f"The connection to {endpoint.host} closed mid-reply, before the reply "
                        "ended; the partial reply was kept."
                    )
                break
            last_data = time.monotonic()
            buffer += piece
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                line = line.strip()
                if not line or line.startswith(b":") or not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise RemoteError(
                        f"{endpoint.host} sent a malformed event stream; the partial reply was "
                        "kept."
                    ) from None
                if not isinstance(chunk, dict):
                    raise RemoteError(f"{endpoint.host} sent a malformed event stream.")
                if "error" in chunk:
                    err = chunk["error"]
                    message = err.get("message") if isinstance(err, dict) else str(err)
                    raise RemoteError(f"{endpoint.host} reported an error mid-reply: {message}.")
                usage = chunk.get("usage")
                if isinstance(usage, dict):
                    stats.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                    stats.new_tokens = int(usage.get("completion_tokens") or 0)
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    text = delta.get("content")
                    if text:
                        if first_at is None:
                            first_at = time.perf_counter()
                        chunks += 1
                        parts.append(text)
                        if on_text is not None:
                            on_text(text)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
        if stats.stop_reason != STOP_STOPPED:
            stats.stop_reason = STOP_LENGTH if finish == "length" else STOP_EOS
    except RemoteError as exc:  # reported as a result, with whatever was streamed
        stats.stop_reason = STOP_ERROR
        stats.error = str(exc)
    finally:
        conn.close()
    finished = time.perf_counter()
    stats.total_seconds = finished - started
    if not stats.new_tokens:
        stats.new_tokens = chunks  # servers without usage: one chunk is about one token
    if first_at is not None:
        stats.time_to_first_token = first_at - started
        if stats.new_tokens > 1 and finished > first_at:
            stats.tokens_per_second = (stats.new_tokens - 1) / (finished - first_at)
    return GenerationResult("".join(parts), stats)


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
                + ", ".join(models[:8])
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
        messages: Sequence[dict[str, str]],
        *,
        system_prompt: str | None = None,
        conversation_id: str | None = None,
        settings: GenerationSettings | None = None,
        stop_event: threading.Event | None = None,
        on_text: OnText | None = None,
        on_start: OnStart | None = None,
        continue_final: bool = False,
    ) -> GenerationResult:
        if self.loaded is None:
            raise RemoteError("No endpoint model is selected yet.")
        if continue_final:
            self.refuse_continue()
        msgs = with_system(messages, system_prompt)
        if on_start is not None:
            on_start(TurnInfo(context_limit=self.loaded.context_limit))
        return stream_chat(
            self.endpoint, self.loaded.name, msgs, settings or self.settings, stop_event, on_text
        )
