"""Streaming generation with stop-on-event, stats and per-conversation KV-cache reuse.

Runs synchronously in the calling thread (a Textual worker thread, or the CLI's main
thread) and hands text to ``on_text`` as soon as it decodes. Setting the
``threading.Event`` stops generation after the token being computed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..reasons import StopReason
from . import libs
from .errors import GenerationError, OutOfMemoryError
from .settings import EffectiveSettings

if TYPE_CHECKING:
    from .provenance import Provenance


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    reused_tokens: int = 0
    new_tokens: int = 0
    time_to_first_token: float | None = None
    tokens_per_second: float | None = None
    total_seconds: float = 0.0
    stop_reason: StopReason = StopReason.EOS
    error: str | None = None
    dropped_messages: int = 0
    """Oldest messages left out of the prompt because the conversation did not fit the
    model's context (see :class:`TurnInfo`)."""
    target_forwards: int | None = None
    """Forward passes of the (target) model during the turn, prefill included."""
    draft_proposed: int | None = None
    """Speculative decoding: draft tokens proposed (by the draft model or prompt lookup);
    ``None`` for a turn without speculation."""
    draft_accepted: int | None = None
    """Speculative decoding: proposed tokens the target model accepted."""
    provenance: Provenance | None = None
    """How the reply was made (local engine only): see :mod:`.provenance`."""
    reasoning_tokens: int | None = None
    """Of ``new_tokens``, those the model spent reasoning (its thinking, see
    :mod:`.reasoning`); ``None`` for a reply without reasoning."""
    reasoning_seconds: float | None = None
    """From the start of the turn until the reasoning ended."""

    @property
    def answer_tokens(self) -> int:
        return max(0, self.new_tokens - (self.reasoning_tokens or 0))

    @property
    def speculative(self) -> bool:
        return self.draft_proposed is not None

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted draft tokens / proposed, for a speculative turn that proposed any."""
        if not self.draft_proposed or self.draft_accepted is None:
            return None
        return self.draft_accepted / self.draft_proposed

    @property
    def tokens_per_forward(self) -> float | None:
        """New tokens per forward pass of the target model (1.0 without speculation)."""
        if not self.target_forwards or not self.new_tokens:
            return None
        return self.new_tokens / self.target_forwards

    def describe(self) -> str:
        ttft = f"{self.time_to_first_token * 1000:.0f} ms" if self.time_to_first_token else "n/a"
        tps = f"{self.tokens_per_second:.1f} tok/s" if self.tokens_per_second else "n/a"
        reused = f" ({self.reused_tokens} cached)" if self.reused_tokens else ""
        dropped = (
            f", {self.dropped_messages} earlier messages left out" if self.dropped_messages else ""
        )
        speculative = ""
        if self.speculative:
            rate = self.acceptance_rate
            accepted = (
                f"draft acceptance {rate * 100:.0f}% ({self.draft_accepted}/{self.draft_proposed})"
                if rate is not None
                else "no draft tokens proposed (the prompt held no match for the draft, or "
                "the settings rejected every candidate: see the notice before the turn)"
            )
            per_forward = self.tokens_per_forward
            speculative = f", {accepted}" + (
                f", {per_forward:.2f} tokens per forward pass" if per_forward else ""
            )
        new = f"{self.new_tokens} new"
        if self.reasoning_tokens is not None:
            new += f" ({self.reasoning_tokens} reasoning, {self.answer_tokens} answer)"
        return (
            f"{self.prompt_tokens} prompt tokens{reused}, {new}, "
            f"first token {ttft}, {tps}, stop: {self.stop_reason}{speculative}{dropped}"
        )

    def message_fields(self) -> dict[str, Any]:
        """The stored fields of a reply with these stats, as keyword arguments for
        ``tui.store.ChatMessage`` / ``Conversation.append`` (``model`` and ``label`` are the
        caller's)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "time_to_first_token": self.time_to_first_token,
            "tokens_per_second": self.tokens_per_second,
            "stop_reason": self.stop_reason,
            "error": self.error,
            "acceptance_rate": self.acceptance_rate,
            "tokens_per_forward": self.tokens_per_forward if self.speculative else None,
            "provenance": self.provenance.to_dict() if self.provenance is not None else None,
            "reasoning_tokens": self.reasoning_tokens,
            "reasoning_seconds": self.reasoning_seconds,
        }


def lookup_blocked(kwargs: dict[str, Any]) -> str:
    """Why prompt lookup cannot propose a token with these generation ``kwargs``, as a
    sentence with what to change; '' if it can.

    transformers checks each lookup candidate against the logits processors on flat
    logits; a repetition penalty lowers exactly the repeated tokens that prompt lookup
    proposes, and top-p or top-k (when sampling) then cut them off: no candidate is ever
    proposed (the bundled model's defaults, repetition_penalty=1.1 and top_p=0.9, do
    this; with temperature=0 the same prompt accepted 74% of 3-token drafts)."""
    penalty = kwargs.get("repetition_penalty")
    if penalty in (None, 1, 1.0) or not kwargs.get("do_sample"):
        return ""
    cuts = [
        f"{name}={kwargs[name]}"
        for name, off in (("top_p", 1.0), ("top_k", 0))
        if kwargs.get(name) not in (None, off)
    ]
    if not cuts:
        return ""
    return (
        f"Prompt lookup will propose nothing with repetition_penalty={penalty} and "
        f"{' and '.join(cuts)}: these reject the repeated tokens it drafts. For speed, "
        "set repetition_penalty=1 (or temperature=0 for greedy replies)."
    )


@dataclass
class TurnInfo:
    """What a turn is about to send, handed to ``LocalEngine.chat``'s ``on_start`` once the
    caller has the model and the prompt is built, before the first token.

    ``prompt_tokens`` is the prompt as sent (after leaving out ``dropped_messages`` of
    the oldest messages, never the system prompt, when the conversation did not fit the
    model's ``context_limit``); ``notices`` are sentences for the user (messages left
    out, a system prompt folded into the first message, a reply capped by the context).
    ``max_new_tokens`` is the most the reply may take (capped by the context) and
    ``settings`` the effective generation settings (model defaults + the user's).
    ``None`` means not known (a remote backend may not tell).
    """

    prompt_tokens: int | None = None
    context_limit: int | None = None
    dropped_messages: int = 0
    notices: list[str] = field(default_factory=list)
    max_new_tokens: int | None = None
    settings: EffectiveSettings | None = None
    model_name: str | None = None


@dataclass
class GenerationResult:
    text: str
    """The answer (for a reasoning model, without its reasoning)."""
    stats: GenerationStats
    notices: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    """The generated token ids (local engine), as the model produced them."""
    reasoning: str = ""
    """The model's reasoning (its thinking) before the answer, if any."""


class IncrementalDecoder:
    """Decode a growing list of token ids in O(1) per token.

    Keeps a short window (prefix_offset..read_offset) so multi-token characters and
    tokenizers that merge spaces decode correctly; text ending in U+FFFD (a partial
    UTF-8 sequence) is held back until the next token completes it.

    ``skip_special_tokens=False`` keeps special tokens in the text (a reply parser may
    need them, as gpt-oss's ``<|channel|>``), except the ``hidden`` ones (the end of
    turn).
    """

    def __init__(
        self,
        tokenizer: Any,
        skip_special_tokens: bool = True,
        hidden: frozenset[int] = frozenset(),
    ) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.hidden = hidden
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""

    def _decode(self, ids: list[int]) -> str:
        if self.hidden:
            ids = [i for i in ids if i not in self.hidden]
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, new_ids: list[int]) -> str:
        self.ids.extend(new_ids)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            chunk = full[len(prefix) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            self.text += chunk
            return chunk
        return ""

    def flush(self) -> str:
        """Whatever is still held back (a trailing partial character is dropped)."""
        full = self._decode(self.ids[self.prefix_offset :])
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        chunk = full[len(prefix) :].rstrip("\ufffd") if len(full) > len(prefix) else ""
        self.text += chunk
        self.prefix_offset = self.read_offset = len(self.ids)
        return chunk


class _Streamer:
    """transformers streamer: skips the prompt, decodes new tokens, times the first.

    With stop strings, text that could be the start of one is held back until the next
    token shows it is not, so a stop string never reaches the screen; everything after a
    complete stop string is dropped. ``text`` is exactly what was handed to ``on_text``.
    """

    def __init__(
        self,
        tokenizer: Any,
        on_text: Callable[[str], None] | None,
        stop_strings: tuple[str, ...] = (),
        decoder: IncrementalDecoder | None = None,
    ) -> None:
        self.decoder = decoder or IncrementalDecoder(tokenizer)
        self.on_text = on_text
        self.stop_strings = tuple(s for s in stop_strings if s)
        self.prompt_seen = False
        self.first_token_at: float | None = None
        self.token_ids: list[int] = []
        self.text = ""
        self.pending = ""
        self.hit_stop = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        ids = value.reshape(-1).tolist()
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.token_ids.extend(ids)
        self._emit(self.decoder.push(ids))

    def end(self) -> None:
        self._emit(self.decoder.flush())
        if not self.hit_stop and self.pending:
            self._send(self.pending)
        self.pending = ""

    def _send(self, chunk: str) -> None:
        if chunk:
            self.text += chunk
            if self.on_text is not None:
                self.on_text(chunk)

    def _emit(self, chunk: str) -> None:
        if self.hit_stop or not chunk:
            return
        if not self.stop_strings:
            self._send(chunk)
            return
        self.pending += chunk
        cut = min(
            (i for i in (self.pending.find(s) for s in self.stop_strings) if i >= 0), default=-1
        )
        if cut >= 0:
            self.hit_stop = True
            self._send(self.pending[:cut])
            self.pending = ""
            return
        hold = 0
        for stop in self.stop_strings:
            for k in range(min(len(stop) - 1, len(self.pending)), hold, -1):
                if self.pending.endswith(stop[:k]):
                    hold = k
                    break
        self._send(self.pending[: len(self.pending) - hold])
        self.pending = self.pending[len(self.pending) - hold :]


def _stop_criteria(event: threading.Event) -> Any:
    torch = libs.torch()

    class StopOnEvent(libs.transformers().StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full(
                (input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return StopOnEvent()


def _cache_kwarg() -> str:
    """transformers 5.x renamed generate's ``past_key_values`` to ``cache``."""
    try:
        from transformers.generation.utils import ALL_CACHE_NAMES  # imported by libs

        return "cache" if "cache" in ALL_CACHE_NAMES else "past_key_values"
    except ImportError:
        return "past_key_values"


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class CacheEntry:
    cache: Any
    token_ids: list[int]


class KVCacheStore:
    """One transformers ``DynamicCache`` per conversation, with the ids it holds."""

    def __init__(self) -> None:
        self._entries: dict[str, CacheEntry] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> CacheEntry | None:
        with self._lock:
            return self._entries.pop(key, None)

    def put(self, key: str, entry: CacheEntry) -> None:
        with self._lock:
            self._entries[key] = entry

    def copy(self, key: str) -> CacheEntry | None:
        """A copy of a conversation's cache, which stays (for an alternative reply)."""
        import copy

        with self._lock:
            entry = self._entries.get(key)
            return CacheEntry(copy.deepcopy(entry.cache), list(entry.token_ids)) if entry else None

    def drop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def tokens(self, key: str) -> int:
        with self._lock:
            entry = self._entries.get(key)
            return len(entry.token_ids) if entry else 0

    def bytes(self, key: str | None = None) -> int:
        from .memory import cache_bytes

        with self._lock:
            if key is None:
                entries = list(self._entries.values())
            else:
                entries = [self._entries[key]] if key in self._entries else []
            return sum(cache_bytes(e.cache) for e in entries)


def _reuse(entry: CacheEntry | None, prompt_ids: list[int]) -> tuple[Any, int]:
    """Crop the cached prefix that matches ``prompt_ids``; (cache or None, reused tokens).

    At least one prompt token is always left to prefill, since generation needs the
    logits of the last prompt position."""
    if entry is None:
        return None, 0
    keep = min(common_prefix(entry.token_ids, prompt_ids), len(prompt_ids) - 1)
    cached = entry.cache.get_seq_length()
    if keep <= 0 or cached < keep:
        return None, 0
    try:
        if cached > keep:
            entry.cache.crop(-(cached - keep))
    except Exception:  # a cache type that cannot be cropped: full prefill
        return None, 0
    return entry.cache, keep


def build_config(
    model: Any, tokenizer: Any, gen_kwargs: dict[str, Any], stop_strings: tuple[str, ...] = ()
) -> Any:
    """The ``GenerationConfig`` of one turn: the model's own, overlaid with ``gen_kwargs``,
    with the prompt format's stop strings added and a pad token set."""
    GenerationConfig = libs.transformers().GenerationConfig
    base = model.generation_config.to_dict() if model.generation_config else {}
    base.update(gen_kwargs)
    if stop_strings:
        base["stop_strings"] = list(base.get("stop_strings") or []) + list(stop_strings)
    config = GenerationConfig(**{k: v for k, v in base.items() if not k.startswith("_")})
    if config.pad_token_id is None:
        config.pad_token_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.eos_token_id
        )
    return config


def config_stop_strings(config: Any) -> tuple[str, ...]:
    stops = config.stop_strings or ()
    return (stops,) if isinstance(stops, str) else tuple(stops)


def special_decoder(tokenizer: Any, config: Any) -> IncrementalDecoder:
    """A decoder that keeps the special tokens the model writes (but its end-of-turn and
    padding), for a parser that splits reasoning from the answer."""
    eos = config.eos_token_id
    hidden = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    pad = config.pad_token_id
    hidden.update(pad if isinstance(pad, list) else [pad] if pad is not None else [])
    return IncrementalDecoder(tokenizer, skip_special_tokens=False, hidden=frozenset(hidden))


def failure(exc: BaseException) -> str:
    """The sentence for a failure part way through a reply."""
    torch = libs.torch()
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return str(OutOfMemoryError("Ran out of memory while generating."))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return str(GenerationError(f"Generation failed: {type(exc).__name__}: {first}"))


def conclude(
    stats: GenerationStats,
    streamer: _Streamer,
    config: Any,
    event: threading.Event,
    started: float,
    finished: float,
) -> None:
    """Fill in a reply's counts, timings and (unless it failed) why it ended."""
    new_ids = streamer.token_ids
    stats.new_tokens = len(new_ids)
    stats.total_seconds = finished - started
    if streamer.first_token_at is not None:
        stats.time_to_first_token = streamer.first_token_at - started
        decode_time = finished - streamer.first_token_at
        if stats.new_tokens > 1 and decode_time > 0:
            stats.tokens_per_second = (stats.new_tokens - 1) / decode_time
    if stats.stop_reason != StopReason.ERROR:
        eos = config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if event.is_set():
            stats.stop_reason = StopReason.STOPPED
        elif (new_ids and new_ids[-1] in eos_ids) or streamer.hit_stop:
            stats.stop_reason = StopReason.EOS
        elif config.max_new_tokens is not None and stats.new_tokens >= config.max_new_tokens:
            stats.stop_reason = StopReason.LENGTH


def generate(
    loaded: Any,
    prompt_ids: list[int],
    gen_kwargs: dict[str, Any],
    *,
    stop_event: threading.Event | None = None,
    on_text: Callable[[str], None] | None = None,
    cache_store: KVCacheStore | None = None,
    cache_key: str | None = None,
    stop_strings: tuple[str, ...] = (),
    seed: int | None = None,
    assistant_model: Any = None,
    special_tokens: bool = False,
) -> GenerationResult:
    """Stream one reply for ``prompt_ids``; never raises for a failure mid-stream: the
    partial text comes back with ``stop_reason='error'`` and the message in ``error``.

    ``special_tokens``: the text keeps the special tokens the model writes (but its
    end-of-turn and padding), for a parser that splits reasoning from the answer."""
    torch, transformers = libs.torch(), libs.transformers()
    DynamicCache = transformers.DynamicCache
    StoppingCriteriaList = transformers.StoppingCriteriaList

    started = time.perf_counter()
    event = stop_event or threading.Event()
    model, tokenizer = loaded.model, loaded.tokenizer
    stats = GenerationStats(prompt_tokens=len(prompt_ids))

    config = build_config(model, tokenizer, gen_kwargs, stop_strings)
    streamer = _Streamer(
        tokenizer,
        on_text,
        config_stop_strings(config),
        special_decoder(tokenizer, config) if special_tokens else None,
    )
    beams = (config.num_beams or 1) > 1
    use_cache_reuse = cache_store is not None and cache_key is not None and not beams
    speculative = assistant_model is not None or bool(config.prompt_lookup_num_tokens)
    # Speculative turns prefill in full. transformers' assisted decoding (a draft model,
    # or prompt lookup; 5.x ``GenerationMixin._assisted_decoding``) feeds the whole
    # sequence to the model on its first iteration (``next_sequence_length`` is None
    # there) whatever the cache already holds, so a cache covering part of the prompt
    # gets those positions twice and the reply goes wrong from its second token
    # (tests/unit/test_speculative.py::test_assisted_decoding_with_a_partial_cache_*
    # shows it, and will fail, as a reminder, once transformers handles it).
    use_cache_reuse = use_cache_reuse and not speculative

    entry = cache_store.take(cache_key) if use_cache_reuse else None
    cache, reused = _reuse(entry, prompt_ids)
    if use_cache_reuse and cache is None:
        cache = DynamicCache(config=model.config)
    stats.reused_tokens = reused

    device = model.device
    if device.type == "cpu":
        # Grouped-query attention without repeat_kv copies: on CPU torch's SDPA with
        # enable_gqa is ~2x faster at long contexts (see bench/engine.py); transformers
        # only enables it without a mask unless asked.
        os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")
    input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    kwargs: dict[str, Any] = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "generation_config": config,
        "stopping_criteria": StoppingCriteriaList([_stop_criteria(event)]),
        "streamer": None if beams else streamer,
    }
    if config.stop_strings:
        kwargs["tokenizer"] = tokenizer
    if cache is not None:
        kwargs[_cache_kwarg()] = cache
    if assistant_model is not None:
        kwargs["assistant_model"] = assistant_model
        kwargs["tokenizer"] = tokenizer
    if seed is not None:
        torch.manual_seed(seed)

    output = None
    counter = _Counter(model, speculative)
    try:
        with torch.inference_mode(), counter:
            output = model.generate(**kwargs)
    except Exception as exc:
        if cache_store is not None and cache_key is not None:
            cache_store.drop(cache_key)
        stats.stop_reason = StopReason.ERROR
        stats.error = failure(exc)
        cache = None
    finished = time.perf_counter()

    if beams and output is not None:
        new_ids = output[0, len(prompt_ids) :].tolist()
        streamer.first_token_at = finished
        streamer.put(input_ids)
        streamer.put(torch.tensor(new_ids))
    streamer.end()
    new_ids = streamer.token_ids
    text = streamer.text
    conclude(stats, streamer, config, event, started, finished)

    stats.target_forwards = counter.forwards
    if counter.counting_drafts:
        stats.draft_proposed, stats.draft_accepted = counter.proposed, counter.accepted

    if use_cache_reuse and cache is not None:
        all_ids = list(prompt_ids) + list(new_ids)
        held = cache.get_seq_length()
        cache_store.put(cache_key, CacheEntry(cache, all_ids[:held]))
    return GenerationResult(text=text, stats=stats, token_ids=list(new_ids))


class _Counter:
    """Counts, during one ``generate`` call, the model's forward passes (a forward hook)
    and, for speculative decoding, the draft tokens proposed and accepted.

    transformers makes the candidate generator (draft model or prompt lookup) inside
    ``generate``, through ``_get_candidate_generator``; for the duration of the call
    that method is wrapped on this model instance so that the generator's
    ``get_candidates`` (proposed = candidate length) and
    ``update_candidate_strategy`` (accepted = ``num_matches``) are counted. If a future
    transformers renames them, the counts are simply missing (``None``)."""

    def __init__(self, model: Any, speculative: bool) -> None:
        self.model = model
        self.speculative = speculative
        self.forwards = 0
        self.proposed = 0
        self.accepted = 0
        self.counting_drafts = False
        self._hook: Any = None

    def __enter__(self) -> _Counter:
        def count(*_args: Any) -> None:
            self.forwards += 1

        try:
            self._hook = self.model.register_forward_hook(count)
        except Exception:
            self._hook = None
        if self.speculative:
            original = getattr(type(self.model), "_get_candidate_generator", None)
            if callable(original):
                self.model._get_candidate_generator = self._wrap_factory(original)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._hook is not None:
            self._hook.remove()
        self.model.__dict__.pop("_get_candidate_generator", None)

    def _wrap_factory(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def factory(*args: Any, **kwargs: Any) -> Any:
            generator = original(self.model, *args, **kwargs)
            self._wrap(generator)
            return generator

        return factory

    def _wrap(self, generator: Any) -> None:
        get, update = (
            getattr(generator, "get_candidates", None),
            getattr(generator, "update_candidate_strategy", None),
        )
        if not callable(get) or not callable(update):
            return
        self.counting_drafts = True

        def get_candidates(input_ids: Any, *args: Any, **kwargs: Any) -> Any:
            out = get(input_ids, *args, **kwargs)
            candidates = out[0] if isinstance(out, tuple) else out
            self.proposed += max(0, int(candidates.shape[-1]) - int(input_ids.shape[-1]))
            return out

        def update_candidate_strategy(*args: Any, **kwargs: Any) -> Any:
            matches = args[2] if len(args) > 2 else kwargs.get("num_matches", 0)
            self.accepted += int(matches)
            return update(*args, **kwargs)

        generator.get_candidates = get_candidates
        generator.update_candidate_strategy = update_candidate_strategy


def score(model: Any, prompt_ids: list[int], continuation_ids: list[int]) -> list[float]:
    """Log-probabilities of ``continuation_ids`` after ``prompt_ids`` under ``model``, from
    one forward pass over both (teacher forcing). Only the logits of the continuation's
    positions are computed (``logits_to_keep``), and the softmax runs in float32 a slice
    at a time, so a long reply does not hold a (tokens x vocabulary) float32 block."""
    torch = libs.torch()
    ids = list(prompt_ids) + list(continuation_ids)
    count = len(continuation_ids)
    input_ids = torch.tensor([ids], dtype=torch.long, device=model.device)
    with torch.inference_mode():
        try:
            logits = model(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                logits_to_keep=count + 1,
                use_cache=False,
            ).logits
        except TypeError:  # a model without logits_to_keep
            logits = model(input_ids=input_ids, use_cache=False).logits
        logits = logits[0, -count - 1 : -1]
        targets = torch.tensor(continuation_ids, dtype=torch.long, device=logits.device)
        out: list[float] = []
        for start in range(0, count, 256):
            part = logits[start : start + 256].float().log_softmax(dim=-1)
            picked = part.gather(1, targets[start : start + 256, None])[:, 0]
            out.extend(picked.tolist())
    return out
