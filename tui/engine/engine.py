"""The engine: one loaded model, swapped atomically, and chat generation on it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from . import chat_format, generation, loader, memory
from .errors import EngineError
from .progress import Progress
from .protocol import Capabilities, ChatEngine, OnStart, OnText
from .settings import EffectiveSettings, GenerationSettings
from .spec import ModelSpec


class Engine(ChatEngine):
    """Holds the current model. Thread-safe: loads are serialized, and generations take
    turns on the model (a second caller waits, and can still be stopped while waiting).

    A failed :meth:`load` leaves the previous model loaded and usable.
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
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()

    # -- loading -------------------------------------------------------------------
    def load(self, spec: ModelSpec, progress: Progress | None = None) -> loader.LoadedModel:
        with self._load_lock:
            new = loader.load(spec, progress)  # raises; self.loaded untouched on failure
            with self._generate_lock:
                old, self.loaded = self.loaded, new
                self.kv_cache.clear()
            if old is not None:
                old.unload()
                del old
            memory.release()
            return new

    def load_assistant(self, spec: ModelSpec | None, progress: Progress | None = None) -> None:
        """Speculative decoding: a small draft model sharing the main model's tokenizer."""
        if spec is None:
            self.assistant = None
        else:
            self.assistant = loader.load(spec, progress)
        memory.release()

    @property
    def is_loaded(self) -> bool:
        return self.loaded is not None

    def require_model(self) -> loader.LoadedModel:
        if self.loaded is None:
            raise EngineError("No model is loaded yet.")
        return self.loaded

    # -- chatting ------------------------------------------------------------------
    def build_prompt(
        self,
        messages: Sequence[dict[str, str]],
        system_prompt: str | None = None,
        continue_final: bool = False,
    ) -> chat_format.Prompt:
        loaded = self.require_model()
        return chat_format.build_prompt(
            loaded.tokenizer, messages, system_prompt, loaded.chat_template, continue_final
        )

    def count_tokens(
        self, messages: Sequence[dict[str, str]], system_prompt: str | None = None
    ) -> int:
        return len(self.build_prompt(messages, system_prompt).ids)

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
        messages: Sequence[dict[str, str]],
        *,
        system_prompt: str | None = None,
        conversation_id: str | None = None,
        settings: GenerationSettings | None = None,
        stop_event: threading.Event | None = None,
        on_text: OnText | None = None,
        on_start: OnStart | None = None,
        continue_final: bool = False,
    ) -> generation.GenerationResult:
        """Generate the assistant's next reply to ``messages`` (role/content dicts).

        Raises :class:`EngineError` before generation starts (no model, bad template, a
        last message longer than the context); a failure mid-stream is returned as
        ``stats.stop_reason == 'error'`` with the partial text, so nothing already shown
        is lost. ``on_start`` receives a :class:`~.generation.TurnInfo` once this caller
        has the model (another conversation may have been generating) and the prompt is
        built, before the first token: it says how many of the oldest messages were left
        out to fit the context (see :meth:`prepare_turn`). ``continue_final`` continues
        the last (assistant) message instead of answering.
        """
        event = stop_event or threading.Event()
        while not self._generate_lock.acquire(timeout=0.05):
            if event.is_set():
                stats = generation.GenerationStats(stop_reason=generation.StopReason.STOPPED)
                return generation.GenerationResult("", stats)
        try:
            loaded = self.require_model()
            active = settings or self.settings
            prompt, info = self.prepare_turn(messages, system_prompt, active, continue_final)
            if on_start is not None:
                on_start(info)
            kwargs = dict(info.settings.kwargs) if info.settings else active.generation_kwargs()
            if info.max_new_tokens is not None:
                kwargs["max_new_tokens"] = info.max_new_tokens
                if kwargs.get("min_new_tokens", 0) > info.max_new_tokens:
                    kwargs["min_new_tokens"] = info.max_new_tokens
            if self.prompt_lookup and "prompt_lookup_num_tokens" not in kwargs:
                kwargs["prompt_lookup_num_tokens"] = self.prompt_lookup
            result = generation.generate(
                loaded,
                prompt.ids,
                kwargs,
                stop_event=event,
                on_text=on_text,
                cache_store=self.kv_cache if self.reuse_cache else None,
                cache_key=conversation_id,
                stop_strings=prompt.stop_strings,
                seed=active.values.get("seed"),
                assistant_model=self.assistant.model if self.assistant else None,
            )
            result.stats.dropped_messages = info.dropped_messages
            result.notices.extend(info.notices)
            return result
        finally:
            self._generate_lock.release()

    def forget(self, conversation_id: str) -> None:
        """Drop a conversation's KV cache (closed tab, cleared history)."""
        self.kv_cache.drop(conversation_id)

    def cache_bytes(self, conversation_id: str | None = None) -> int:
        return self.kv_cache.bytes(conversation_id)
