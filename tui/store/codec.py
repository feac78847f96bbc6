"""Conversation <-> TOML document, with schema checks and migrations.

Schema history:

* 1: a linear ``[[messages]]`` list (role, content, time) and no branches.
* 2: every message has ``id`` and ``parent``; ``head`` names the active branch's last
  message; a ``revision`` counter guards against stale writes.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from typing import Any

import tomli_w

from .errors import CorruptSessionError, StoreError, UnsupportedSchemaError
from .model import ROLES, Conversation, Message

SCHEMA_VERSION = 2

_MESSAGE_OPTIONAL = {
    "model": str,
    "prompt_tokens": int,
    "new_tokens": int,
    "time_to_first_token": float,
    "tokens_per_second": float,
    "stop_reason": str,
    "error": str,
}


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        out[key] = _drop_none(value) if isinstance(value, dict) else value
    return out


def to_document(conv: Conversation) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "id": conv.id,
        "name": conv.name,
        "title": conv.title,
        "created": conv.created,
        "updated": conv.updated,
        "revision": conv.revision,
        "head": conv.head or "",
        "system_prompt": conv.system_prompt,
        "model": _drop_none(dict(conv.model)),
        "settings": _drop_none(dict(conv.settings)),
        "messages": [],
    }
    for m in conv.messages:
        entry: dict[str, Any] = {"id": m.id, "role": m.role, "content": m.content, "time": m.time}
        if m.parent:
            entry["parent"] = m.parent
        for key in _MESSAGE_OPTIONAL:
            value = getattr(m, key)
            if value is not None:
                entry[key] = value
        doc["messages"].append(entry)
    return _drop_none(doc)


def dumps(conv: Conversation) -> str:
    """TOML text for ``conv``, checked to read back exactly.

    Text with newlines is written as multi-line strings for readability, except where
    that would not round-trip (tomli-w's multi-line form turns CRLF into LF)."""
    doc = to_document(conv)
    has_cr = any("\r" in m["content"] for m in doc["messages"]) or "\r" in conv.system_prompt
    for multiline in (False,) if has_cr else (True, False):
        text = tomli_w.dumps(doc, multiline_strings=multiline)
        if tomllib.loads(text) == doc:
            return text
    raise StoreError(f"Conversation {conv.id} cannot be written as TOML that reads back exactly.")


def loads(text: str, source: str = "<string>") -> Conversation:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CorruptSessionError(source, f"not valid TOML ({exc})") from None
    return from_document(doc, source)


def _require(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], source: str) -> Any:
    if key not in doc:
        raise CorruptSessionError(source, f"missing '{key}'")
    value = doc[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CorruptSessionError(source, f"'{key}' has the wrong type ({type(value).__name__})")
    return value


def _time(value: Any, source: str, where: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise CorruptSessionError(source, f"{where} is not a date-time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise CorruptSessionError(source, f"{where} is not a date-time")


def migrate(doc: dict[str, Any], source: str) -> dict[str, Any]:
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CorruptSessionError(source, "missing or invalid 'schema_version'")
    if version > SCHEMA_VERSION:
        raise UnsupportedSchemaError(
            source,
            f"schema_version {version} is newer than this chat-tui understands "
            f"({SCHEMA_VERSION}); upgrade chat-tui to open it",
        )
    if version < 1:
        raise CorruptSessionError(source, f"unknown schema_version {version}")
    if version == 1:
        doc = dict(doc)
        messages = [dict(m) if isinstance(m, dict) else m for m in doc.get("messages", [])]
        parent = None
        for number, m in enumerate(messages, 1):
            if isinstance(m, dict):
                m.setdefault("id", f"m{number}")
                if parent:
                    m.setdefault("parent", parent)
                parent = m["id"]
        doc["messages"] = messages
        doc.setdefault("head", parent or "")
        doc.setdefault("revision", 0)
        doc["schema_version"] = 2
    return doc


def from_document(doc: dict[str, Any], source: str = "<document>") -> Conversation:
    doc = migrate(doc, source)
    conv_id = _require(doc, "id", str, source)
    raw_messages = _require(doc, "messages", list, source) if "messages" in doc else []
    messages: list[Message] = []
    ids: set[str] = set()
    for number, raw in enumerate(raw_messages, 1):
        where = f"message {number}"
        if not isinstance(raw, dict):
            raise CorruptSessionError(source, f"{where} is not a table")
        role = raw.get("role")
        if role not in ROLES:
            raise CorruptSessionError(source, f"{where} has an unknown role {role!r}")
        content = raw.get("content")
        if not isinstance(content, str):
            raise CorruptSessionError(source, f"{where} has no text content")
        mid = raw.get("id")
        if not isinstance(mid, str) or not mid or mid in ids:
            raise CorruptSessionError(source, f"{where} has a missing or duplicate id")
        ids.add(mid)
        parent = raw.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise CorruptSessionError(source, f"{where} has an invalid parent")
        meta: dict[str, Any] = {}
        for key, kind in _MESSAGE_OPTIONAL.items():
            if key in raw:
                value = raw[key]
                if kind is float and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise CorruptSessionError(source, f"{where} has an invalid {key}")
                meta[key] = value
        time = _time(raw.get("time", datetime.now(UTC)), source, f"{where} time")
        messages.append(
            Message(role=role, content=content, id=mid, parent=parent, time=time, **meta)
        )
    for m in messages:
        if m.parent is not None and m.parent not in ids:
            raise CorruptSessionError(source, f"message {m.id} points to a missing parent")
    head = doc.get("head") or None
    if head is not None and head not in ids:
        raise CorruptSessionError(source, f"head {head!r} is not a message")
    model = doc.get("model", {})
    settings = doc.get("settings", {})
    if not isinstance(model, dict) or not isinstance(settings, dict):
        raise CorruptSessionError(source, "'model' and 'settings' must be tables")
    for key in ("title", "system_prompt"):
        if key in doc and not isinstance(doc[key], str):
            raise CorruptSessionError(source, f"'{key}' must be text")
    name = doc.get("name")
    revision = doc.get("revision", 0)
    if not isinstance(revision, int) or isinstance(revision, bool):
        raise CorruptSessionError(source, "'revision' must be a whole number")
    return Conversation(
        id=conv_id,
        title=doc.get("title", "New conversation"),
        name=name if isinstance(name, str) else None,
        created=_time(doc.get("created", datetime.now(UTC)), source, "created"),
        updated=_time(doc.get("updated", datetime.now(UTC)), source, "updated"),
        model=model,
        system_prompt=doc.get("system_prompt", ""),
        settings=settings,
        messages=messages,
        head=head,
        revision=revision,
    )
