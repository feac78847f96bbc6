"""Conversation <-> TOML: the store's one way in and out of a conversation file.

:func:`dumps` and :func:`loads` hold the pieces together: the document a conversation
becomes (here), text that TOML cannot hold (:mod:`.escaping`), the TOML text
(:mod:`.toml_writer`), and on the way back the schema checks (:mod:`.schema`) after
older files are migrated (:mod:`.migrations`).

Writing is lossless for any Python ``str``. TOML (UTF-8) cannot hold lone surrogates
such as ``"\\ud800"``, nor nested values in the flat tables, so a field that holds
them is written readably (surrogates shown as U+FFFD) and its exact value is kept
beside it in an ``escaped`` table, as JSON text (``escaped.content = ...`` in a
message, ``[escaped]`` at the top); reading prefers the escaped value. Control
characters, DEL, C1 controls and bidi overrides are written as ``\\uXXXX`` escapes,
so printing a conversation file never drives the terminal.

Reading is defensive: for any bytes, :func:`loads_bytes`, :func:`loads` and
:func:`from_document` raise only :class:`CorruptSessionError` with a reason (or
:class:`UnsupportedSchemaError` for a file from a newer chat-tui).
"""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from typing import Any

from .errors import CorruptSessionError, StoreError, short
from .escaping import escape_text, escape_tree, fix, has_surrogates
from .migrations import SCHEMA_VERSION
from .model import ChatMessage, Conversation
from .schema import (
    MAX_JSON_DEPTH,
    MAX_KEY_CHARS,
    MESSAGE_OPTIONAL,
    PROVENANCE,
    TABLES,
    drop_none,
    read_document,
)
from .toml_writer import dump_header, dump_messages, plain_scalar, plain_value

# -- writing -------------------------------------------------------------------------


def _table_text(table: dict[str, Any]) -> str:
    """A table's exact value as JSON text (its strings escaped by :func:`escape_text`)."""
    return json.dumps(escape_tree(table), ensure_ascii=False, default=str)


def _stand_in(value: Any) -> Any:
    """A TOML-writable, readable stand-in for a value kept exactly in ``escaped``."""
    if isinstance(value, str):
        return fix(value)
    if plain_scalar(value):
        return value
    if isinstance(value, float):
        return repr(value)  # nan, inf
    if isinstance(value, list) and all(isinstance(v, str) or plain_scalar(v) for v in value):
        return [_stand_in(v) for v in value]
    return json.dumps(escape_tree(value), ensure_ascii=False, default=str)


def _utc(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def to_document(conv: Conversation, *, escape: bool = True) -> dict[str, Any]:
    """The conversation as a document. With ``escape`` (the default, for TOML) text
    that TOML cannot hold is replaced by a stand-in and kept exactly under
    ``escaped``; without it (for JSON) every value is as in memory."""
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "id": conv.id,
        "revision": conv.revision,  # near the top: the store reads it without parsing
    }
    escaped: dict[str, str] = {}

    def text(key: str, value: str) -> None:
        if escape and has_surrogates(value):
            escaped[key] = escape_text(value)
            value = fix(value)
        doc[key] = value

    if conv.name is not None:
        text("name", conv.name)
    text("title", conv.title)
    doc["created"] = _utc(conv.created)
    doc["updated"] = _utc(conv.updated)
    doc["head"] = conv.head or ""
    text("system_prompt", conv.system_prompt)
    for key in TABLES:
        table = {k: v for k, v in dict(getattr(conv, key) or {}).items() if v is not None}
        if escape and not all(
            isinstance(k, str) and not has_surrogates(k) and plain_value(v)
            for k, v in table.items()
        ):
            escaped[key] = _table_text(table)
            table = {fix(str(k)): _stand_in(v) for k, v in table.items()}
        doc[key] = table
    if escaped:
        doc["escaped"] = escaped
    doc["messages"] = [_message_entry(m, escape) for m in conv.messages]
    return doc


def _message_entry(m: ChatMessage, escape: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": m.id}
    if m.parent:
        entry["parent"] = m.parent
    entry["role"] = m.role
    entry["time"] = _utc(m.time)
    escaped: dict[str, str] = {}
    for key in MESSAGE_OPTIONAL:
        value = getattr(m, key)
        if value is None:
            continue
        if escape and isinstance(value, str) and has_surrogates(value):
            escaped[key] = escape_text(value)
            value = fix(value)
        entry[key] = value
    content = m.content
    if escape and has_surrogates(content):
        escaped["content"] = escape_text(content)
        content = fix(content)
    entry["content"] = content
    if m.provenance:
        table = clean_provenance(m.provenance)
        if escape and not _plain_provenance(table):
            escaped[PROVENANCE] = _table_text(table)
            table = {fix(str(k)): _stand_in(v) for k, v in table.items()}
        entry[PROVENANCE] = table
    if escaped:
        entry["escaped"] = escaped
    return entry


def _usable_key(key: Any) -> bool:
    return isinstance(key, str) and 0 < len(key) <= MAX_KEY_CHARS


def clean_provenance(table: Any) -> dict[str, Any]:
    """What of a provenance table can be written and read back: keys that are text
    (1..MAX_KEY_CHARS characters in the first two levels), no null values, no empty
    sub-tables (TOML would not keep them)."""
    if not isinstance(table, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in table.items():
        if not _usable_key(key) or value is None:
            continue
        if isinstance(value, dict):
            value = {k: drop_none(v) for k, v in value.items() if _usable_key(k) and v is not None}
            value = {k: v for k, v in value.items() if _str_keys(v, 2)}
            if not value:
                continue
        elif not _str_keys(value, 1):
            continue
        out[key] = value
    return out


def _str_keys(value: Any, depth: int) -> bool:
    """Text keys only, and containers nested no deeper than a reader accepts."""
    if not isinstance(value, (dict, list, tuple)):
        return True
    if depth >= MAX_JSON_DEPTH:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _str_keys(v, depth + 1) for k, v in value.items())
    return all(_str_keys(v, depth + 1) for v in value)


def _plain_provenance(table: dict[str, Any], depth: int = 0) -> bool:
    """Writable as TOML key/value lines as it is: text keys without surrogates, plain
    values, and sub-tables one level deep."""
    for key, value in table.items():
        if not isinstance(key, str) or not key or has_surrogates(key) or len(key) > MAX_KEY_CHARS:
            return False
        if isinstance(value, dict):
            if depth > 0 or not _plain_provenance(value, depth + 1):
                return False
        elif not plain_value(value):
            return False
    return True


def dumps(conv: Conversation) -> str:
    """TOML text for ``conv`` that reads back exactly.

    The header (tomli-w) is checked by reading it back; the messages are written by a
    small emitter whose strings are JSON-escaped, which is exact by construction (and
    fast: a 100k-message conversation is written in about a second). Text with
    newlines is written as multi-line strings for readability."""
    try:
        doc = to_document(conv)
        messages = doc.pop("messages")
        text = dump_header(doc) + dump_messages(messages)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise StoreError(
            f"Conversation {conv.id} cannot be written as TOML that reads back exactly ({exc})."
        ) from None
    return text


# -- reading -------------------------------------------------------------------------


def loads(text: str, source: str = "<string>") -> Conversation:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CorruptSessionError(source, f"not valid TOML ({exc})") from None
    except RecursionError:
        raise CorruptSessionError(source, "nested too deeply") from None
    except Exception as exc:  # e.g. an integer with too many digits
        raise CorruptSessionError(source, f"not valid TOML ({short(str(exc), 120)})") from None
    return from_document(doc, source)


def loads_bytes(data: bytes, source: str = "<bytes>") -> Conversation:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptSessionError(source, "not UTF-8 text") from None
    return loads(text, source)


def from_document(
    doc: Any, source: str = "<document>", *, json_values: bool = False
) -> Conversation:
    """Validate a parsed document and build the conversation.

    ``json_values`` is for documents that came from JSON (an import): strings may hold
    any code point and ``model``/``settings`` values may be JSON values nested at most
    MAX_JSON_DEPTH deep (``null`` means unset); there is no ``escaped`` table."""
    try:
        return read_document(doc, source, json_values)
    except CorruptSessionError:
        raise
    except (RecursionError, TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise CorruptSessionError(
            source, f"has an unexpected shape ({type(exc).__name__})"
        ) from None
