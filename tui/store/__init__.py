"""chat-tui's conversation store: TOML files on disk, no Textual."""

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
