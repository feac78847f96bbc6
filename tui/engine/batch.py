"""Several conversations generating at once from one loaded model (batched decoding).

Decoding is bound by reading the weights: one forward pass that extends two or four
replies by a token costs little more than one that extends a single reply. So every
reply that can be batched becomes a :class:`Row`, and the rows decode together:

* A row's prompt is read on its own first (its prefill, reusing its conversation's
  KV cache as before), which gives its first token; it joins the :class:`Batch` at the
  next step. A row that ends (end of text, a stop string, ``max_new_tokens``) or is
  stopped leaves after the step that ended it; the others go on undisturbed.
* The batch holds one left-padded cache: per layer, the rows' keys and values stacked
  along the batch axis, each row padded on the left to the longest, with an attention
  mask that hides the padding and per-row position ids. A row brings its own
  ``DynamicCache`` in when it joins and takes it back, cut out again, when it leaves, so
  its conversation's next turn still starts from it.
* Each row keeps its own settings: its logits processors (temperature, top-p, top-k,
  penalties, ...) and stopping criteria are the ones ``model.generate`` would build for
  it, applied to its row of the logits; a sampled row draws from its own seeded
  ``torch.Generator``, so its tokens do not depend on who else is in the batch.
* One thread, the :class:`~.scheduler.Scheduler`'s, runs the model for every row; each
  caller waits in its own thread and decodes its row's tokens there (see
  :mod:`.scheduler`).

What is not batched (decided in :func:`plan`) runs alone through ``model.generate``
(:func:`.generation.generate`): speculative decoding, beam search and other decoding
modes, models whose cache is not a plain full-attention ``DynamicCache`` (sliding
windows, linear attention). Running alone means holding the :class:`~.gate.ModelGate`: it
waits for the rows in the batch to end, and rows that arrive meanwhile wait for it;
the caller is told what it waits for (``on_wait``).

A greedy reply made in a batch is the reply made alone up to the summation order of
the batched (and masked) matrix products: on a near tie the two can pick different
tokens (``bench/parallel.py`` counts how often).
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import libs, memory, skinny
from .generation import (
    CacheEntry,
    KVCacheStore,
    _reuse,
    _stop_criteria,
    failure,
)

HEADROOM_TOKENS = 512
"""The memory check before a join counts this many more tokens per row (or the rows'
remaining ``max_new_tokens``, if fewer) on top of the batch's cache after the join."""

RESERVE_BYTES = 256 * memory.MiB
"""Memory left free for everything else when deciding whether a join fits."""

ROOM_TOKENS = 128
"""The batch's cache keeps room for this many more tokens per row, so that a step writes
its token in place; it grows by as much again when full."""


def plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


# -- what can be batched --------------------------------------------------------------------


@dataclass(eq=False)  # rows are compared by identity
class Row:
    """One reply made in the batch: its settings, its state, and the queue its caller
    reads (``("wait", text)``, ``("start", None)``, ``("tokens", [ids])``,
    ``("retry", None)``, ``("done", None)``)."""

    loaded: Any  # the LoadedModel it was prepared for
    model: Any  # loaded.model when prepared (a set-aside model comes back as another)
    prompt_ids: list[int]
    config: Any  # the prepared GenerationConfig
    processors: Any  # LogitsProcessorList
    criteria: Any  # StoppingCriteriaList, the stop event's criterion included
    event: threading.Event
    do_sample: bool
    seed: int | None
    store: KVCacheStore | None = None
    key: str | None = None
    keep_cache: bool = True  # put the cache back for the conversation's next turn
    cache_name: str = "cache"  # the forward's keyword for the cache
    logits_to_keep: bool = True
    outbox: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    # state, written by the thread that runs the model
    input_ids: Any = None  # (1, prompt + new) on the model's device
    cache: Any = None  # the row's own DynamicCache, while it is not in the batch
    pending: Any = None  # (1,) the last token, not yet read by the model
    new_ids: list[int] = field(default_factory=list)
    reused: int = 0
    forwards: int = 0
    generator: Any = None
    submitted_at: float = 0.0
    first_token_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    waited: bool = False
    abandoned: str | None = None  # the caller gave up (its on_text raised): why
    finished: bool = False
    _said: str | None = None

    def wait(self, text: str) -> None:
        """Tell the caller what the row waits for (once per change)."""
        self.waited = True
        if text != self._said:
            self._said = text
            self.outbox.put(("wait", text))

    def start(self) -> None:
        if self.waited:  # time to the first token counts from here, not the wait
            self.submitted_at = time.perf_counter()
        self._said = None
        self.outbox.put(("start", None))

    def choose(self, logits: Any) -> bool:
        """Pick the next token from this row's ``(1, vocab)`` float32 logits; ``True``
        when the row is done (its stopping criteria, the stop event included)."""
        torch = libs.torch()
        scores = self.processors(self.input_ids, logits)
        if self.do_sample:
            probs = torch.nn.functional.softmax(scores, dim=-1)
            token = torch.multinomial(probs, num_samples=1, generator=self.generator).squeeze(1)
        else:
            token = torch.argmax(scores, dim=-1)
        self.input_ids = torch.cat([self.input_ids, token[:, None]], dim=-1)
        self.pending = token
        now = time.perf_counter()
        self.new_ids.append(int(token.item()))
        if self.first_token_at is None:
            self.first_token_at = now
        self.outbox.put(("tokens", self.new_ids[-1:]))
        return bool(self.criteria(self.input_ids, None)[0])


def plan(
    loaded: Any,
    prompt_ids: list[int],
    config: Any,
    *,
    event: threading.Event,
    seed: int | None,
    speculative: bool,
    store: KVCacheStore | None,
    key: str | None,
    keep_cache: bool = True,
) -> Row | str:
    """A :class:`Row` for this reply, or why it runs alone (a phrase: "speculative
    decoding runs alone")."""
    if speculative:
        return "speculative decoding runs alone"
    torch, transformers = libs.torch(), libs.transformers()
    from transformers.generation.configuration_utils import GenerationMode

    model, tokenizer = loaded.model, loaded.tokenizer
    mode = config.get_generation_mode()
    if mode not in (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE):
        return f"{getattr(mode, 'value', str(mode)).replace('_', ' ')} runs alone"
    if (config.guidance_scale or 1) != 1 or config.prefill_chunk_size or config.token_healing:
        return "these settings run alone"
    if config.cache_implementation is not None:
        return f"a {config.cache_implementation} cache runs alone"
    reason = _model_reason(model)
    if reason:
        return reason
    try:
        prepared = _prepare(model, tokenizer, config, prompt_ids, event)
    except Exception as exc:  # a transformers that moved its internals: not batched
        return f"these settings run alone ({type(exc).__name__})"
    processors, criteria, config = prepared
    generator = None
    if config.do_sample:
        generator = torch.Generator(device=model.device)
        if seed is not None:
            generator.manual_seed(seed)
    params = inspect.signature(model.forward).parameters
    row = Row(
        loaded=loaded,
        model=model,
        prompt_ids=list(prompt_ids),
        config=config,
        processors=processors,
        criteria=criteria,
        event=event,
        do_sample=bool(config.do_sample),
        seed=seed,
        store=store,
        key=key,
        keep_cache=keep_cache,
        cache_name="cache" if "cache" in params else "past_key_values",
        logits_to_keep="logits_to_keep" in params,
        generator=generator,
        submitted_at=time.perf_counter(),
    )
    row.input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=model.device)
    del transformers
    return row


_MODEL_REASONS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _model_reason(model: Any) -> str:
    """Why this model's replies cannot share a batch ("" if they can): its cache must be
    full-attention ``DynamicLayer``s, its forward must take masks and positions, and a
    row's result must not depend on the other rows (8-bit bitsandbytes layers do)."""
    cached = _MODEL_REASONS.get(model)
    if cached is not None:
        return cached
    transformers = libs.transformers()
    from transformers.cache_utils import DynamicLayer

    reason = ""
    params = inspect.signature(model.forward).parameters
    if getattr(model.config, "is_encoder_decoder", False):
        reason = "an encoder-decoder model runs alone"
    elif any(type(m).__name__ == "Linear8bitLt" for m in model.modules()):
        # LLM.int8 takes the outlier columns of the whole batch out of the 8-bit product:
        # a reply would change with its neighbours (measured: 0 of 4 greedy replies
        # matched), so 8-bit replies take turns
        reason = "an 8-bit model runs one reply at a time"
    elif not {"attention_mask", "position_ids"} <= set(params) or not (
        {"cache", "past_key_values"} & set(params)
    ):
        reason = "this model's forward pass cannot be batched"
    else:
        try:
            cache = transformers.DynamicCache(config=model.config)
            if any(type(layer) is not DynamicLayer for layer in cache.layers):
                reason = "this model's attention (a sliding window or linear layers) runs alone"
        except Exception:
            reason = "this model's cache cannot be batched"
    _MODEL_REASONS[model] = reason
    return reason


def _prepare(model: Any, tokenizer: Any, config: Any, prompt_ids: list[int], event: Any) -> Any:
    """The logits processors and stopping criteria ``model.generate`` would build for
    this prompt (its own steps 1, 6 and 8, through the same methods)."""
    import copy

    transformers = libs.transformers()
    device = model.device
    torch = libs.torch()
    has_default_max = config.max_length is None and model.generation_config.max_length is None
    has_default_min = config.min_length is None and model.generation_config.min_length is None
    config, _ = model._prepare_generation_config(copy.deepcopy(config))
    model._prepare_special_tokens(config, True, device=device, batch_size=1)
    input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    config = model._prepare_generated_length(
        generation_config=config,
        has_default_max_length=has_default_max,
        has_default_min_length=has_default_min,
        model_input_name="input_ids",
        inputs_tensor=input_ids,
        input_ids_length=len(prompt_ids),
    )
    processors = model._get_logits_processor(
        generation_config=config,
        input_ids_seq_length=len(prompt_ids),
        encoder_input_ids=input_ids,
        prefix_allowed_tokens_fn=None,
        logits_processor=transformers.LogitsProcessorList(),
        device=device,
        model_kwargs={},
    )
    criteria = model._get_stopping_criteria(
        generation_config=config,
        stopping_criteria=transformers.StoppingCriteriaList([_stop_criteria(event)]),
        tokenizer=tokenizer,
    )
    return processors, criteria, config


# -- the batch ------------------------------------------------------------------------------


_ROOMY: type | None = None


def roomy_layer() -> type:
    """The batch cache's layer type: a transformers ``DynamicLayer`` whose keys and values
    live in buffers with room to grow, so a step writes its token in place. (A
    ``DynamicLayer`` concatenates, copying every layer's whole cache at every step: with
    4 rows of 1,000 tokens that copying took 38% of a step on a 2-core CPU.) Its
    ``keys`` and ``values`` are views of the filled part, so the model reads them as
    usual."""
    global _ROOMY
    if _ROOMY is None:
        from transformers.cache_utils import DynamicLayer

        class RoomyLayer(DynamicLayer):
            def __init__(self, keys: Any, values: Any, length: int) -> None:
                super().__init__()
                self.buffers = (keys, values)  # (rows, heads, room, dim)
                self.filled = length
                self.is_initialized = True
                self.device = keys.device
                self.dtype = keys.dtype
                self._views()

            def _views(self) -> None:
                keys, values = self.buffers
                self.keys = keys[:, :, : self.filled]
                self.values = values[:, :, : self.filled]

            def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any):
                torch = libs.torch()
                new = key_states.shape[-2]
                if self.filled + new > self.buffers[0].shape[2]:
                    grown = []
                    for buffer in self.buffers:
                        shape = (
                            *buffer.shape[:2],
                            self.filled + new + ROOM_TOKENS,
                            buffer.shape[3],
                        )
                        bigger = torch.zeros(shape, dtype=buffer.dtype, device=buffer.device)
                        bigger[:, :, : self.filled] = buffer[:, :, : self.filled]
                        grown.append(bigger)
                    self.buffers = (grown[0], grown[1])
                end = self.filled + new
                self.buffers[0][:, :, self.filled : end] = key_states
                self.buffers[1][:, :, self.filled : end] = value_states
                self.filled = end
                self._views()
                return self.keys, self.values

        _ROOMY = RoomyLayer
    return _ROOMY


class Batch:
    """The rows decoding together and their left-padded cache."""

    def __init__(self, model: Any) -> None:
        self.model = model
        skinny.prepare(model)
        self.rows: list[Row] = []
        self.cache: Any = None  # a DynamicCache of (rows, heads, length, dim) layers
        self.pads: list[int] = []  # left padding of each row

    @property
    def length(self) -> int:
        return self.cache.get_seq_length() if self.cache is not None else 0

    def cache_bytes(self, key: str | None = None) -> int:
        """Bytes of the batch's cache (of one conversation's row, padding included)."""
        if self.cache is None:
            return 0
        total = memory.cache_bytes(self.cache)
        if key is None:
            return total
        share = sum(1 for r in self.rows if r.key == key)
        return total * share // max(1, len(self.rows))

    def _forward(self, row: Row, **inputs: Any) -> Any:
        if row.logits_to_keep:
            inputs["logits_to_keep"] = 1
        return self.model(use_cache=True, return_dict=True, **inputs)

    def prefill(self, row: Row, siblings: list[Row]) -> bool:
        """Read the row's prompt on its own, reusing its conversation's cache (or a copy
        of it, for a row that does not keep it), and pick its first token. ``True`` if
        the row is already done."""
        torch, transformers = libs.torch(), libs.transformers()
        entry = None
        if row.store is not None and row.key is not None:
            entry = row.store.take(row.key) if row.keep_cache else row.store.copy(row.key)
            if entry is None and not row.keep_cache:
                entry = self.copy_prefix(row.key, siblings)
        cache, reused = _reuse(entry, row.prompt_ids)
        if cache is None:
            cache = transformers.DynamicCache(config=self.model.config)
        row.reused = reused
        device = self.model.device
        ids = torch.tensor([row.prompt_ids[reused:]], dtype=torch.long, device=device)
        positions = torch.arange(reused, len(row.prompt_ids), device=device)[None]
        out = self._forward(row, input_ids=ids, position_ids=positions, **{row.cache_name: cache})
        logits = out.logits[:, -1].to(copy=True, dtype=torch.float32)
        del out
        row.cache = cache
        row.forwards += 1
        return row.choose(logits)

    def copy_prefix(self, key: str, siblings: list[Row]) -> CacheEntry | None:
        """A copy of the cache of a row of the same conversation being made (in the batch,
        or just read), for an alternative reply to the same turn (``/regenerate 3``)."""
        transformers = libs.transformers()
        for row in siblings:
            if row.key != key or not row.keep_cache:
                continue
            if row in self.rows:
                source = self._slices(self.rows.index(row))
            elif row.cache is not None:
                source = [(lay.keys, lay.values) for lay in row.cache.layers]
            else:
                continue
            copy = transformers.DynamicCache(config=self.model.config)
            for (keys, values), layer in zip(source, copy.layers, strict=True):
                if keys is not None:
                    layer.update(keys, values)
            held = copy.get_seq_length()
            return CacheEntry(copy, (row.prompt_ids + row.new_ids)[:held])
        return None

    def join(self, row: Row) -> None:
        """Take the row (after its prefill) into the batch, with its cache."""
        rows = [*self.rows, row]
        length = max(self.length, row.cache.get_seq_length())
        pads = [p + length - self.length for p in self.pads]
        pads.append(length - row.cache.get_seq_length())
        sources = [self._slices(i) for i in range(len(self.rows))]
        sources.append([(lay.keys, lay.values) for lay in row.cache.layers])
        self.cache = self._stack(sources, pads, length)
        self.rows, self.pads = rows, pads
        row.cache = None

    def leave(self, rows: list[Row]) -> None:
        """Take these rows out; each gets its own cache back (its padding cut off)."""
        transformers = libs.transformers()
        keep = [i for i, r in enumerate(self.rows) if r not in rows]
        for index, row in enumerate(self.rows):
            if index not in keep:
                row.cache = self._cut(index, transformers)
        if not keep:
            self.rows, self.cache, self.pads = [], None, []
            return
        trim = min(self.pads[i] for i in keep)
        pads = [self.pads[i] - trim for i in keep]
        self.cache = self._stack([self._slices(i) for i in keep], pads, self.length - trim)
        self.rows = [self.rows[i] for i in keep]
        self.pads = pads

    def _slices(self, index: int) -> list[tuple[Any, Any]]:
        """Row ``index``'s keys and values in every layer, without its padding (views)."""
        pad = self.pads[index]
        return [
            (lay.keys[index : index + 1, :, pad:], lay.values[index : index + 1, :, pad:])
            for lay in self.cache.layers
        ]

    def _stack(self, sources: list[list[tuple[Any, Any]]], pads: list[int], length: int) -> Any:
        """A batch cache of these rows' keys and values (``sources``: per row, per layer),
        each row padded on the left (``pads``) to ``length``, with room to grow."""
        torch, transformers = libs.torch(), libs.transformers()
        cache = transformers.DynamicCache(config=self.model.config)
        layer_type = roomy_layer()
        for index in range(len(cache.layers)):
            keys, values = sources[0][index]
            shape = (len(sources), keys.shape[1], length + ROOM_TOKENS, keys.shape[3])
            buffers = []
            for part, like in ((0, keys), (1, values)):
                buffer = torch.zeros(shape, dtype=like.dtype, device=like.device)
                for row, (source, pad) in enumerate(zip(sources, pads, strict=True)):
                    buffer[row, :, pad:length] = source[index][part][0]
                buffers.append(buffer)
            cache.layers[index] = layer_type(buffers[0], buffers[1], length)
        return cache

    def _cut(self, index: int, transformers: Any) -> Any:
        """Row ``index``'s own cache: a plain ``DynamicCache``, its padding cut off."""
        cache = transformers.DynamicCache(config=self.model.config)
        for (keys, values), layer in zip(self._slices(index), cache.layers, strict=True):
            layer.update(keys.contiguous(), values.contiguous())
        return cache

    def step(self) -> list[Row]:
        """One forward pass for every row; the rows that are done."""
        torch = libs.torch()
        device = self.model.device
        rows, length = self.rows, self.length
        ids = torch.cat([r.pending for r in rows]).view(len(rows), 1).to(device)
        positions = torch.tensor([[length - p] for p in self.pads], device=device)
        mask = None
        if any(self.pads):
            columns = torch.arange(length + 1, device=device)
            starts = torch.tensor(self.pads, device=device)
            mask = (columns[None, :] >= starts[:, None]).long()
        row = rows[0]
        with skinny.rows():  # a few rows: the product MKL does well (see .skinny)
            out = self._forward(
                row,
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                **{row.cache_name: self.cache},
            )
        logits = out.logits[:, -1].to(copy=True, dtype=torch.float32)
        del out
        done = []
        for index, row in enumerate(rows):
            row.forwards += 1
            if row.choose(logits[index : index + 1]):
                done.append(row)
        return done

    def fits(self, row: Row) -> str | None:
        """``None`` if joining ``row`` fits in memory, else the sentence for the wait."""
        if not self.rows:
            return None
        per_token = memory.kv_bytes_per_token(self.model.config, self.model.dtype.itemsize)
        count = len(self.rows) + 1
        longest = max(self.length, len(row.prompt_ids))
        remaining = [
            max(0, (r.config.max_new_tokens or HEADROOM_TOKENS) - len(r.new_ids))
            for r in [*self.rows, row]
        ]
        headroom = min(HEADROOM_TOKENS, max(remaining))
        after = count * (longest + headroom) + count * longest  # and the copy while joining
        need = per_token * after - self.cache_bytes()
        available = memory.available_bytes(str(self.model.device)) - RESERVE_BYTES
        if need <= available:
            return None
        return (
            f"memory: joining needs about {memory.human_bytes(need)} more for the caches and "
            f"{memory.human_bytes(max(0, available))} is free; it joins when another reply ends"
        )


def admit(
    batch: Batch, row: Row, siblings: list[Row], started: Callable[[], None] | None = None
) -> None:
    """Start the row: read its prompt, then let it join the batch (or end at once)."""
    row.start()
    if started is not None:
        started()
    try:
        done = batch.prefill(row, [*batch.rows, *siblings])
    except Exception as exc:
        row.error = failure(exc)
        finish(row)
        return
    if done or row.abandoned:
        finish(row)
        return
    try:
        batch.join(row)
    except Exception as exc:
        row.error = failure(exc)
        finish(row)


def advance(batch: Batch) -> None:
    """One step of the batch; the rows that end leave it. A failure of the step ends
    every row in it, each with the partial text and the sentence."""
    try:
        done = batch.step()
    except Exception as exc:
        error = failure(exc)
        rows = batch.rows
        batch.rows, batch.cache, batch.pads = [], None, []
        for row in rows:
            row.error = error
            finish(row)
        return
    leaving = done + [r for r in batch.rows if r.abandoned and r not in done]
    if leaving:
        batch.leave(leaving)
        for row in leaving:
            finish(row)


def finish(row: Row) -> None:
    """The row is over: its cache goes back to its conversation (unless the reply
    failed, which leaves a cache in an unknown state: dropped), and its caller is told."""
    if row.finished:
        return
    row.finished = True
    row.finished_at = time.perf_counter()
    if row.store is not None and row.key is not None and row.keep_cache:
        if row.error is None and not row.abandoned and row.cache is not None:
            held = row.cache.get_seq_length()
            ids = (row.prompt_ids + row.new_ids)[:held]
            row.store.put(row.key, CacheEntry(row.cache, ids))
        elif row.error is not None or row.abandoned:
            row.store.drop(row.key)
    row.cache = None
    row.outbox.put(("done", None))
