"""chat-tui's conversation store: TOML files on disk, no Textual."""

from .errors import (
    CorruptSessionError,
    NotFoundError,
    StaleWriteError,
    StoreError,
    UnsupportedSchemaError,
)
from .model import Conversation, Message
from .store import Problem, SearchHit, SessionInfo, SessionStore

__all__ = [
    "Conversation",
    "CorruptSessionError",
    "Message",
    "NotFoundError",
    "Problem",
    "SearchHit",
    "SessionInfo",
    "SessionStore",
    "StaleWriteError",
    "StoreError",
    "UnsupportedSchemaError",
]
