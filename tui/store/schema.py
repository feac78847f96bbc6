"""What a conversation file may hold, and the checks that turn a parsed document into
a :class:`~.model.Conversation`.

Schema history (the steps between versions are in :mod:`.migrations`):

* 1: a linear ``[[messages]]`` list (role, content, time) and no branches.
* 2: every message has ``id`` and ``parent``; ``head`` names the active branch's last
  message; a ``revision`` counter is bumped on every save. Later additions, all
  optional (older files load as they are): a reply's ``provenance`` table (how it was
  made: model, precision, device, settings, seed, versions), its ``label`` (the spec
  of a compared reply), ``acceptance_rate`` and ``tokens_per_forward`` (speculative
  decoding), ``weights_bytes`` and ``peak_bytes``; a reasoning model's ``reasoning`` (its
  thinking before the answer in ``content``), ``reasoning_tokens`` and
  ``reasoning_seconds``.

Reading is defensive: for any TOML shape, :func:`read_document` raises only
:class:`CorruptSessionError` with a reason (or :class:`UnsupportedSchemaError` for a
newer file). Every field's type is checked; ``model`` and ``settings`` hold flat
values (strings, numbers, booleans, or lists of them); a message's ``provenance``
holds such values and sub-tables of them, one level deep; parent ids must exist and
form no cycle. A field kept exactly under ``escaped`` (see :mod:`.escaping`) wins over
its readable stand-in.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from .errors import CorruptSessionError, short
from .escaping import unescape_text, unescape_tree
from .migrations import migrate
from .model import ROLES, ChatMessage, Conversation, find_cycle, new_id, now

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 8  # nesting allowed in an escaped (JSON) model/settings value
MAX_KEY_CHARS = 200
INT64 = (-(2**63), 2**63)
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

MESSAGE_OPTIONAL: dict[str, type] = {
    "model": str,
    "prompt_tokens": int,
    "new_tokens": int,
    "time_to_first_token": float,
    "tokens_per_second": float,
    "stop_reason": str,
    "error": str,
    "acceptance_rate": float,
    "tokens_per_forward": float,
    "label": str,
    "weights_bytes": int,
    "peak_bytes": int,
    "reasoning": str,
    "reasoning_tokens": int,
    "reasoning_seconds": float,
}
PROVENANCE = "provenance"
TOP_TEXT = ("name", "title", "system_prompt")
TABLES = ("model", "settings")


def _fail(source: str, reason: str) -> CorruptSessionError:
    return CorruptSessionError(source, reason)


def _time(value: Any, source: str, where: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _fail(source, f"{where} is not a date-time") from None
    else:
        raise _fail(source, f"{where} is not a date-time")
    try:
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        raise _fail(source, f"{where} is out of range") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _flat(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, (str, int, float)) for v in value)
    return isinstance(value, (str, int, float))  # bool is an int


def _json_value(value: Any, depth: int = 0) -> bool:
    """A JSON value (as json.loads makes it) nested at most MAX_JSON_DEPTH deep."""
    if value is None or isinstance(value, (str, int, float)):
        return True
    if depth >= MAX_JSON_DEPTH:
        return False
    if isinstance(value, list):
        return all(_json_value(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_value(v, depth + 1) for k, v in value.items())
    return False


def _table(value: Any, key: str, source: str, json_values: bool) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(source, f"'{key}' must be a table")
    out: dict[str, Any] = {}
    for name, item in value.items():
        if not isinstance(name, str):
            raise _fail(source, f"'{key}' has a key that is not text")
        if item is None and json_values:
            continue  # JSON null: not set
        ok = _json_value(item) if json_values else _flat(item)
        if not ok:
            raise _fail(
                source, f"'{key}.{short(name, 40)[1:-1]}' must be a value or a list of values"
            )
        out[name] = item
    return out


def _escaped_table(value: Any, where: str, source: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _fail(source, f"{where} must be a table of text")
    return value


_MISSING = object()


def _field(table: dict[str, Any], escaped: dict[str, str], key: str) -> Any:
    """A field's value: its exact copy under ``escaped`` if there is one, else as
    written; :data:`_MISSING` if neither."""
    if key in escaped:
        return unescape_text(escaped[key])
    return table.get(key, _MISSING)


def _unescape_table(escaped: dict[str, str], key: str, source: str) -> dict[str, Any]:
    try:
        value = json.loads(escaped[key])
    except (ValueError, RecursionError):
        raise _fail(source, f"'escaped.{key}' is not readable") from None
    return unescape_tree(_table(value, key, source, True))


def read_document(doc: Any, source: str, json_values: bool = False) -> Conversation:
    """Validate a parsed document (migrated to :data:`.migrations.SCHEMA_VERSION` first) and build
    the conversation. ``json_values``: see :func:`.codec.from_document`."""
    if not isinstance(doc, dict):
        raise _fail(source, "is not a table")
    doc = migrate(doc, source)
    escaped = {} if json_values else _escaped_table(doc.get("escaped"), "'escaped'", source)

    conv_id = doc.get("id")
    if not isinstance(conv_id, str) or not conv_id:
        raise _fail(source, "missing or invalid 'id'")
    texts: dict[str, str | None] = {"name": None, "title": "New conversation", "system_prompt": ""}
    for key in TOP_TEXT:
        value = _field(doc, escaped, key)
        if value is _MISSING:
            continue
        if not isinstance(value, str):
            raise _fail(source, f"'{key}' must be text")
        texts[key] = value
    tables: dict[str, dict[str, Any]] = {}
    for key in TABLES:
        if key in escaped:
            tables[key] = _unescape_table(escaped, key, source)
        else:
            tables[key] = _table(doc.get(key, {}), key, source, json_values)
    revision = doc.get("revision", 0)
    if not _is_int(revision) or not 0 <= revision < INT64[1]:
        raise _fail(source, "'revision' must be a whole number")
    head = doc.get("head", "")
    if not isinstance(head, str):
        raise _fail(source, "'head' must be a message id")

    raw_messages = doc.get("messages", [])
    if not isinstance(raw_messages, list):
        raise _fail(source, "'messages' must be a list of tables")
    messages, renames = _messages(raw_messages, source, json_values)
    head = renames.get(head, head) if head else head

    ids = {m.id for m in messages}
    for m in messages:
        if m.parent is not None and m.parent not in ids:
            raise _fail(source, f"message {short(m.id)} points to a missing parent")
    if find_cycle(messages) is not None:
        raise _fail(source, "messages form a cycle")
    if head and head not in ids:
        raise _fail(source, f"head {short(head)} is not a message")
    created = _time(doc.get("created", now()), source, "created")
    updated = _time(doc.get("updated", now()), source, "updated")
    return Conversation(
        id=conv_id,
        title=texts["title"] or "",
        name=texts["name"],
        created=created,
        updated=updated,
        model=tables["model"],
        system_prompt=texts["system_prompt"] or "",
        settings=tables["settings"],
        messages=messages,
        head=head or None,
        revision=revision,
    )


def _messages(
    raw_messages: list[Any], source: str, json_values: bool
) -> tuple[list[ChatMessage], dict[str, str]]:
    """The messages, and how repeated ids were renamed (original id -> last new id)."""
    out: list[ChatMessage] = []
    renames: dict[str, str] = {}
    all_ids = {
        raw.get("id")
        for raw in raw_messages
        if isinstance(raw, dict) and isinstance(raw.get("id"), str)
    }
    ids: set[str] = set()
    current: dict[str, str] = {}  # original id -> the id it refers to at this point
    for number, raw in enumerate(raw_messages, 1):
        where = f"message {number}"
        if not isinstance(raw, dict):
            raise _fail(source, f"{where} is not a table")
        escaped = (
            {} if json_values else _escaped_table(raw.get("escaped"), f"{where} 'escaped'", source)
        )
        role = raw.get("role")
        if role not in ROLES:
            raise _fail(source, f"{where} has an unknown role {short(role, 30)}")
        content = _field(raw, escaped, "content")
        if not isinstance(content, str):
            raise _fail(source, f"{where} has no text content")
        mid = raw.get("id")
        if not isinstance(mid, str) or not _ID.fullmatch(mid):
            raise _fail(source, f"{where} has a missing or invalid id")
        parent = raw.get("parent")
        if parent is not None:
            if not isinstance(parent, str) or not _ID.fullmatch(parent):
                raise _fail(source, f"{where} has an invalid parent")
            parent = current.get(parent, parent)
        if mid in ids:
            # an older chat-tui could repeat an 8-hex id in a very long conversation:
            # the later message gets a new id, and later references follow it
            fresh = new_id()
            while fresh in ids or fresh in all_ids:
                fresh = new_id()
            current[mid] = fresh
            renames[mid] = fresh
            mid = fresh
        else:
            current[mid] = mid
        ids.add(mid)
        meta: dict[str, Any] = {}
        for key, kind in MESSAGE_OPTIONAL.items():
            value = _field(raw, escaped, key)
            if value is _MISSING:
                continue
            if value is None and json_values:
                continue
            if kind is float and _is_int(value):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise _fail(source, f"{where} has an invalid {key}")
            if kind is int and not 0 <= value < INT64[1]:
                raise _fail(source, f"{where} has an invalid {key}")
            meta[key] = value
        provenance = _provenance(raw, escaped, source, where, json_values)
        if provenance:
            meta[PROVENANCE] = provenance
        time = _time(raw["time"], source, f"{where} time") if "time" in raw else now()
        out.append(
            ChatMessage(role=role, content=content, id=mid, parent=parent, time=time, **meta)
        )
    return out, renames


def _provenance(
    raw: dict[str, Any], escaped: dict[str, str], source: str, where: str, json_values: bool
) -> dict[str, Any] | None:
    """A message's ``provenance`` table, checked: from TOML, text keys and values that
    are flat (strings, numbers, booleans, lists of them) or tables of flat values one
    level deep; from JSON (an import, or the exact copy under ``escaped``), JSON values
    nested at most MAX_JSON_DEPTH deep. Anything else refuses the file with a reason."""
    if PROVENANCE in escaped:
        try:
            value = json.loads(escaped[PROVENANCE])
        except (ValueError, RecursionError):
            raise _fail(source, f"{where} 'escaped.provenance' is not readable") from None
        return unescape_tree(_json_provenance(value, source, where))
    if PROVENANCE not in raw:
        return None
    value = raw[PROVENANCE]
    if json_values:
        return _json_provenance(value, source, where) if value is not None else None
    if not isinstance(value, dict):
        raise _fail(source, f"{where} has a provenance that is not a table")
    out: dict[str, Any] = {}
    for key, item in value.items():
        _provenance_key(key, source, where)
        if isinstance(item, dict):
            inner: dict[str, Any] = {}
            for name, leaf in item.items():
                _provenance_key(name, source, where)
                if not _flat(leaf):
                    raise _fail(source, f"{where} has an invalid provenance value")
                inner[name] = leaf
            out[key] = inner
        elif _flat(item):
            out[key] = item
        else:
            raise _fail(source, f"{where} has an invalid provenance value")
    return out


def _provenance_key(key: Any, source: str, where: str) -> None:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise _fail(source, f"{where} has an invalid provenance key")


def _json_provenance(value: Any, source: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(source, f"{where} has a provenance that is not a table")
    out: dict[str, Any] = {}
    for key, item in value.items():
        _provenance_key(key, source, where)
        if item is None:
            continue
        if not _json_value(item, 1):
            raise _fail(source, f"{where} has an invalid provenance value")
        out[key] = drop_none(item)
    return out


def drop_none(value: Any) -> Any:
    """``value`` without ``None`` values in its tables, at every level."""
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    return value
