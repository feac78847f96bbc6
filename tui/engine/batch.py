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
* One thread, the :class:`Scheduler`'s, runs the model for every row. Each caller waits
  in its own thread and decodes its row's tokens there, so ``on_text`` is called in the
  caller's thread as before.

What is not batched (decided in :func:`plan`) runs alone through ``model.generate``
(:func:`.generation.generate`): speculative decoding, beam search and other decoding
modes, models whose cache is not a plain full-attention ``DynamicCache`` (sliding
windows, linear attention). Running alone means holding the :class:`ModelGate`: it
waits for the rows in the batch to end, and rows that arrive meanwhile wait for it;
the caller is told what it waits for (``on_wait``).

A greedy reply made in a batch is the reply made alone up to the summation order of
the batched (and masked) matrix products: on a near tie the two can pick different
tokens (``bench/parallel.py`` counts how often).
"""

from __future__ import annotations

import contextlib
import inspect
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..reasons import StopReason
from . import libs, memory
from .generation import (
    CacheEntry,
    GenerationResult,
    GenerationStats,
    KVCacheStore,
    _reuse,
    _stop_criteria,
    _Streamer,
    conclude,
    failure,
)

MAX_ROWS = 8
"""Rows decoding together at most; more wait for a place."""

HEADROOM_TOKENS = 512
"""The memory check before a join counts this many more tokens per row (or the rows'
remaining ``max_new_tokens``, if fewer) on top of the batch's cache after the join."""

RESERVE_BYTES = 256 * memory.MiB
"""Memory left free for everything else when deciding whether a join fits."""


def plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


# -- who runs the model -------------------------------------------------------------------


class ModelGate:
    """Who runs the model: the batch (its rows share it) or one caller alone (a reply
    that is not batched, a comparison, a replay, scoring, swapping the weights).

    Re-entrant for a thread that holds it alone: a comparison holds it and generates
    inside. A caller waiting to run alone goes before rows that arrive after it, so it
    waits only for the replies already streaming."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._local = threading.local()
        self._state = threading.Lock()
        self._waiting: list[str] = []  # what waits to run alone, in order of arrival
        self.holder = ""  # what runs now, as a noun phrase ("2 streaming replies")

    def held_here(self) -> bool:
        return getattr(self._local, "depth", 0) > 0

    def waiting_alone(self) -> str | None:
        """What waits to run alone (the first), or ``None``."""
        with self._state:
            return self._waiting[0] if self._waiting else None

    def acquire(
        self,
        doing: str,
        stop_event: threading.Event | None = None,
        on_wait: Callable[[str], None] | None = None,
        why: str = "",
    ) -> bool:
        """Hold the model alone; ``False`` if ``stop_event`` is set while waiting. While
        it waits, ``on_wait`` is told what it waits for (and ``why``, its own reason)."""
        if self.held_here():
            self._local.depth += 1
            return True
        with self._state:
            self._waiting.append(doing)
        said = None
        try:
            while not self._lock.acquire(timeout=0.05):
                if stop_event is not None and stop_event.is_set():
                    return False
                holder = self.holder or "the model"
                if on_wait is not None and holder != said:
                    said = holder
                    on_wait(f"{holder} to finish{': ' + why if why else ''}")
        finally:
            with self._state:
                self._waiting.remove(doing)
        self._local.depth = 1
        self.holder = doing
        return True

    def try_acquire(self, doing: str) -> bool:
        """Hold the model for the batch, without waiting."""
        if not self._lock.acquire(blocking=False):
            return False
        self._local.depth = getattr(self._local, "depth", 0) + 1
        self.holder = doing
        return True

    def release(self) -> None:
        self._local.depth -= 1
        if self._local.depth == 0:
            self.holder = ""
            self._lock.release()

    @contextlib.contextmanager
    def alone(
        self,
        doing: str,
        stop_event: threading.Event | None = None,
        on_wait: Callable[[str], None] | None = None,
        why: str = "",
    ) -> Iterator[bool]:
        """``with gate.alone("a comparison", stop) as held:`` (``held`` is ``False`` if
        stopped while waiting; then nothing is held)."""
        held = self.acquire(doing, stop_event, on_wait, why)
        try:
            yield held
        finally:
            if held:
                self.release()


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
        return f"{str(mode).replace('_', ' ')} runs alone"
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
    full-attention ``DynamicLayer``s and its forward must take masks and positions."""
    cached = _MODEL_REASONS.get(model)
    if cached is not None:
        return cached
    transformers = libs.transformers()
    from transformers.cache_utils import DynamicLayer

    reason = ""
    params = inspect.signature(model.forward).parameters
    if getattr(model.config, "is_encoder_decoder", False):
        reason = "an encoder-decoder model runs alone"
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


class Batch:
    """The rows decoding together and their left-padded cache."""

    def __init__(self, model: Any) -> None:
        self.model = model
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
                index = self.rows.index(row)
                pad = self.pads[index]
                source = [(lay.keys[index : index + 1, :, pad:], lay.values[index : index + 1, :, pad:])
                          for lay in self.cache.layers]  # fmt: skip
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
        torch = libs.torch()
        if not self.rows:
            self.rows, self.cache, self.pads = [row], row.cache, [0]
            row.cache = None
            return
        length, theirs = self.length, row.cache.get_seq_length()
        grow, short = max(0, theirs - length), max(0, length - theirs)
        pad = torch.nn.functional.pad
        for mine, other in zip(self.cache.layers, row.cache.layers, strict=True):
            if getattr(mine, "keys", None) is None or getattr(other, "keys", None) is None:
                continue
            mine.keys = torch.cat(
                [pad(mine.keys, (0, 0, grow, 0)), pad(other.keys, (0, 0, short, 0))]
            )
            mine.values = torch.cat(
                [pad(mine.values, (0, 0, grow, 0)), pad(other.values, (0, 0, short, 0))]
            )
        self.pads = [p + grow for p in self.pads] + [short]
        self.rows.append(row)
        row.cache = None

    def leave(self, rows: list[Row]) -> None:
        """Take these rows out; each gets its own cache back (its padding cut off)."""
        torch, transformers = libs.torch(), libs.transformers()
        keep = [i for i, r in enumerate(self.rows) if r not in rows]
        if not keep:
            (only,) = self.rows if len(self.rows) == 1 else (None,)
            if only is not None and self.pads[0] == 0:
                only.cache = self.cache
            else:
                for index, row in enumerate(self.rows):
                    row.cache = self._cut(index, transformers)
            self.rows, self.cache, self.pads = [], None, []
            return
        for index, row in enumerate(self.rows):
            if index not in keep:
                row.cache = self._cut(index, transformers)
        trim = min(self.pads[i] for i in keep)
        picked = torch.tensor(keep, device=self.model.device)
        for layer in self.cache.layers:
            if getattr(layer, "keys", None) is None:
                continue
            layer.keys = layer.keys.index_select(0, picked)[:, :, trim:]
            layer.values = layer.values.index_select(0, picked)[:, :, trim:]
        self.rows = [self.rows[i] for i in keep]
        self.pads = [self.pads[i] - trim for i in keep]

    def _cut(self, index: int, transformers: Any) -> Any:
        cache = transformers.DynamicCache(config=self.model.config)
        pad = self.pads[index]
        for mine, layer in zip(self.cache.layers, cache.layers, strict=True):
            if getattr(mine, "keys", None) is not None:
                layer.update(
                    mine.keys[index : index + 1, :, pad:], mine.values[index : index + 1, :, pad:]
                )
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


# -- the scheduler ----------------------------------------------------------------------------


class Scheduler:
    """The thread that runs the batch: it admits rows (reads their prompts), steps the
    batch, lets rows go, and stops when no row is left (a new row starts it again)."""

    def __init__(self, gate: ModelGate, current: Callable[[], Any]) -> None:
        self.gate = gate
        self.current = current  # the engine's LoadedModel now
        self._cond = threading.Condition()
        self._pending: list[Row] = []
        self._thread: threading.Thread | None = None
        self.batch: Batch | None = None
        self.steps = 0  # batched steps run (for tests and the bench)
        self.widest = 0  # the most rows seen in one step

    # -- what callers see -----------------------------------------------------------------
    def streaming(self) -> int:
        batch = self.batch
        return len(batch.rows) if batch is not None else 0

    def cache_bytes(self, key: str | None = None) -> int:
        batch = self.batch
        return batch.cache_bytes(key) if batch is not None else 0

    def submit(self, row: Row) -> None:
        with self._cond:
            self._pending.append(row)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="batch", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def alive(self) -> bool:
        with self._cond:
            return self._thread is not None and self._thread.is_alive()

    # -- the thread -----------------------------------------------------------------------
    def _run(self) -> None:
        torch = libs.torch()
        holding = False
        try:
            with torch.inference_mode():
                while True:
                    with self._cond:
                        pending = self._settle()
                        if not pending and not (self.batch and self.batch.rows):
                            self._thread = None
                            self.batch = None  # nor keep the weights alive after a swap
                            return
                    if not holding:
                        holding = self.gate.try_acquire(self._describe(len(pending)))
                        if not holding:
                            for row in pending:
                                row.wait(f"{self.gate.holder or 'the model'} to finish")
                            with self._cond:
                                self._cond.wait(0.05)
                            continue
                    admitted = self._admit(pending)
                    if self.batch is not None and self.batch.rows:
                        self._step()
                    elif not admitted:  # rows wait for a caller that runs alone: let it
                        self.gate.release()
                        holding = False
                        with self._cond:
                            self._cond.wait(0.05)
        except BaseException as exc:  # never leave a caller waiting
            self._fail_all(failure(exc))
            raise
        finally:
            if holding:
                self.gate.release()
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _describe(self, extra: int = 0) -> str:
        count = (len(self.batch.rows) if self.batch else 0) + extra
        return plural(max(1, count), "streaming reply", "streaming replies")

    def _settle(self) -> list[Row]:
        """Pending rows that still want the model (under the condition's lock): the
        stopped and abandoned ones end; those prepared for a model that has since been
        swapped or reloaded are sent back to be prepared again."""
        loaded = self.current()
        for row in list(self._pending):
            if row.event.is_set() or row.abandoned:
                self._pending.remove(row)
                self._finish(row)
            elif loaded is not row.loaded or loaded.model is not row.model:
                self._pending.remove(row)
                row.finished = True
                row.outbox.put(("retry", None))
        return list(self._pending)

    def _admit(self, pending: list[Row]) -> int:
        admitted = 0
        for row in pending:
            model = row.model
            if self.batch is None or self.batch.model is not model:
                if self.batch is not None and self.batch.rows:
                    row.wait("the replies on the previous weights to finish")
                    break
                self.batch = Batch(model)
            alone = self.gate.waiting_alone()
            blocker = None
            if alone:
                blocker = f"{alone} to run first"
            elif len(self.batch.rows) >= MAX_ROWS:
                blocker = (
                    f"a place: {plural(len(self.batch.rows), 'reply is', 'replies are')} streaming"
                )
            else:
                blocker = self.batch.fits(row)
            if blocker:
                row.wait(blocker)
                break
            with self._cond:
                if row not in self._pending:
                    continue
                self._pending.remove(row)
            admit(self.batch, row, pending)
            admitted += 1
            self.gate.holder = self._describe()
        return admitted

    def _step(self) -> None:
        batch = self.batch
        assert batch is not None
        self.widest = max(self.widest, len(batch.rows))
        self.steps += 1
        advance(batch)
        self.gate.holder = self._describe()

    def _finish(self, row: Row) -> None:
        finish(row)

    def _fail_all(self, error: str) -> None:
        with self._cond:
            rows = list(self._pending) + (list(self.batch.rows) if self.batch else [])
            self._pending.clear()
            if self.batch is not None:
                self.batch.rows, self.batch.cache, self.batch.pads = [], None, []
        for row in rows:
            if not row.finished:
                row.error = row.error or error
                finish(row)


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


# -- the caller's side ------------------------------------------------------------------------


RETRY = object()
"""What :meth:`Caller.result` returns when the model changed before the row started:
prepare the turn again."""


class Caller:
    """The waiting caller's half of a row, in the caller's thread: it tells ``on_wait``
    and ``on_start``, decodes the tokens (``on_text``) and makes the result."""

    def __init__(
        self,
        row: Row,
        tokenizer: Any,
        stop_strings: tuple[str, ...],
        on_text: Callable[[str], None] | None,
        on_start: Callable[[], None] | None,
        on_wait: Callable[[str], None] | None,
    ) -> None:
        self.row = row
        self.streamer = _Streamer(tokenizer, on_text, stop_strings)
        self.streamer.prompt_seen = True
        self.on_start = on_start
        self.on_wait = on_wait
        self.retry = False
        self.done = False

    def handle(self, kind: str, payload: Any) -> None:
        row = self.row
        if kind == "done":
            self.done = True
            return
        if kind == "retry":
            self.retry = self.done = True
            return
        if row.abandoned:
            return
        try:
            if kind == "wait" and self.on_wait is not None:
                self.on_wait(payload)
            elif kind == "start" and self.on_start is not None:
                self.on_start()
            elif kind == "tokens":
                torch = libs.torch()
                self.streamer.put(torch.tensor(payload))
        except Exception as exc:  # the caller's own callback failed: the row ends
            row.abandoned = failure(exc)

    def drain(self) -> None:
        while not self.done:
            try:
                kind, payload = self.row.outbox.get_nowait()
            except queue.Empty:
                return
            self.handle(kind, payload)

    def wait(self, scheduler: Scheduler) -> None:
        """Until the row is done (from the scheduler's thread)."""
        while not self.done:
            try:
                kind, payload = self.row.outbox.get(timeout=0.5)
            except queue.Empty:
                if not scheduler.alive() and not self.row.finished:
                    self.row.error = "Generation failed: the batch's thread ended."
                    return
                continue
            self.handle(kind, payload)

    def result(self) -> GenerationResult | object:
        if self.retry:
            return RETRY
        row = self.row
        stats = GenerationStats(prompt_tokens=len(row.prompt_ids))
        if not row.abandoned and row.error is None:
            try:
                self.streamer.end()
            except Exception as exc:
                row.abandoned = failure(exc)
        if row.error is not None or row.abandoned:
            stats.stop_reason = StopReason.ERROR
            stats.error = row.error or row.abandoned
        self.streamer.first_token_at = row.first_token_at
        finished = row.finished_at or time.perf_counter()
        conclude(stats, self.streamer, row.config, row.event, row.submitted_at, finished)
        stats.reused_tokens = row.reused
        stats.target_forwards = row.forwards
        return GenerationResult(
            text=self.streamer.text, stats=stats, token_ids=list(self.streamer.token_ids)
        )


def run_alone(row: Row, caller: Caller) -> GenerationResult | object:
    """The row made in this thread, which holds the model (a comparison or a replay
    generating inside its hold, or batching turned off): the same steps, one row."""
    batch = Batch(row.model)
    admit(batch, row, [], caller.drain)
    caller.drain()
    while batch.rows:
        if caller.row.abandoned and not row.finished:
            batch.leave([row])
            finish(row)
            break
        advance(batch)
        caller.drain()
    caller.drain()
    return caller.result()
