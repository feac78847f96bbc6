"""One streamed reply: the request's body (:func:`request_body`), the bound on what
the reply may bring back (:func:`reply_limit`), the event stream split into lines
(:class:`_Lines`) and read into a :class:`_Reply`, and :func:`stream_chat`, which turns
every fault into a result that keeps the partial text."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from ...reasons import StopReason
from ...safe_text import fix_surrogates
from ..chat_format import template_arguments
from ..generation import GenerationResult, GenerationStats
from ..reasoning import ReplySplitter
from ..settings import GenerationSettings
from .endpoint import Endpoint
from .errors import (
    _INVALID,
    RemoteError,
    _detail,
    _http_error,
    _loads,
    _Lost,
    _not_openai,
    _Silent,
    _size,
    _Stopped,
)
from .transport import MAX_LINE, _Call

# a reply's text in UTF-8 bytes, whatever was asked for: well under a conversation
# file's limit (store.MAX_FILE_BYTES, 16 MiB), so that what was received can be saved
MAX_REPLY = 2 << 20
MIN_REPLY = 64 * 1024  # the least a reply may hold before it counts as oversized
BYTES_PER_TOKEN = 64  # allowance per requested token (the longest real tokens are ~16)


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
