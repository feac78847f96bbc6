"""Messages from worker threads to the UI: generation (tokens, start, end), model loads
and memory samples. A thread reaches the UI only by posting one of these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from .engine.generation import GenerationResult, TurnInfo
    from .engine.memory import MemorySnapshot
    from .engine.protocol import ModelInfo
    from .engine.spec import ModelSpec


@dataclass
class TokenChunk(Message):
    """Text decoded from the model, for the pane that asked: a piece of its answer, or
    of its reasoning (``reasoning``) before the answer."""

    text: str
    reasoning: bool = False


@dataclass
class GenerationStarted(Message):
    """The model is ours now (another tab may have been generating) and the prompt is
    built: its length, the context limit, and what did not fit."""

    info: TurnInfo


@dataclass
class GenerationWaiting(Message):
    """The reply waits for the model, and says for what ("a comparison to finish")."""

    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GenerationWaiting)


@dataclass
class GenerationFinished(Message):
    result: GenerationResult
    continued: bool = False
    alternatives: list[GenerationResult] = field(default_factory=list)
    """Other replies to the same turn made with it (``/regenerate 3``), kept as versions."""


@dataclass
class LoadProgress(Message):
    fraction: float
    stage: str

    def can_replace(self, message: Message) -> bool:  # only the newest progress matters
        return isinstance(message, LoadProgress)


@dataclass
class ModelLoaded(Message):
    model: ModelInfo


@dataclass
class ModelLoadFailed(Message):
    error: str
    spec: ModelSpec | None


@dataclass
class MemorySample(Message):
    snapshot: MemorySnapshot
    weights: int
    cache: int  # the active tab's KV cache
    all_caches: int = 0  # every tab's, the replies streaming in the batch included

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, MemorySample)
