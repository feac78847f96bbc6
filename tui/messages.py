"""App-level messages. Worker threads reach the UI only by posting these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class TokenChunk(Message):
    """Text decoded from the model, for the pane that asked."""

    text: str


@dataclass
class GenerationStarted(Message):
    """The model is ours now (another tab may have been generating)."""


@dataclass
class GenerationFinished(Message):
    result: Any  # engine.generation.GenerationResult
    continued: bool = False


@dataclass
class LoadProgress(Message):
    fraction: float
    stage: str

    def can_replace(self, message: Message) -> bool:  # only the newest progress matters
        return isinstance(message, LoadProgress)


@dataclass
class ModelLoaded(Message):
    loaded: Any  # engine.loader.LoadedModel or engine.remote.RemoteModel
    engine: Any = None  # the engine that loaded it (local or remote)


@dataclass
class ModelLoadFailed(Message):
    error: str
    spec: Any


@dataclass
class MemorySample(Message):
    snapshot: Any  # engine.memory.MemorySnapshot
    weights: int
    cache: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, MemorySample)
