"""One interface for every backend: the local engine, an OpenAI-compatible server, and
the tests' scripted stand-in all subclass :class:`ChatEngine`.

Callers ask :attr:`ChatEngine.capabilities` what a backend can do instead of probing
its attributes (``getattr(engine, "remote", False)``).
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from .errors import EngineError
from .progress import Progress

if TYPE_CHECKING:
    from .generation import GenerationResult, TurnInfo
    from .settings import GenerationSettings
    from .spec import ModelSpec


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the UI offers only what is true here."""

    kind: str  # "local" (this machine) or "endpoint" (a server)
    weights_in_memory: bool  # the model's weights live in this process
    continue_reply: bool  # can continue a partial assistant message
    kv_cache: bool  # keeps a per-conversation cache between turns
    token_count: bool  # can count a prompt's tokens before generating
    speculative: bool  # draft-model or prompt-lookup speculative decoding


class ModelInfo(Protocol):
    """What callers read about the loaded model (a local ``LoadedModel``, a
    ``RemoteModel``, or a test's stand-in)."""

    spec: ModelSpec
    dtype: str
    footprint_bytes: int
    load_seconds: float

    @property
    def name(self) -> str: ...

    @property
    def device(self) -> str: ...

    @property
    def context_limit(self) -> int | None: ...


OnText = Callable[[str], None]
OnStart = Callable[["TurnInfo"], None]
OnWait = Callable[[str], None]
"""Told, while a reply waits for the model, what it waits for: a phrase to follow
"waiting for" ("2 streaming replies to finish", "memory: ...")."""


@dataclass(frozen=True)
class ChatRequest:
    """One turn to generate: what the model is shown and how.

    Built where the turn is decided (on the UI thread, by the command line) and handed
    whole to the thread that generates, so that thread reads nothing else. The
    messages are kept as a tuple: a conversation that changes meanwhile does not
    change the request."""

    messages: Sequence[dict[str, str]]  # role/content dicts, oldest first
    system_prompt: str | None = None
    conversation_id: str | None = None  # whose KV cache to reuse; None: no cache
    settings: GenerationSettings | None = None  # None: the engine's own
    continue_final: bool = False  # continue the last (assistant) message instead
    speculative: bool = True  # False: no draft model or prompt lookup for this turn
    keep_cache: bool = True  # False: read the conversation's cache but leave it as it was

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(self.messages))


class ChatEngine(abc.ABC):
    """A backend that loads a model and streams replies.

    ``chat`` answers a :class:`ChatRequest` in the caller's thread (a worker thread in
    the app, the main thread in one-shot mode), hands text to ``on_text`` as it
    arrives, stops soon after ``stop_event`` is set, and returns a
    ``GenerationResult``. Several threads may chat at once; a backend that makes one
    wait tells it what for through ``on_wait``. It raises
    :class:`EngineError` only before generation starts; a failure part way comes back
    as ``stats.stop_reason == "error"`` with the partial text.
    """

    capabilities: ClassVar[Capabilities]
    loaded: ModelInfo | None
    settings: GenerationSettings

    @abc.abstractmethod
    def load(self, spec: ModelSpec, progress: Progress | None = None) -> ModelInfo:
        """Load ``spec``; on failure raise :class:`EngineError` and keep the previous model."""

    @abc.abstractmethod
    def chat(
        self,
        request: ChatRequest,
        *,
        stop_event: threading.Event | None = None,
        on_text: OnText | None = None,
        on_start: OnStart | None = None,
        on_wait: OnWait | None = None,
    ) -> GenerationResult:
        """Generate the next assistant message (or continue the last one)."""

    def load_assistant(self, spec: ModelSpec | None, progress: Progress | None = None) -> None:
        """A draft model for speculative decoding, where the backend supports it."""
        if spec is not None:
            raise EngineError("This backend does not do speculative decoding with a draft model.")

    def count_tokens(
        self, messages: Sequence[dict[str, str]], system_prompt: str | None = None
    ) -> int | None:
        """The prompt's length in tokens, or ``None`` where the backend cannot tell."""
        return None

    def forget(self, conversation_id: str) -> None:  # noqa: B027 (a no-op by default)
        """Drop what is kept for a conversation (its KV cache)."""

    def cache_bytes(self, conversation_id: str | None = None) -> int:
        """Bytes held for a conversation (or all of them)."""
        return 0

    @property
    def endpoint_url(self) -> str | None:
        """The server's URL (credentials removed) for an endpoint backend, else None."""
        return None

    def refuse_continue(self) -> None:
        if not self.capabilities.continue_reply:
            raise EngineError(
                "This backend cannot continue a reply; regenerate it instead (ctrl+r)."
            )
