"""chat-tui's engine: model specs, loading, memory, chat formatting and generation.

No Textual here, and no torch/transformers at import time: the heavy libraries are
imported inside the functions that need them, so the UI paints first.
"""

from .errors import EngineError
from .local import LocalEngine
from .protocol import ChatRequest
from .settings import GenerationSettings
from .spec import DEFAULT_MODEL, ModelSpec

__all__ = [
    "DEFAULT_MODEL",
    "ChatRequest",
    "EngineError",
    "GenerationSettings",
    "LocalEngine",
    "ModelSpec",
]
