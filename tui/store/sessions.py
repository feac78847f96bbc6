"""The sessions service: one object per open conversation, shared by every view.

A tab, the session browser, a rename, a delete and an export all ask this service for a
conversation, so there is never a second copy of one that is open: renaming an open
conversation renames the object its tab holds, and that tab's next save carries the new
title instead of tripping over a file it did not write.

Views learn of changes made elsewhere through :meth:`Sessions.subscribe`. No Textual
here; callbacks run in the caller's thread (the UI thread, in the app).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import NotFoundError, StoreError
from .model import Conversation
from .store import SessionStore


@dataclass(frozen=True)
class Renamed:
    conversation: Conversation


@dataclass(frozen=True)
class Deleted:
    conversation_id: str


@dataclass(frozen=True)
class Saved:
    conversation: Conversation
    merged_ids: tuple[str, ...] = ()  # messages another writer added, now merged in


Event = Renamed | Deleted | Saved


@dataclass
class Sessions:
    store: SessionStore
    _open: dict[str, Conversation] = field(default_factory=dict)
    _listeners: list[Callable[[Event], None]] = field(default_factory=list)

    # -- events ---------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``listener`` with every :data:`Event`; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    # -- open conversations ------------------------------------------------------------------
    def new(self, **fields: Any) -> Conversation:
        conv = self.store.new(**fields)
        self._open[conv.id] = conv
        return conv

    def open(self, conv_id: str) -> Conversation:
        """The open object for ``conv_id``, read from disk on first use."""
        conv = self._open.get(conv_id)
        if conv is None:
            conv = self.store.load(conv_id)
            self._open[conv.id] = conv
        return conv

    def get(self, conv_id: str) -> Conversation | None:
        """The open object, or ``None`` if no view holds it."""
        return self._open.get(conv_id)

    def is_open(self, conv_id: str) -> bool:
        return conv_id in self._open

    def close(self, conv_id: str) -> None:
        self._open.pop(conv_id, None)

    def on_disk(self, conv_id: str) -> bool:
        return self.store.path_for(conv_id).exists()

    # -- changes ------------------------------------------------------------------------------
    def save(self, conv: Conversation) -> bool:
        """Save ``conv``; ``False`` when there is nothing worth a file yet (no messages).

        What another chat-tui saved meanwhile is merged in (``Saved.merged_ids``).
        Raises :class:`StoreError` with a sentence when it cannot be saved:
        :class:`ConversationGoneError` or :class:`CorruptSessionError` when no merge is
        possible (see :meth:`save_as_new`), :class:`DiskError` when the disk refuses."""
        if not conv.messages:
            return False
        if conv.unchanged() and self.store.path_for(conv.id).exists():
            return True  # on disk as it is: quitting or closing rewrites nothing
        old_id = conv.id
        self.store.save(conv)
        self._rekey(old_id, conv)
        merged = tuple(conv.last_merge.merged) if conv.last_merge else ()
        self._emit(Saved(conv, merged))
        return True

    def save_as_new(self, conv: Conversation) -> None:
        """Keep a conversation that can no longer be saved where it was (deleted
        elsewhere, or its file became unreadable) as a new conversation."""
        old_id = conv.id
        self.store.save_as_new(conv)
        self._rekey(old_id, conv)
        self._emit(Saved(conv))

    def _rekey(self, old_id: str, conv: Conversation) -> None:
        if conv.id != old_id and self._open.get(old_id) is conv:
            del self._open[old_id]
            self._open[conv.id] = conv

    def rename(self, conv_id: str, title: str) -> Conversation:
        """Retitle a conversation, open or not; the open object is the one changed."""
        title = title.strip()
        if not title:
            raise StoreError("A title cannot be empty.")
        conv = self._open.get(conv_id)
        if conv is None:
            conv = self.store.load(conv_id)
        conv.title = title
        conv.touch()
        if conv.messages or self.on_disk(conv_id):
            self.store.save(conv)
        self._emit(Renamed(conv))
        return conv

    def delete(self, conv_id: str) -> Path | None:
        """Move a conversation to the trash; views holding it are told to let it go."""
        target = None
        if self.on_disk(conv_id):
            target = self.store.delete(conv_id)
        elif conv_id not in self._open:
            raise NotFoundError(f"No conversation {conv_id!r}.")
        self._open.pop(conv_id, None)
        self._emit(Deleted(conv_id))
        return target

    def trashed(self):
        """The deleted conversations that can be restored, and unreadable trash files."""
        return self.store.trashed()

    def restore(self, trash_name: str) -> str:
        """Bring a deleted conversation back; its id (see :meth:`SessionStore.restore`)."""
        return self.store.restore(trash_name)

    def load_for_view(self, conv_id: str) -> Conversation:
        """What a read-only view (export, browser preview) should show: the open object
        if there is one (it may hold messages not yet saved), else the file."""
        return self._open.get(conv_id) or self.store.load(conv_id)

    def title_of(self, conv_id: str) -> str:
        conv = self._open.get(conv_id)
        if conv is not None:
            return conv.title
        try:
            return self.store.load(conv_id).title
        except StoreError:
            return conv_id
