"""The local engine: one loaded model, swapped atomically, and chat generation on it."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import (
    batch,
    chat_format,
    gate,
    generation,
    libs,
    loader,
    memory,
    provenance,
    reasoning,
    scheduler,
)
from .errors import EngineError
from .progress import Progress
from .protocol import Capabilities, ChatEngine, ChatRequest, OnStart, OnText, OnWait
from .settings import EffectiveSettings, GenerationSettings, is_template_kwarg
from .spec import ModelSpec


class LocalEngine(ChatEngine):
    """Holds the current model. Thread-safe: loads are serialized, and several
    conversations generate at once: their replies decode together, one batched forward
    pass per token (:mod:`.batch`). A reply that cannot be batched (speculative
    decoding, beam search, a model with sliding-window attention) runs alone: it waits
    for the replies streaming to end, and replies sent meanwhile wait for it; a waiting
    caller can still be stopped, and is told what it waits for (``on_wait``).

    A failed :meth:`load` leaves the previous model loaded and usable.

    The model's gate is re-entrant, so a caller holding the model for a series of calls
    (:meth:`exclusive`: a comparison, a replay) can call :meth:`chat` and :meth:`score`
    inside; those replies are made in its thread, one at a time.
    """

    capabilities = Capabilities(
        kind="local",
        weights_in_memory=True,
        continue_reply=True,
        kv_cache=True,
        token_count=True,
        speculative=True,
    )

    def __init__(
        self,
        settings: GenerationSettings | None = None,
        prompt_lookup: int | None = None,
    ) -> None:
        self.loaded: loader.LoadedModel | None = None
        self.assistant: loader.LoadedModel | None = None
        self.settings = settings or GenerationSettings()
        self.prompt_lookup = prompt_lookup
        self.kv_cache = generation.KVCacheStore()
        self.reuse_cache = True
        self.batching = True  # False: every reply runs alone, one after the other
        self._load_lock = threading.RLock()
        self.gate = gate.ModelGate()
        self.scheduler = scheduler.Scheduler(self.gate, lambda: self.loaded)

    # -- loading -------------------------------------------------------------------
    def load(
        self, spec: ModelSpec, progress: Progress | None = None, *, allow_download: bool = True
    ) -> loader.LoadedModel:
        """Load ``spec`` in place of the current model (``allow_download=False``: a Hub
        id a file named is refused unless it is already on this machine)."""
        with self._load_lock:
            # raises; self.loaded untouched on failure
            new = loader.load(spec, progress, allow_download=allow_download)
            with self.gate.alone("a model load"):
                old, self.loaded = self.loaded, new
                self.kv_cache.clear()
            if old is not None:
                old.unload()
                del old
            memory.release()
            return new

    def load_assistant(
        self,
        spec: ModelSpec | None,
        progress: Progress | None = None,
        *,
        allow_download: bool = True,
    ) -> None:
        """Speculative decoding: a small draft model sharing the main model's tokenizer."""
        if spec is None:
            self.assistant = None
        else:
            self.assistant = loader.load(spec, progress, allow_download=allow_download)
        memory.release()

    @property
    def is_loaded(self) -> bool:
        return self.loaded is not None

    def require_model(self) -> loader.LoadedModel:
        if self.loaded is None:
            raise EngineError("No model is loaded yet.")
        if self.loaded.model is None:
            raise EngineError(f"{self.loaded.name} is unloaded for a moment while another runs.")
        return self.loaded

    # -- chatting ------------------------------------------------------------------
    def build_prompt(
        self,
        messages: Sequence[dict[str, str]],
        system_prompt: str | None = None,
        continue_final: bool = False,
        settings: GenerationSettings | None = None,
    ) -> chat_format.Prompt:
        loaded = self.require_model()
        return chat_format.build_prompt(
            loaded.tokenizer,
            messages,
            system_prompt,
            loaded.chat_template,
            continue_final,
            (settings or self.settings).template_kwargs(),
        )

    def count_tokens(
        self, messages: Sequence[dict[str, str]], system_prompt: str | None = None
    ) -> int:
        return len(self.build_prompt(messages, system_prompt).ids)

    def response_template(self) -> dict | None:
        """How the loaded model's replies split into reasoning and answer (see
        :mod:`.reasoning`), or None."""
        loaded = self.require_model()
        model_type = getattr(getattr(loaded.model, "config", None), "model_type", None)
        return reasoning.response_template(loaded.tokenizer, model_type)

    def effective_settings(self, settings: GenerationSettings | None = None) -> EffectiveSettings:
        """The settings a turn on the loaded model uses: its own generation_config,
        overlaid with ``settings`` (default: the engine's), with where each came from."""
        loaded = self.require_model()
        return (settings or self.settings).effective(loaded.model.generation_config)

    def prepare_turn(
        self,
        messages: Sequence[dict[str, str]],
        system_prompt: str | None = None,
        settings: GenerationSettings | None = None,
        continue_final: bool = False,
    ) -> tuple[chat_format.Prompt, generation.TurnInfo]:
        """The prompt a turn would send and what to tell the user about it, by the same
        rule :meth:`chat` applies: when the conversation does not fit the model's context
        minus the room kept for the reply, the oldest turns are left out (never the system
        prompt); a last message that alone fills the context raises
        :class:`~.errors.ContextLengthError`."""
        loaded = self.require_model()
        effective = self.effective_settings(settings)
        wanted = effective.values.get("max_new_tokens")
        fitted = chat_format.fit_prompt(
            loaded.tokenizer,
            messages,
            system_prompt,
            loaded.chat_template,
            continue_final,
            context_limit=loaded.context_limit,
            max_new_tokens=wanted,
            max_new_tokens_is_users=effective.sources.get("max_new_tokens") == "user",
            template_kwargs=(settings or self.settings).template_kwargs(),
        )
        info = generation.TurnInfo(
            prompt_tokens=len(fitted.prompt.ids),
            context_limit=loaded.context_limit,
            dropped_messages=fitted.dropped,
            notices=list(fitted.notices),
            max_new_tokens=fitted.max_new_tokens,
            settings=effective,
            model_name=loaded.name,
        )
        return fitted.prompt, info

    def chat(
        self,
        request: ChatRequest,
        *,
        stop_event: threading.Event | None = None,
        on_text: OnText | None = None,
        on_start: OnStart | None = None,
        on_wait: OnWait | None = None,
    ) -> generation.GenerationResult:
        """Generate the assistant's next reply to ``request.messages`` (role/content dicts).

        Raises :class:`EngineError` before generation starts (no model, bad template, a
        last message longer than the context); a failure mid-stream is returned as
        ``stats.stop_reason == 'error'`` with the partial text, so nothing already shown
        is lost. ``on_start`` receives a :class:`~.generation.TurnInfo` once the reply
        starts (it may first wait: ``on_wait`` is told for what, as a phrase such as
        "a comparison to finish") and the prompt is built, before the first token: it
        says how many of the oldest messages were left out to fit the context (see
        :meth:`prepare_turn`). ``request.continue_final`` continues the last (assistant)
        message instead of answering.

        A sampled turn without a seed in the settings draws one and uses it; it is in
        ``stats.provenance`` with everything else needed to make the reply again.
        ``request.speculative=False`` turns off the draft model and prompt lookup for
        this turn.
        """
        event = stop_event or threading.Event()
        while True:
            loaded = self._wait_for_weights(event, on_wait)
            if loaded is None:
                stats = generation.GenerationStats(stop_reason=generation.StopReason.STOPPED)
                return generation.GenerationResult("", stats)
            turn = self._turn(loaded, request, event)
            template = self.response_template()
            splitter = reasoning.ReplySplitter.create(template, turn.prompt.text, on_text)
            feed = splitter.feed if splitter is not None else on_text
            result = self._run(turn, request, event, feed, on_start, on_wait, splitter is not None)
            if result is not scheduler.RETRY:
                break
        assert isinstance(result, generation.GenerationResult)
        if splitter is not None and template is not None:
            self._split(result, splitter, template, turn.prompt.text)
        result.stats.dropped_messages = turn.info.dropped_messages
        result.notices.extend(turn.info.notices)
        kwargs = turn.kwargs
        used = dict(turn.effective.values)
        used.update(  # the chat-template switches shape the prompt: a replay needs them
            (k, v) for k, v in turn.active.values.items() if is_template_kwarg(k)
        )
        for name in ("max_new_tokens", "min_new_tokens", "prompt_lookup_num_tokens"):
            if kwargs.get(name) is not None:
                used[name] = kwargs[name]
        result.stats.provenance = provenance.build(
            loaded,
            used,
            seed=turn.seed,
            seed_drawn=turn.drawn,
            prompt_ids=turn.prompt.ids,
            dropped_messages=turn.info.dropped_messages,
            prompt_lookup=kwargs.get("prompt_lookup_num_tokens"),
            assistant=turn.assistant,
            continue_final=request.continue_final,
        )
        return result

    def _wait_for_weights(
        self, event: threading.Event, on_wait: OnWait | None
    ) -> loader.LoadedModel | None:
        """The loaded model once its weights are in memory (they are away while another
        model runs in a comparison); ``None`` if stopped first."""
        said = False
        while True:
            loaded = self.require_model() if self.loaded is None else self.loaded
            if loaded.model is not None:
                return loaded
            if on_wait is not None and not said:
                said = True
                on_wait(f"{self.gate.holder or 'the model'} to finish")
            if event.wait(0.05):
                return None

    def _turn(
        self, loaded: loader.LoadedModel, request: ChatRequest, event: threading.Event
    ) -> _Turn:
        """Everything a reply needs, decided before it runs: the prompt, the settings,
        the seed, and whether it can join the batch (else why it runs alone)."""
        active = request.settings or self.settings
        prompt, info = self.prepare_turn(
            request.messages, request.system_prompt, active, request.continue_final
        )
        kwargs = dict(info.settings.kwargs) if info.settings else active.generation_kwargs()
        if info.max_new_tokens is not None:
            kwargs["max_new_tokens"] = info.max_new_tokens
            if kwargs.get("min_new_tokens", 0) > info.max_new_tokens:
                kwargs["min_new_tokens"] = info.max_new_tokens
        if not request.speculative:
            kwargs.pop("prompt_lookup_num_tokens", None)
        elif self.prompt_lookup and "prompt_lookup_num_tokens" not in kwargs:
            kwargs["prompt_lookup_num_tokens"] = self.prompt_lookup
        assistant = self.assistant if request.speculative else None
        effective = info.settings or active.effective(None)
        if kwargs.get("prompt_lookup_num_tokens"):
            blocked = generation.lookup_blocked({**effective.values, **kwargs})
            if blocked:
                info.notices.append(blocked)
        seed = active.values.get("seed")
        drawn = False
        if seed is None and kwargs.get("do_sample", effective.values.get("do_sample")):
            # a sampled turn is reproducible only with its seed: draw one and keep it
            seed, drawn = secrets.randbelow(2**32), True
        begun = time.perf_counter()  # the time to the first token counts from here
        config = generation.build_config(
            loaded.model, loaded.tokenizer, kwargs, prompt.stop_strings
        )
        reuse = self.reuse_cache and request.conversation_id is not None
        row = batch.plan(
            loaded,
            prompt.ids,
            config,
            event=event,
            seed=seed,
            speculative=assistant is not None or bool(config.prompt_lookup_num_tokens),
            store=self.kv_cache if reuse else None,
            key=request.conversation_id,
            keep_cache=request.keep_cache,
        )
        if isinstance(row, batch.Row):
            row.submitted_at = begun
        return _Turn(
            loaded, prompt, info, active, kwargs, effective, seed, drawn, assistant, config, row
        )

    def _run(
        self,
        turn: _Turn,
        request: ChatRequest,
        event: threading.Event,
        on_text: OnText | None,
        on_start: OnStart | None,
        on_wait: OnWait | None,
        special: bool = False,
    ) -> generation.GenerationResult | object:
        """Make the reply: in the batch, or alone (holding the model). ``special``: the
        text keeps the special tokens the model writes (for a reasoning parser)."""
        row, loaded = turn.row, turn.loaded
        started = (lambda: on_start(turn.info)) if on_start is not None else None
        if isinstance(row, batch.Row):
            caller = scheduler.Caller(
                row,
                loaded.tokenizer,
                generation.config_stop_strings(row.config),
                on_text,
                started,
                on_wait,
                generation.special_decoder(loaded.tokenizer, row.config) if special else None,
            )
            if self.batching and not self.gate.held_here():
                self.scheduler.submit(row)
                caller.wait(self.scheduler)
                return caller.result()
        why = row if isinstance(row, str) else "batching is off"
        with self.gate.alone(self._doing(turn), event, on_wait, why) as held:
            if not held:
                stats = generation.GenerationStats(stop_reason=generation.StopReason.STOPPED)
                return generation.GenerationResult("", stats)
            if self.loaded is not loaded or loaded.model is not turn.config_model:
                return scheduler.RETRY
            if isinstance(row, batch.Row):
                torch = libs.torch()
                with torch.inference_mode():
                    return scheduler.run_alone(row, caller)
            if started is not None:
                started()
            return generation.generate(
                loaded,
                turn.prompt.ids,
                turn.kwargs,
                stop_event=event,
                on_text=on_text,
                cache_store=self.kv_cache if self.reuse_cache and request.keep_cache else None,
                cache_key=request.conversation_id,
                stop_strings=turn.prompt.stop_strings,
                seed=turn.seed,
                assistant_model=turn.assistant.model if turn.assistant else None,
                special_tokens=special,
            )

    @staticmethod
    def _doing(turn: _Turn) -> str:
        if turn.assistant is not None or turn.config.prompt_lookup_num_tokens:
            return "a speculative reply"
        if (turn.config.num_beams or 1) > 1:
            return "a beam-search reply"
        return "a reply"

    def streaming(self) -> int:
        """Replies decoding in the batch now."""
        return self.scheduler.streaming()

    def _split(
        self,
        result: generation.GenerationResult,
        splitter: reasoning.ReplySplitter,
        template: dict,
        prefix: str,
    ) -> None:
        """The reply as its two parts, and the tokens and time the reasoning took."""
        splitter.finish()
        result.text, result.reasoning = splitter.answer, splitter.reasoning
        if splitter.had_reasoning:
            loaded = self.require_model()
            result.stats.reasoning_seconds = splitter.thought_seconds
            result.stats.reasoning_tokens = reasoning.count_reasoning_tokens(
                loaded.tokenizer, template, prefix, result.token_ids
            )

    # -- holding the model for a series of calls ---------------------------------------
    @contextlib.contextmanager
    def exclusive(
        self,
        stop_event: threading.Event | None = None,
        doing: str = "a comparison",
        on_wait: OnWait | None = None,
    ) -> Iterator[bool]:
        """Hold this engine for a series of calls from this thread (``doing``: a
        comparison, a replay): other threads' loads and chats wait until the block ends,
        and the block waits for the replies streaming to end (``on_wait`` is told).
        Yields False (holding nothing) if ``stop_event`` is set while waiting."""
        event = stop_event or threading.Event()
        loading = False
        while not self._load_lock.acquire(timeout=0.05):
            if event.is_set():
                break
        else:
            loading = True
        try:
            if not loading:
                yield False
                return
            with self.gate.alone(doing, event, on_wait) as held:
                yield held
        finally:
            if loading:
                self._load_lock.release()

    @contextlib.contextmanager
    def set_aside(self, progress: Progress | None = None) -> Iterator[None]:
        """Free the model's weights for the duration of the block and load them again
        afterwards, for when another model must run and both do not fit in memory.

        Everything else stays as it was: the same ``loaded`` object (its tokenizer,
        spec and notices), the draft model, the settings and every conversation's KV
        cache, which is valid again once the same weights are back. Other threads'
        chats wait meanwhile. If the weights cannot be loaded again, the engine is left
        without a model, its caches are dropped, and :class:`EngineError` says so."""
        with self.exclusive() as held:
            assert held
            loaded = self.require_model()
            spec = loaded.spec
            _ = loaded.context_limit  # remembered while the weights are away
            loaded.model = None
            memory.release()
            try:
                yield
            finally:
                try:
                    fresh = loader.load(spec, progress)
                except EngineError as exc:
                    self.loaded = None
                    self.kv_cache.clear()
                    memory.release()
                    raise EngineError(
                        f"{spec.display_name} could not be loaded again: {exc}"
                    ) from exc
                loaded.model = fresh.model
                loaded.footprint_bytes = fresh.footprint_bytes
                del fresh

    def score(self, prompt_ids: Sequence[int], continuation_ids: Sequence[int]) -> list[float]:
        """The model's log-probability of each token of ``continuation_ids`` following
        ``prompt_ids`` (teacher-forced: one forward pass over both). Blocking; takes
        turns with :meth:`chat`."""
        if not continuation_ids:
            return []
        with self.gate.alone("scoring a reply"):
            loaded = self.require_model()
            return generation.score(loaded.model, list(prompt_ids), list(continuation_ids))

    def forget(self, conversation_id: str) -> None:
        """Drop a conversation's KV cache (closed tab, cleared history)."""
        self.kv_cache.drop(conversation_id)

    def cache_bytes(self, conversation_id: str | None = None) -> int:
        """Bytes of the KV caches kept between turns and of the batch's (the rows
        streaming now, padding included), for one conversation or all of them."""
        return self.kv_cache.bytes(conversation_id) + self.scheduler.cache_bytes(conversation_id)


@dataclass
class _Turn:
    """One reply, decided (see :meth:`LocalEngine._turn`)."""

    loaded: loader.LoadedModel
    prompt: chat_format.Prompt
    info: generation.TurnInfo
    active: GenerationSettings  # the settings asked for (the engine's when none)
    kwargs: dict[str, Any]
    effective: EffectiveSettings
    seed: int | None
    drawn: bool
    assistant: loader.LoadedModel | None
    config: Any
    row: batch.Row | str

    def __post_init__(self) -> None:
        self.config_model = self.loaded.model  # the weights it was prepared for
