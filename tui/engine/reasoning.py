"""A reply in two parts: the model's reasoning (its thinking) and its answer.

Reasoning models (Qwen3, DeepSeek-R1 distills, gpt-oss, SmolLM3...) think before they
answer. The split is transformers' own: the tokenizer's ``response_template`` parsed by
``transformers.utils.chat_parsing.ResponseParser`` (what ``tokenizer.parse_response``
runs), and for tokenizers that ship none the per-family templates ``transformers
serve`` falls back on (:data:`FALLBACKS`, a copy of its table, checked equal by a
test). The parser is given the prompt as ``prefix``, so a template that opens the
reasoning itself (a prefilled ``<think>``) is understood. A model with neither streams
as before: everything is the answer.

Streamed text is handed on in pieces; a piece of reasoning is a :class:`Reasoning`
(a ``str``), a piece of the answer a plain ``str``, as ``transformers serve`` tags its
``ReasoningText``. Each part is trimmed of the blank lines around it.

No Textual and no heavy import at module import time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
"""Names a message's reasoning goes by (transformers' ``_REASONING_FIELDS``): chat
templates read the first; servers send one of the others in their deltas."""


class Reasoning(str):
    """A piece of the model's reasoning, not of its answer."""

    __slots__ = ()


def parts(chunks: Iterable[str]) -> tuple[str, str]:
    """(reasoning, answer) of streamed pieces."""
    thought: list[str] = []
    said: list[str] = []
    for chunk in chunks:
        (thought if isinstance(chunk, Reasoning) else said).append(chunk)
    return "".join(thought), "".join(said)


# transformers serve's fallback response templates (transformers/cli/serving/utils.py,
# ``_RESPONSE_TEMPLATE_FALLBACKS``), by ``config.model_type``, for tokenizers that ship
# no ``response_template``. Copied rather than imported: that module imports FastAPI,
# which a chat-tui install need not have. tests/unit/test_reasoning.py checks the copy.
_QWEN_TOOL_CALLS = {
    "open_pattern": r"\s*<tool_call>",
    "close": "</tool_call>",
    "repeats": True,
    "content": "json",
    "transform": {"type": "function", "function": "{content}"},
}
FALLBACKS: dict[tuple[str, ...], dict[str, Any]] = {
    (
        "qwen2",
        "qwen2_moe",
        "qwen2_vl",
        "qwen2_5_vl",
        "qwen3",
        "qwen3_moe",
        "qwen3_next",
        "qwen3_vl",
        "qwen3_vl_moe",
    ): {
        "defaults": {"role": "assistant"},
        "start_anchor": "<|im_start|>assistant\n",
        "fields": {
            "reasoning_content": {"open": "<think>", "close": "</think>", "content": "text"},
            "tool_calls": _QWEN_TOOL_CALLS,
            "content": {
                "close_pattern": r"\s*(?:<\|im_end\|>|<\|endoftext\|>|<\|eot_id\|>)",
                "content": "text",
            },
        },
    },
    ("qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text"): {
        "defaults": {"role": "assistant"},
        "start_anchor": "<|im_start|>assistant\n",
        "fields": {
            "reasoning_content": {"open": "<think>", "close": "</think>", "content": "text"},
            "tool_calls": {
                "open_pattern": r"\s*<tool_call>\s*<function=(?P<name>[^>\n]+)>",
                "close_pattern": r"</function>\s*</tool_call>",
                "repeats": True,
                "content": "xml-inline",
                "content_args": {
                    "tag_pattern": r"<parameter=(?P<key>[^>\n]+)>\s*(?P<value>.*?)\s*</parameter>",
                },
                "transform": {
                    "type": "function",
                    "function": {"name": "{name}", "arguments": "{content}"},
                },
            },
            "content": {
                "close_pattern": r"\s*(?:<\|im_end\|>|<\|endoftext\|>)",
                "content": "text",
            },
        },
    },
    ("gemma4",): {
        "defaults": {"role": "assistant"},
        "start_anchor": ["<|turn>model\n", "<tool_response|>"],
        "fields": {
            "reasoning_content": {
                "open": "<|channel>thought\n",
                "close": "<channel|>",
                "content": "text",
            },
            "tool_calls": {
                "open_pattern": r"<\|tool_call>call:(?P<name>\w+)",
                "close": "<tool_call|>",
                "repeats": True,
                "content": "json",
                "content_args": {"unquoted_keys": True, "string_delims": [['<|"|>', '<|"|>']]},
                "transform": {
                    "type": "function",
                    "function": {"name": "{name}", "arguments": "{content}"},
                },
            },
            "content": {"close": ["<turn|>", "<|tool_response>", "<eos>"], "content": "text"},
        },
    },
}


def response_template(tokenizer: Any, model_type: str | None) -> dict[str, Any] | None:
    """The template that splits this model's replies: the tokenizer's own
    ``response_template``, else transformers serve's fallback for ``model_type``, else
    None (the reply is all answer)."""
    own = getattr(tokenizer, "response_template", None)
    if isinstance(own, dict):
        return own
    return next((t for types, t in FALLBACKS.items() if model_type in types), None)


def _parser_class() -> Any:
    """transformers' streaming ``ResponseParser``, or None for a transformers without it."""
    from . import libs

    with libs.lock:
        try:
            from transformers.utils.chat_parsing import ResponseParser
        except ImportError:
            return None
    return ResponseParser


class TextRun:
    """Text that grows by many small pieces (a server may send one character an event),
    held compactly: the pieces are joined every 512, so a 16 MiB reply is a few
    thousand strings rather than millions."""

    __slots__ = ("blocks", "empty", "pending")

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.pending: list[str] = []
        self.empty = True

    def append(self, text: str) -> None:
        self.pending.append(text)
        self.empty = False
        if len(self.pending) >= 512:
            self.blocks.append("".join(self.pending))
            self.pending.clear()

    def __str__(self) -> str:
        return "".join(self.blocks + self.pending)


class ReplySplitter:
    """Feeds streamed reply text through transformers' ``ResponseParser`` and hands each
    piece on as :class:`Reasoning` or answer text.

    ``prefix`` is the prompt as sent: the parser starts from where the template left
    the assistant's turn (``start_anchor``). Each part loses its leading blank space
    (the blank lines around ``</think>``, a template's empty ``<think></think>`` when
    thinking is off) and its trailing blank space is held back until more of the part
    follows, so the pieces handed on add up to :attr:`reasoning` and :attr:`answer`
    exactly. Should the parser fail part-way (a malformed template), the rest of the
    reply is answer. Without a parser (a server that sends the parts apart) :meth:`put`
    takes the pieces; an answer with no reasoning before it passes as it comes, as
    before there were reasoning models.
    """

    def __init__(
        self,
        parser: Any,
        on_text: Callable[[str], None] | None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.parser = parser
        self.on_text = on_text
        self.clock = clock
        self.started = clock()
        self.thought_at: float | None = None  # when the reasoning ended
        self._parts = {True: TextRun(), False: TextRun()}  # joined when asked
        self._held = {True: TextRun(), False: TextRun()}
        self.thinking = False  # inside the reasoning now
        self.had_reasoning = False
        self._begun = {True: False, False: False}  # a part already has words
        self._broken = parser is None
        # the prompt's own events (the template's "<think>\n", or a continued reply's
        # reasoning and answer so far): where the reply starts, never new text
        self._route(getattr(parser, "initial_events", []) or [], prompt=True)
        if not self.thinking:  # reasoning the template opened and closed (thinking off)
            self.thought_at, self.had_reasoning = None, False

    @classmethod
    def create(
        cls,
        template: dict[str, Any] | None,
        prefix: str,
        on_text: Callable[[str], None] | None,
    ) -> ReplySplitter | None:
        """A splitter for ``template`` (None: no template, or one transformers refuses)."""
        if template is None:
            return None
        parser_class = _parser_class()
        if parser_class is None:
            return None
        try:
            parser = parser_class(template, prefix=prefix)
        except Exception:  # a malformed template in a model's files: no split
            return None
        return cls(parser, on_text)

    @property
    def reasoning(self) -> str:
        return str(self._parts[True])

    @property
    def answer(self) -> str:
        return str(self._parts[False])

    @property
    def thought_seconds(self) -> float | None:
        if not self.had_reasoning:
            return None
        end = self.thought_at if self.thought_at is not None else self.clock()
        return max(0.0, end - self.started)

    def feed(self, chunk: str) -> None:
        if not chunk:
            return
        if self._broken:
            self.put(False, chunk)
            return
        try:
            events = self.parser.feed(chunk)
        except Exception:
            self._broken = True
            self.put(False, chunk)
            return
        self._route(events)

    def finish(self) -> None:
        """The reply ended: what the parser held back is handed on; trailing blank
        space is dropped."""
        if not self._broken:
            try:
                _message, events = self.parser.finalize()
            except Exception:  # a region left open (max_new_tokens, a stop): nothing held
                events = []
            self._route(events)
        if self.thinking or (self.had_reasoning and self.thought_at is None):
            self.thought_at = self.clock()
        self.thinking = False
        self._held = {True: TextRun(), False: TextRun()}

    def _route(self, events: Iterable[dict[str, Any]], prompt: bool = False) -> None:
        for event in events:
            kind, field = event.get("type"), event.get("field")
            if prompt and kind == "region_chunk":
                if (event.get("text") or "").strip():  # continued: no blank to strip
                    self._begun[field in REASONING_FIELDS] = True
                continue
            if field in REASONING_FIELDS:
                if kind == "region_open":
                    self.thinking = self.had_reasoning = True
                elif kind == "region_close":
                    self.thinking = False
                    if self.thought_at is None:
                        self.thought_at = self.clock()
                elif kind == "region_chunk":
                    self.put(True, event.get("text") or "")
            elif kind == "region_chunk" and not event.get("dirty"):
                # the answer (and any other streamable field: shown as answer text)
                self.put(False, event.get("text") or "")

    def put(self, thought: bool, text: str) -> None:
        """A piece of the reasoning (``thought``) or of the answer."""
        if not text:
            return
        if thought:
            self.had_reasoning = True
        elif self.parser is None and not self.had_reasoning:
            self._send(False, text)  # a server's answer alone is passed on as it comes
            return
        if self._parts[thought].empty and not self._begun[thought]:
            text = text.lstrip()  # nothing is held yet: the part has not begun
        body = text.rstrip()
        held = self._held[thought]
        if not body:  # blank: kept back (a run of pieces, never copied per piece)
            if text:
                held.append(text)
            return
        trailing = text[len(body) :]
        if not held.empty:
            body = str(held) + body
            self._held[thought] = held = TextRun()
        if trailing:
            held.append(trailing)
        self._send(thought, body)

    def _send(self, thought: bool, text: str) -> None:
        if not thought and self.had_reasoning and self.thought_at is None:
            self.thought_at = self.clock()  # the answer began: the thinking is over
        self._parts[thought].append(text)
        if self.on_text is not None:
            self.on_text(Reasoning(text) if thought else text)


def count_reasoning_tokens(
    tokenizer: Any, template: dict[str, Any], prefix: str, token_ids: list[int]
) -> int:
    """How many of a reply's ``token_ids`` were reasoning: up to and including the
    token that closed the reasoning (all of them if it never closed, none if there was
    none), found by parsing the reply again a token at a time."""
    from .generation import IncrementalDecoder

    splitter = ReplySplitter.create(template, prefix, None)
    if splitter is None:
        return 0
    decoder = IncrementalDecoder(tokenizer, skip_special_tokens=False)
    for index, token in enumerate(token_ids):
        splitter.feed(decoder.push([token]))
        if splitter.thought_at is not None:  # this token closed the reasoning
            return index + 1
    splitter.finish()
    return len(token_ids) if splitter.had_reasoning else 0
