"""The local engine: one loaded model, swapped atomically, and chat generation on it."""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator, Sequence

from . import chat_format, generation, loader, memory, provenance, reasoning
from .errors import EngineError
from .progress import Progress
from .protocol import Capabilities, ChatEngine, ChatRequest, OnStart, OnText
from .settings import EffectiveSettings, GenerationSettings, is_template_kwarg
from .spec import ModelSpec


class LocalEngine(ChatEngine):
    """Holds the current model. Thread-safe: loads are serialized, and generations take
    turns on the model (a second caller waits, and can still be stopped while waiting).

    A failed :meth:`load` leaves the previous model loaded and usable.

    Both locks are re-entrant, so a caller holding the model for a series of calls
    (:meth:`exclusive`: a comparison, a replay) can call :meth:`chat` and :meth:`score`
    inside.
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
        self._load_lock = threading.RLock()
        self._generate_lock = threading.RLock()

    # -- loading -------------------------------------------------------------------
    def load(
        self, spec: ModelSpec, progress: Progress | None = None, *, allow_download: bool = True
    ) -> loader.LoadedModel:
        """Load ``spec`` in place of the current model (``allow_download=False``: a Hub
        id a file named is refused unless it is already on this machine)."""
        with self._load_lock:
            # raises; self.loaded untouched on failure
            new = loader.load(spec, progress, allow_download=allow_download)
            with self._generate_lock:
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
    ) -> generation.GenerationResult:
        """Generate the assistant's next reply to ``request.messages`` (role/content dicts).

        Raises :class:`EngineError` before generation starts (no model, bad template, a
        last message longer than the context); a failure mid-stream is returned as
        ``stats.stop_reason == 'error'`` with the partial text, so nothing already shown
        is lost. ``on_start`` receives a :class:`~.generation.TurnInfo` once this caller
        has the model (another conversation may have been generating) and the prompt is
        built, before the first token: it says how many of the oldest messages were left
        out to fit the context (see :meth:`prepare_turn`). ``request.continue_final``
        continues the last (assistant) message instead of answering.

        A sampled turn without a seed in the settings draws one and uses it; it is in
        ``stats.provenance`` with everything else needed to make the reply again.
        ``request.speculative=False`` turns off the draft model and prompt lookup for
        this turn.
        """
        event = stop_event or threading.Event()
        while not self._generate_lock.acquire(timeout=0.05):
            if event.is_set():
                stats = generation.GenerationStats(stop_reason=generation.StopReason.STOPPED)
                return generation.GenerationResult("", stats)
        try:
            loaded = self.require_model()
            active = request.settings or self.settings
            continue_final, speculative = request.continue_final, request.speculative
            prompt, info = self.prepare_turn(
                request.messages, request.system_prompt, active, continue_final
            )
            kwargs = dict(info.settings.kwargs) if info.settings else active.generation_kwargs()
            if info.max_new_tokens is not None:
                kwargs["max_new_tokens"] = info.max_new_tokens
                if kwargs.get("min_new_tokens", 0) > info.max_new_tokens:
                    kwargs["min_new_tokens"] = info.max_new_tokens
            if not speculative:
                kwargs.pop("prompt_lookup_num_tokens", None)
            elif self.prompt_lookup and "prompt_lookup_num_tokens" not in kwargs:
                kwargs["prompt_lookup_num_tokens"] = self.prompt_lookup
            assistant = self.assistant if speculative else None
            effective = info.settings or active.effective(None)
            if kwargs.get("prompt_lookup_num_tokens"):
                blocked = generation.lookup_blocked({**effective.values, **kwargs})
                if blocked:
                    info.notices.append(blocked)
            if on_start is not None:
                on_start(info)
            seed = active.values.get("seed")
            drawn = False
            if seed is None and kwargs.get("do_sample", effective.values.get("do_sample")):
                # a sampled turn is reproducible only with its seed: draw one and keep it
                seed, drawn = secrets.randbelow(2**32), True
            template = self.response_template()
            splitter = reasoning.ReplySplitter.create(template, prompt.text, on_text)
            result = generation.generate(
                loaded,
                prompt.ids,
                kwargs,
                stop_event=event,
                on_text=splitter.feed if splitter is not None else on_text,
                cache_store=self.kv_cache if self.reuse_cache else None,
                cache_key=request.conversation_id,
                stop_strings=prompt.stop_strings,
                seed=seed,
                assistant_model=assistant.model if assistant else None,
                special_tokens=splitter is not None,
            )
            if splitter is not None and template is not None:
                self._split(result, splitter, template, prompt.text)
            result.stats.dropped_messages = info.dropped_messages
            result.notices.extend(info.notices)
            used = dict(effective.values)
            used.update(  # the chat-template switches shape the prompt: a replay needs them
                (k, v) for k, v in active.values.items() if is_template_kwarg(k)
            )
            for name in ("max_new_tokens", "min_new_tokens", "prompt_lookup_num_tokens"):
                if kwargs.get(name) is not None:
                    used[name] = kwargs[name]
            result.stats.provenance = provenance.build(
                loaded,
                used,
                seed=seed,
                seed_drawn=drawn,
                prompt_ids=prompt.ids,
                dropped_messages=info.dropped_messages,
                prompt_lookup=kwargs.get("prompt_lookup_num_tokens"),
                assistant=assistant,
                continue_final=continue_final,
            )
            return result
        finally:
            self._generate_lock.release()

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
    def exclusive(self, stop_event: threading.Event | None = None) -> Iterator[bool]:
        """Hold this engine for a series of calls from this thread (a comparison, a
        replay): other threads' loads and chats wait until the block ends. Yields False
        (holding nothing) if ``stop_event`` is set while waiting for another caller."""
        event = stop_event or threading.Event()
        held: list[threading.RLock] = []
        try:
            for lock in (self._load_lock, self._generate_lock):
                while not lock.acquire(timeout=0.05):
                    if event.is_set():
                        break
                else:
                    held.append(lock)
                    continue
                break
            yield len(held) == 2
        finally:
            for lock in reversed(held):
                lock.release()

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
        with self._generate_lock:
            loaded = self.require_model()
            return generation.score(loaded.model, list(prompt_ids), list(continuation_ids))

    def forget(self, conversation_id: str) -> None:
        """Drop a conversation's KV cache (closed tab, cleared history)."""
        self.kv_cache.drop(conversation_id)

    def cache_bytes(self, conversation_id: str | None = None) -> int:
        return self.kv_cache.bytes(conversation_id)
