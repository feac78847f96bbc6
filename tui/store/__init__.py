"""chat-tui's conversation store: TOML files on disk, no Textual. The names below are
imported when first used (importing ``tui.store.atomic`` does not load the whole store).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import (
        ConversationGoneError,
        CorruptSessionError,
        DiskError,
        NotFoundError,
        StaleWriteError,
        StoreError,
        UnsupportedSchemaError,
    )
    from .merge import MergeReport
    from .model import ChatMessage, Conversation, DuplicateIdError
    from .store import Problem, SearchHit, SessionInfo, SessionStore, file_stem_for_name

_WHERE = {
    "ConversationGoneError": ".errors",
    "CorruptSessionError": ".errors",
    "DiskError": ".errors",
    "NotFoundError": ".errors",
    "StaleWriteError": ".errors",
    "StoreError": ".errors",
    "UnsupportedSchemaError": ".errors",
    "MergeReport": ".merge",
    "ChatMessage": ".model",
    "Conversation": ".model",
    "DuplicateIdError": ".model",
    "Problem": ".store",
    "SearchHit": ".store",
    "SessionInfo": ".store",
    "SessionStore": ".store",
    "file_stem_for_name": ".store",
}

__all__ = [
    "ChatMessage",
    "Conversation",
    "ConversationGoneError",
    "CorruptSessionError",
    "DiskError",
    "DuplicateIdError",
    "MergeReport",
    "NotFoundError",
    "Problem",
    "SearchHit",
    "SessionInfo",
    "SessionStore",
    "StaleWriteError",
    "StoreError",
    "UnsupportedSchemaError",
    "file_stem_for_name",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
