"""Merging two writers' versions of one conversation.

A conversation is a tree of messages with unique ids, so two chat-tui processes that
both appended to it can be merged without losing a word: the union of the messages is
kept (where both appended under the same parent, the replies become siblings, i.e.
branches), and the scalar fields (title, name, system prompt, settings, model) take
the other side's value unless this side changed its own since it was read (a 3-way
merge against the values as last read or saved, kept in a :class:`Snapshot`).
"""

from __future__ import annotations

import copy
from typing import Any

from .model import (
    FIELDS,
    MESSAGE_FIELDS,
    Conversation,
    MergeReport,
    Snapshot,
    fingerprint,
    message_digest,
)


def merge(mine: Conversation, theirs: Conversation, base: Snapshot | None) -> MergeReport:
    """Fold ``theirs`` (the file as it is now) into ``mine`` (this side's copy, read at
    ``base``; None if this side never read the file). ``mine`` is changed in place; its
    head stays where it is. Returns what came from the other side."""
    report = MergeReport()
    base_fields = base.fields if base is not None else {}
    base_messages = base.messages if base is not None else {}

    for name in FIELDS:
        ours, other = getattr(mine, name), getattr(theirs, name)
        if ours == other:
            continue
        if name in base_fields and ours == base_fields[name]:
            setattr(mine, name, copy.deepcopy(other))
            report.fields.append(name)
        elif name in base_fields and other != base_fields[name]:
            report.kept.append(name)

    renamed: dict[str, str] = {}
    for message in theirs.messages:
        parent = renamed.get(message.parent or "", message.parent)
        existing = mine.get(message.id)
        if existing is None:
            added = copy.copy(message)
            added.parent = parent
            mine.messages.append(added)
            report.merged.append(added.id)
            continue
        if fingerprint(existing) == fingerprint(message):
            continue
        known = base_messages.get(message.id)
        if known is None:
            # both sides created a message with this id (never in practice with 16-hex
            # ids): keep both, theirs under a fresh id
            added = copy.copy(message)
            added.id = mine.unused_id()
            added.parent = parent
            renamed[message.id] = added.id
            mine.messages.append(added)
            report.merged.append(added.id)
        elif message_digest(existing) == known:
            # only the other side edited it (e.g. finished a reply): take their version
            for name in MESSAGE_FIELDS:
                setattr(existing, name, getattr(message, name))
            report.updated.append(message.id)
        # else both edited it: this side's version is kept

    mine.created = min(mine.created, theirs.created, key=_timestamp)
    mine.updated = max(mine.updated, theirs.updated, key=_timestamp)
    mine.revision = max(mine.revision, theirs.revision)
    return report


def _timestamp(value: Any) -> float:
    try:
        return value.timestamp()
    except (AttributeError, ValueError, OverflowError, OSError):
        return 0.0
