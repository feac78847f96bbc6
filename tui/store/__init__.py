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
from .model import Conversation, DuplicateIdError, Message
from .store import Problem, SearchHit, SessionInfo, SessionStore, file_stem_for_name

__all__ = [
    "Conversation",
    "ConversationGoneError",
    "CorruptSessionError",
    "DiskError",
    "DuplicateIdError",
    "MergeReport",
    "Message",
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
