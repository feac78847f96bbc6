"""chat-tui's engine: model specs, loading, memory, chat formatting and generation.

No Textual here, and no torch/transformers at import time: the heavy libraries are
imported inside the functions that need them, so the UI paints first. The names below
are imported when first used (importing ``tui.engine.spec`` does not load the whole
engine).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import EngineError
    from .local import LocalEngine
    from .protocol import ChatRequest
    from .settings import GenerationSettings
    from .spec import DEFAULT_MODEL, ModelSpec

_WHERE = {
    "DEFAULT_MODEL": ".spec",
    "ChatRequest": ".protocol",
    "EngineError": ".errors",
    "GenerationSettings": ".settings",
    "LocalEngine": ".local",
    "ModelSpec": ".spec",
}

__all__ = [
    "DEFAULT_MODEL",
    "ChatRequest",
    "EngineError",
    "GenerationSettings",
    "LocalEngine",
    "ModelSpec",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
