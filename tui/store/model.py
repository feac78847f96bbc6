"""Conversations in memory: messages in a tree, so edits and regenerations branch.

Every message has an ``id`` and a ``parent``. The conversation's ``head`` is the last
message of the active branch; the active transcript is the path from the root to it.
Replacing a reply (regenerate) or a user turn (edit and resend) adds a sibling and
moves the head, so the old branch stays in the file and reachable.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ROLES = ("system", "user", "assistant")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def new_id(nbytes: int = 4) -> str:
    return secrets.token_hex(nbytes)


@dataclass
class Message:
    role: str
    content: str
    id: str = field(default_factory=new_id)
    parent: str | None = None
    time: datetime = field(default_factory=now)
    # replies only
    model: str | None = None
    prompt_tokens: int | None = None
    new_tokens: int | None = None
    time_to_first_token: float | None = None
    tokens_per_second: float | None = None
    stop_reason: str | None = None  # eos, length, stopped, error, interrupted
    error: str | None = None

    @property
    def interrupted(self) -> bool:
        return self.stop_reason in ("stopped", "interrupted", "error")

    def as_chat(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass
class Conversation:
    id: str
    title: str = "New conversation"
    name: str | None = None
    created: datetime = field(default_factory=now)
    updated: datetime = field(default_factory=now)
    model: dict[str, Any] = field(default_factory=dict)
    system_prompt: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    head: str | None = None
    revision: int = 0  # bumped on every save; a stale writer is refused
    # (inode, size, mtime_ns) of the file when last read or written by this process: if the
    # file still matches, nobody else wrote it and the save can skip re-reading it.
    disk_stamp: tuple[int, int, int] | None = field(default=None, compare=False, repr=False)

    # -- the active branch -----------------------------------------------------------
    def _by_id(self) -> dict[str, Message]:
        return {m.id: m for m in self.messages}

    def path(self, head: str | None = None) -> list[Message]:
        """Messages from the root to ``head`` (default: the conversation's head)."""
        index = self._by_id()
        out: list[Message] = []
        current = index.get(head or self.head or "")
        seen: set[str] = set()
        while current is not None and current.id not in seen:
            seen.add(current.id)
            out.append(current)
            current = index.get(current.parent or "")
        out.reverse()
        return out

    @property
    def transcript(self) -> list[Message]:
        return self.path()

    def chat_messages(self) -> list[dict[str, str]]:
        """The active branch as role/content dicts, ready for a chat template."""
        return [m.as_chat() for m in self.transcript if m.role != "system"]

    def append(self, role: str, content: str, **meta: Any) -> Message:
        message = Message(role=role, content=content, parent=self.head, **meta)
        self.messages.append(message)
        self.head = message.id
        self.touch()
        if role == "user" and self.title == "New conversation":
            self.title = make_title(content)
        return message

    def branch_from(self, message_id: str, role: str, content: str, **meta: Any) -> Message:
        """A sibling of ``message_id`` (same parent) that becomes the new head; the old
        message and everything after it stay reachable."""
        old = self._by_id()[message_id]
        message = Message(role=role, content=content, parent=old.parent, **meta)
        self.messages.append(message)
        self.head = message.id
        self.touch()
        return message

    def siblings(self, message_id: str) -> list[Message]:
        index = self._by_id()
        parent = index[message_id].parent
        return [m for m in self.messages if m.parent == parent and m.role == index[message_id].role]

    def leaf_of(self, message_id: str) -> str:
        """The newest leaf below ``message_id`` (to switch to an older branch)."""
        children: dict[str | None, list[Message]] = {}
        for m in self.messages:
            children.setdefault(m.parent, []).append(m)
        current = message_id
        while children.get(current):
            current = children[current][-1].id
        return current

    def switch_to(self, message_id: str) -> None:
        self.head = self.leaf_of(message_id)
        self.touch()

    def clear(self) -> None:
        """Start over: the head goes back to the root, old messages stay in the file."""
        self.head = None
        self.touch()

    def touch(self) -> None:
        self.updated = now()

    @property
    def message_count(self) -> int:
        return len(self.transcript)

    @property
    def model_name(self) -> str:
        return str(self.model.get("source", "")) if self.model else ""


def make_title(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
