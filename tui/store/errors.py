"""Store errors: each names the file and the reason in one sentence."""

from __future__ import annotations


class StoreError(Exception):
    pass


class CorruptSessionError(StoreError):
    """A conversation file that does not parse or has the wrong shape. It is left as is."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}; the file was left unchanged.")


class UnsupportedSchemaError(CorruptSessionError):
    """A file written by a newer chat-tui."""


class StaleWriteError(StoreError):
    """Another process saved the conversation since we read it."""


class NotFoundError(StoreError):
    pass
