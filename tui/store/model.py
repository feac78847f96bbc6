"""Conversations in memory: messages in a tree, so edits and regenerations branch.

Every message has an ``id`` and a ``parent``. The conversation's ``head`` is the last
message of the active branch; the active transcript is the path from the root to it.
Replacing a reply (regenerate) or a user turn (edit and resend) adds a sibling and
moves the head, so the old branch stays in the file and reachable.

ChatMessage ids are 16 hex characters and checked for uniqueness on insert. Every walk of
the tree is bounded by the number of messages, so even a tree with a parent cycle
(which the codec refuses to load) cannot make a walk spin.
"""

from __future__ import annotations

import copy
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ROLES = ("system", "user", "assistant")
ID_BYTES = 8  # 16 hex characters: no birthday collisions in any real conversation


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def new_id(nbytes: int = ID_BYTES) -> str:
    return secrets.token_hex(nbytes)


def unique_ids(count: int, taken: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """``count`` fresh message ids, distinct from each other and from ``taken``."""
    raw = secrets.token_bytes(ID_BYTES * count).hex()
    step = ID_BYTES * 2
    out: list[str] = []
    seen = set(taken)
    for start in range(0, len(raw), step):
        candidate = raw[start : start + step]
        while candidate in seen:
            candidate = new_id()
        seen.add(candidate)
        out.append(candidate)
    return out


class DuplicateIdError(ValueError):
    """A message id that is already used in the conversation."""


@dataclass
class ChatMessage:
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
    # speculative decoding: accepted draft tokens / proposed, new tokens per forward pass
    acceptance_rate: float | None = None
    tokens_per_forward: float | None = None
    # a compared reply (/compare, --compare): its spec, and the memory it took
    label: str | None = None
    weights_bytes: int | None = None
    peak_bytes: int | None = None
    # how the reply was made (model, precision, device, settings, seed, versions): a
    # table of values, lists and one level of sub-tables; see tui.engine.provenance
    provenance: dict[str, Any] | None = None
    # a reasoning model's thinking before its answer (``content``), the tokens and the
    # seconds it took; later turns hand it to the chat template as ``reasoning_content``
    reasoning: str | None = None
    reasoning_tokens: int | None = None
    reasoning_seconds: float | None = None

    @property
    def interrupted(self) -> bool:
        return self.stop_reason in ("stopped", "interrupted", "error")

    def as_chat(self) -> dict[str, str]:
        """The message as a chat template (or a server) takes it: role and content, and a
        reply's reasoning as ``reasoning_content``, the field templates read."""
        if self.reasoning and self.role == "assistant":
            return {"role": self.role, "content": self.content, "reasoning_content": self.reasoning}
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
    messages: list[ChatMessage] = field(default_factory=list)
    head: str | None = None
    revision: int = 0  # bumped on every save
    # (inode, size, mtime_ns) of the file when last read or written by this process: if the
    # file still matches, nobody else wrote it and the save can skip re-reading it.
    disk_stamp: tuple[int, int, int] | None = field(default=None, compare=False, repr=False)
    # What another chat-tui contributed at the last save (None: nothing was merged).
    last_merge: MergeReport | None = field(default=None, compare=False, repr=False)
    # Texts the last save cut to fit the file's limit (see :mod:`.fit`): empty if none.
    last_cuts: list[Any] = field(default_factory=list, compare=False, repr=False)
    # The values as last read or saved, for the 3-way merge of a save (None: never on disk).
    _base: Snapshot | None = field(default=None, init=False, compare=False, repr=False)
    _saved_place: tuple[Any, Any] | None = field(
        default=None, init=False, compare=False, repr=False
    )
    _index: dict[str, ChatMessage] | None = field(
        default=None, init=False, compare=False, repr=False
    )
    _index_key: tuple[int, int, int] | None = field(
        default=None, init=False, compare=False, repr=False
    )

    # -- lookups ---------------------------------------------------------------------
    def _by_id(self) -> dict[str, ChatMessage]:
        """id -> message, kept up to date cheaply while messages are only appended."""
        messages = self.messages
        count = len(messages)
        index, key = self._index, self._index_key
        if (
            index is not None
            and key is not None
            and key[0] == id(messages)
            and key[1] <= count
            and (key[1] == 0 or id(messages[key[1] - 1]) == key[2])
        ):
            for m in messages[key[1] :]:
                index[m.id] = m
        else:
            index = self._index = {m.id: m for m in messages}
        self._index_key = (id(messages), count, id(messages[-1]) if messages else 0)
        return index

    def get(self, message_id: str | None) -> ChatMessage | None:
        """The message with this id, or None."""
        if not message_id:
            return None
        found = self._by_id().get(message_id)
        if found is not None and found.id != message_id:  # an id changed in place
            self._index = None
            found = self._by_id().get(message_id)
        return found

    def has_id(self, message_id: str) -> bool:
        return self.get(message_id) is not None

    def unused_id(self) -> str:
        while True:
            candidate = new_id()
            if not self.has_id(candidate):
                return candidate

    def add(self, message: ChatMessage) -> ChatMessage:
        """Insert a message built elsewhere (import, merge); its id must be new."""
        if not isinstance(message.id, str) or not message.id:
            raise DuplicateIdError("a message needs an id")
        if self.has_id(message.id):
            raise DuplicateIdError(f"message id {message.id!r} is already used")
        self.messages.append(message)
        return message

    def _insert(self, role: str, content: str, parent: str | None, meta: dict) -> ChatMessage:
        explicit = "id" in meta
        message = ChatMessage(role=role, content=content, parent=parent, **meta)
        if self.has_id(message.id):
            if explicit:
                raise DuplicateIdError(f"message id {message.id!r} is already used")
            message.id = self.unused_id()
        self.messages.append(message)
        self.head = message.id
        self.touch()
        return message

    # -- the active branch -----------------------------------------------------------
    def path(self, head: str | None = None) -> list[ChatMessage]:
        """Messages from the root to ``head`` (default: the conversation's head)."""
        index = self._by_id()
        out: list[ChatMessage] = []
        current = index.get(head or self.head or "")
        seen: set[str] = set()
        limit = len(self.messages)
        while current is not None and current.id not in seen and len(out) <= limit:
            seen.add(current.id)
            out.append(current)
            current = index.get(current.parent or "")
        out.reverse()
        return out

    @property
    def transcript(self) -> list[ChatMessage]:
        return self.path()

    def chat_messages(self) -> list[dict[str, str]]:
        """The active branch as role/content dicts, ready for a chat template."""
        return [m.as_chat() for m in self.transcript if m.role != "system"]

    def append(self, role: str, content: str, **meta: Any) -> ChatMessage:
        message = self._insert(role, content, self.head, meta)
        if role == "user" and self.title == "New conversation":
            self.title = make_title(content)
        return message

    def add_child(
        self, parent_id: str | None, role: str, content: str, *, make_head: bool = True, **meta: Any
    ) -> ChatMessage:
        """A new message under ``parent_id`` (None: a new root), beside any children it
        already has: e.g. the replies of a comparison, saved as sibling branches of the
        turn. It becomes the head unless ``make_head`` is False."""
        if parent_id is not None and self.get(parent_id) is None:
            raise KeyError(parent_id)
        head = self.head
        message = self._insert(role, content, parent_id, meta)
        if not make_head:
            self.head = head
        return message

    def branch_from(self, message_id: str, role: str, content: str, **meta: Any) -> ChatMessage:
        """A sibling of ``message_id`` (same parent) that becomes the new head; the old
        message and everything after it stay reachable."""
        old = self.get(message_id)
        if old is None:
            raise KeyError(message_id)
        return self._insert(role, content, old.parent, meta)

    def children(self) -> dict[str | None, list[ChatMessage]]:
        """Each parent id (None for roots) to its children, in insertion order."""
        out: dict[str | None, list[ChatMessage]] = {}
        for m in self.messages:
            out.setdefault(m.parent, []).append(m)
        return out

    def siblings(self, message_id: str) -> list[ChatMessage]:
        message = self.get(message_id)
        if message is None:
            raise KeyError(message_id)
        parent, role = message.parent, message.role
        return [m for m in self.messages if m.parent == parent and m.role == role]

    def sibling_position(self, message_id: str) -> tuple[int, int]:
        """(1-based index, count) of a message among its versions (siblings)."""
        siblings = self.siblings(message_id)
        ids = [m.id for m in siblings]
        return ids.index(message_id) + 1, len(ids)

    def leaves(self) -> list[ChatMessage]:
        """The last message of every branch, oldest branch first: each is one complete
        version of the conversation."""
        parents = {m.parent for m in self.messages if m.parent is not None}
        return [m for m in self.messages if m.id not in parents]

    def leaf_of(self, message_id: str) -> str:
        """The newest leaf below ``message_id`` (to switch to an older branch)."""
        children = self.children()
        current = message_id
        seen = {current}
        for _ in range(len(self.messages)):
            below = children.get(current)
            if not below or below[-1].id in seen:
                break
            current = below[-1].id
            seen.add(current)
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
        """The model that answers it: a local source, or a server's model and URL (a
        conversation with an endpoint also records the local spec, "default")."""
        if not isinstance(self.model, dict):
            return ""
        endpoint = self.model.get("endpoint")
        if isinstance(endpoint, str) and endpoint:
            served = self.model.get("endpoint_model")
            return f"{served if isinstance(served, str) and served else 'endpoint'} @ {endpoint}"
        return str(self.model.get("source", ""))

    # -- saving ----------------------------------------------------------------------
    def mark_saved(self) -> None:
        """Remember the current values as the ones on disk (after a load or a save)."""
        self._base = snapshot(self)
        self._saved_place = (self.head, self.updated)

    def unchanged(self) -> bool:
        """Nothing changed since it was read or saved (so saving would rewrite the
        same conversation): the same fields, messages, active branch and time."""
        return (
            self._base is not None
            and self._saved_place == (self.head, self.updated)
            and snapshot(self) == self._base
        )

    def forget_saved(self) -> None:
        """Treat the conversation as never saved (e.g. to save it under a new id)."""
        self._base = None
        self.disk_stamp = None

    @property
    def on_disk(self) -> bool:
        """True once the conversation was read from or written to a file."""
        return self._base is not None

    def copy(self) -> Conversation:
        return copy.deepcopy(self)


def find_cycle(messages: list[ChatMessage]) -> str | None:
    """The id of a message whose ancestors loop back on themselves, or None.

    Iterative and linear in the number of messages."""
    parents = {m.id: m.parent for m in messages}
    done: set[str] = set()
    for start in parents:
        if start in done:
            continue
        trail: list[str] = []
        on_trail: set[str] = set()
        current: str | None = start
        while current is not None and current in parents and current not in done:
            if current in on_trail:
                return current
            trail.append(current)
            on_trail.add(current)
            current = parents[current]
        done.update(trail)
    return None


def make_title(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


# -- the values as last read or saved (the base of a 3-way merge) ----------
FIELDS = ("title", "name", "system_prompt", "settings", "model")
MESSAGE_FIELDS = (
    "role",
    "content",
    "parent",
    "time",
    "model",
    "prompt_tokens",
    "new_tokens",
    "time_to_first_token",
    "tokens_per_second",
    "stop_reason",
    "error",
    "acceptance_rate",
    "tokens_per_forward",
    "label",
    "weights_bytes",
    "peak_bytes",
    "provenance",
    "reasoning",
    "reasoning_tokens",
    "reasoning_seconds",
)


def _hashable(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def fingerprint(m: ChatMessage) -> tuple[Any, ...]:
    return tuple(_hashable(getattr(m, name)) for name in MESSAGE_FIELDS)


def message_digest(m: ChatMessage) -> int:
    try:
        return hash(fingerprint(m))
    except TypeError:  # an unhashable value slipped in: compare by identity instead
        return id(m)


@dataclass
class Snapshot:
    """A conversation's values as last read or saved."""

    fields: dict[str, Any]
    messages: dict[str, int]  # message id -> digest of its fields


def snapshot(conv: Conversation) -> Snapshot:
    return Snapshot(
        fields={name: copy.deepcopy(getattr(conv, name)) for name in FIELDS},
        messages={m.id: message_digest(m) for m in conv.messages},
    )


@dataclass
class MergeReport:
    """What another writer contributed to a save."""

    merged: list[str] = field(default_factory=list)  # ids of messages added from the other side
    updated: list[str] = field(default_factory=list)  # ids of messages the other side edited
    fields: list[str] = field(default_factory=list)  # scalar fields taken from the other side
    kept: list[str] = field(default_factory=list)  # fields both changed: this side's value kept

    @property
    def count(self) -> int:
        return len(self.merged)

    def __bool__(self) -> bool:
        return bool(self.merged or self.updated or self.fields)

    def describe(self) -> str:
        """One sentence for a notification."""
        parts = []
        if self.merged:
            n = len(self.merged)
            parts.append(f"{n} message{'s' if n != 1 else ''} from another chat-tui were merged")
        if self.updated:
            n = len(self.updated)
            parts.append(f"{n} message{'s' if n != 1 else ''} edited elsewhere were updated")
        if self.fields:
            parts.append("its " + ", ".join(f.replace("_", " ") for f in self.fields) + " changed")
        if not parts:
            return "Nothing needed merging."
        text = "; ".join(parts)
        return text[0].upper() + text[1:] + "."
