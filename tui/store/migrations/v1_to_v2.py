"""Schema 1 to 2.

Schema 1 was a linear ``[[messages]]`` list (role, content, time) without branches.
Schema 2 gives every message an ``id`` and a ``parent``, names the active branch's
last message in ``head``, and counts saves in ``revision``: a version 1 file becomes
one branch, its messages numbered ``m1``, ``m2``, … in order.
"""

from __future__ import annotations

from typing import Any

from ..errors import CorruptSessionError


def upgrade(doc: dict[str, Any], source: str) -> dict[str, Any]:
    doc = dict(doc)
    raw = doc.get("messages", [])
    if not isinstance(raw, list):
        raise CorruptSessionError(source, "'messages' must be a list of tables")
    messages = [dict(m) if isinstance(m, dict) else m for m in raw]
    parent: Any = None
    for number, m in enumerate(messages, 1):
        if isinstance(m, dict):
            m.setdefault("id", f"m{number}")
            if parent is not None:
                m.setdefault("parent", parent)
            parent = m["id"]
    doc["messages"] = messages
    doc.setdefault("head", parent if parent is not None else "")
    doc.setdefault("revision", 0)
    doc["schema_version"] = 2
    return doc
