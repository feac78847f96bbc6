"""Conversation <-> TOML document, with schema checks and migrations.

Schema history:

* 1: a linear ``[[messages]]`` list (role, content, time) and no branches.
* 2: every message has ``id`` and ``parent``; ``head`` names the active branch's last
  message; a ``revision`` counter is bumped on every save. Later additions, all
  optional (older files load as they are): a reply's ``provenance`` table (how it was
  made: model, precision, device, settings, seed, versions), its ``label`` (the spec
  of a compared reply), ``acceptance_rate`` and ``tokens_per_forward`` (speculative
  decoding), ``weights_bytes`` and ``peak_bytes``.

Reading is defensive: for any bytes and any TOML shape, :func:`loads` and
:func:`from_document` raise only :class:`CorruptSessionError` with a reason. Every
field's type is checked; ``model`` and ``settings`` hold flat values (strings,
numbers, booleans, or lists of them); a message's ``provenance`` holds such values and
sub-tables of them, one level deep; parent ids must exist and form no cycle.

Writing is lossless for any Python ``str``. TOML (UTF-8) cannot hold lone surrogates
such as ``"\\ud800"``, nor nested values in the flat tables, so a field that holds
them is written readably (surrogates shown as U+FFFD) and its exact value is kept
beside it in an ``escaped`` table, as JSON text (``escaped.content = ...`` in a
message, ``[escaped]`` at the top); reading prefers the escaped value. Control
characters, DEL, C1 controls and bidi overrides are written as ``\\uXXXX`` escapes,
so printing a conversation file never drives the terminal.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from datetime import UTC, datetime
from typing import Any

import tomli_w

from .errors import CorruptSessionError, StoreError, UnsupportedSchemaError, short
from .model import ROLES, ChatMessage, Conversation, find_cycle, new_id, now

SCHEMA_VERSION = 2
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 8  # nesting allowed in an escaped (JSON) model/settings value
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_INT64 = (-(2**63), 2**63)

_MESSAGE_OPTIONAL: dict[str, type] = {
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
}
_MESSAGE_TEXT = ("content", "model", "stop_reason", "error", "label")
PROVENANCE = "provenance"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_KEY_CHARS = 200
_TOP_TEXT = ("name", "title", "system_prompt")
_TABLES = ("model", "settings")

_SURROGATE = re.compile("[\ud800-\udfff]")
# allowed raw in TOML, but escaped in our files so `cat` of a file is harmless
_FILE_ESCAPE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_JSON_NEWLINE = re.compile(r"\\\\|\\n")
_encode_string = json.encoder.encode_basestring  # C: a JSON string literal, non-ASCII kept


# -- writing -------------------------------------------------------------------------


def _has_surrogates(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def needs_escape_in_file(text: str) -> bool:
    """True if ``text`` is not written literally in a conversation file (lone
    surrogates, DEL, C1 and bidi controls)."""
    return _has_surrogates(text) or _FILE_ESCAPE.search(text) is not None


def _fix(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text) if _has_surrogates(text) else text


def _plain_scalar(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return _INT64[0] <= value < _INT64[1]
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return not _has_surrogates(value)
    return False


def _plain_value(value: Any) -> bool:
    if isinstance(value, list):
        return all(_plain_scalar(v) for v in value)
    return _plain_scalar(value)


_TO_ESCAPE = re.compile("[\\\\\ud800-\udfff]")
_ESCAPED = re.compile(r"\\(\\|u[dD][89a-fA-F][0-9a-fA-F]{2})")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return "\\\\" if char == "\\" else f"\\u{ord(char):04x}"


def _unescape_char(match: re.Match[str]) -> str:
    code = match.group(1)
    return "\\" if code == "\\" else chr(int(code[1:], 16))


def escape_text(text: str) -> str:
    """``text`` without lone surrogates, reversibly: backslashes doubled, surrogates
    as ``\\udXXX``. (JSON is not exact here: it reads a high and a low surrogate
    escape in a row as one character.)"""
    return _TO_ESCAPE.sub(_escape_char, text)


def unescape_text(text: str) -> str:
    return _ESCAPED.sub(_unescape_char, text)


def _escape_tree(value: Any) -> Any:
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {escape_text(str(k)): _escape_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escape_tree(v) for v in value]
    return value


def _unescape_tree(value: Any) -> Any:
    if isinstance(value, str):
        return unescape_text(value)
    if isinstance(value, dict):
        return {unescape_text(k): _unescape_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescape_tree(v) for v in value]
    return value


def _table_text(table: dict[str, Any]) -> str:
    """A table's exact value as JSON text (its strings escaped by :func:`escape_text`)."""
    return json.dumps(_escape_tree(table), ensure_ascii=False, default=str)


def _stand_in(value: Any) -> Any:
    """A TOML-writable, readable stand-in for a value kept exactly in ``escaped``."""
    if isinstance(value, str):
        return _fix(value)
    if _plain_scalar(value):
        return value
    if isinstance(value, float):
        return repr(value)  # nan, inf
    if isinstance(value, list) and all(isinstance(v, str) or _plain_scalar(v) for v in value):
        return [_stand_in(v) for v in value]
    return json.dumps(_escape_tree(value), ensure_ascii=False, default=str)


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
        if escape and _has_surrogates(value):
            escaped[key] = escape_text(value)
            value = _fix(value)
        doc[key] = value

    if conv.name is not None:
        text("name", conv.name)
    text("title", conv.title)
    doc["created"] = _utc(conv.created)
    doc["updated"] = _utc(conv.updated)
    doc["head"] = conv.head or ""
    text("system_prompt", conv.system_prompt)
    for key in _TABLES:
        table = {k: v for k, v in dict(getattr(conv, key) or {}).items() if v is not None}
        if escape and not all(
            isinstance(k, str) and not _has_surrogates(k) and _plain_value(v)
            for k, v in table.items()
        ):
            escaped[key] = _table_text(table)
            table = {_fix(str(k)): _stand_in(v) for k, v in table.items()}
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
    for key in _MESSAGE_OPTIONAL:
        value = getattr(m, key)
        if value is None:
            continue
        if escape and isinstance(value, str) and _has_surrogates(value):
            escaped[key] = escape_text(value)
            value = _fix(value)
        entry[key] = value
    content = m.content
    if escape and _has_surrogates(content):
        escaped["content"] = escape_text(content)
        content = _fix(content)
    entry["content"] = content
    if m.provenance:
        table = clean_provenance(m.provenance)
        if escape and not _plain_provenance(table):
            escaped[PROVENANCE] = _table_text(table)
            table = {_fix(str(k)): _stand_in(v) for k, v in table.items()}
        entry[PROVENANCE] = table
    if escaped:
        entry["escaped"] = escaped
    return entry


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


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
            value = {k: _drop_none(v) for k, v in value.items() if _usable_key(k) and v is not None}
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
        if not isinstance(key, str) or not key or _has_surrogates(key) or len(key) > MAX_KEY_CHARS:
            return False
        if isinstance(value, dict):
            if depth > 0 or not _plain_provenance(value, depth + 1):
                return False
        elif not _plain_value(value):
            return False
    return True


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _escape_for_file(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _toml_string(text: str, multiline: bool = False) -> str:
    """A TOML basic string (multi-line when ``multiline`` and the text has newlines)
    that reads back exactly: JSON escaping is a subset of TOML's, plus DEL, C1 and bidi
    controls as ``\\uXXXX``. ``text`` must hold no surrogates."""
    body = _encode_string(text)
    if _FILE_ESCAPE.search(body):
        body = _FILE_ESCAPE.sub(_escape_for_file, body)
    if multiline and "\n" in text:
        inner = _JSON_NEWLINE.sub(lambda m: "\n" if m.group() == "\\n" else m.group(), body[1:-1])
        return '"""\n' + inner + '"""'
    return body


def _toml_value(value: Any, multiline: bool = False) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64[0] <= value < _INT64[1]:
            raise ValueError(f"{value} does not fit in 64 bits")
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return _toml_string(value, multiline)
    raise TypeError(f"cannot write a {type(value).__name__}")


def _dump_messages(messages: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for entry in messages:
        parts.append("\n[[messages]]\n")
        for key, value in entry.items():
            if key == "escaped":
                for name, text in value.items():
                    parts.append(f"escaped.{name} = {_toml_string(text)}\n")
            elif key == PROVENANCE:
                for name, item in value.items():
                    if isinstance(item, dict):
                        for inner, leaf in item.items():
                            dotted = f"{PROVENANCE}.{_toml_key(name)}.{_toml_key(inner)}"
                            parts.append(f"{dotted} = {_toml_value(leaf)}\n")
                    else:
                        parts.append(f"{PROVENANCE}.{_toml_key(name)} = {_toml_value(item)}\n")
            else:
                parts.append(f"{key} = {_toml_value(value, multiline=key == 'content')}\n")
    return "".join(parts)


def _dump_header(doc: dict[str, Any]) -> str:
    has_cr = any("\r" in doc.get(key, "") for key in _TOP_TEXT)
    for multiline in (False,) if has_cr else (True, False):
        text = tomli_w.dumps(doc, multiline_strings=multiline)
        if _FILE_ESCAPE.search(text):
            text = _FILE_ESCAPE.sub(_escape_for_file, text)
        if tomllib.loads(text) == doc:
            return text
    raise ValueError("the header does not read back exactly")


def dumps(conv: Conversation) -> str:
    """TOML text for ``conv`` that reads back exactly.

    The header (tomli-w) is checked by reading it back; the messages are written by a
    small emitter whose strings are JSON-escaped, which is exact by construction (and
    fast: a 100k-message conversation is written in about a second). Text with
    newlines is written as multi-line strings for readability."""
    try:
        doc = to_document(conv)
        messages = doc.pop("messages")
        text = _dump_header(doc) + _dump_messages(messages)
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


def migrate(doc: dict[str, Any], source: str) -> dict[str, Any]:
    version = doc.get("schema_version")
    if not _is_int(version):
        raise _fail(source, "missing or invalid 'schema_version'")
    if version > SCHEMA_VERSION:
        raise UnsupportedSchemaError(
            source,
            f"schema_version {version} is newer than this chat-tui understands "
            f"({SCHEMA_VERSION}); upgrade chat-tui to open it",
        )
    if version < 1:
        raise _fail(source, f"unknown schema_version {version}")
    if version == 1:
        doc = dict(doc)
        raw = doc.get("messages", [])
        if not isinstance(raw, list):
            raise _fail(source, "'messages' must be a list of tables")
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


def _unescape(escaped: dict[str, str], key: str) -> str:
    return unescape_text(escaped[key])


def _unescape_table(escaped: dict[str, str], key: str, source: str) -> dict[str, Any]:
    try:
        value = json.loads(escaped[key])
    except (ValueError, RecursionError):
        raise _fail(source, f"'escaped.{key}' is not readable") from None
    return _unescape_tree(_table(value, key, source, True))


def from_document(
    doc: Any, source: str = "<document>", *, json_values: bool = False
) -> Conversation:
    """Validate a parsed document and build the conversation.

    ``json_values`` is for documents that came from JSON (an import): strings may hold
    any code point and ``model``/``settings`` values may be JSON values nested at most
    MAX_JSON_DEPTH deep (``null`` means unset); there is no ``escaped`` table."""
    try:
        return _from_document(doc, source, json_values)
    except CorruptSessionError:
        raise
    except (RecursionError, TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise _fail(source, f"has an unexpected shape ({type(exc).__name__})") from None


def _from_document(doc: Any, source: str, json_values: bool) -> Conversation:
    if not isinstance(doc, dict):
        raise _fail(source, "is not a table")
    doc = migrate(doc, source)
    escaped = {} if json_values else _escaped_table(doc.get("escaped"), "'escaped'", source)

    conv_id = doc.get("id")
    if not isinstance(conv_id, str) or not conv_id:
        raise _fail(source, "missing or invalid 'id'")
    texts: dict[str, str | None] = {"name": None, "title": "New conversation", "system_prompt": ""}
    for key in _TOP_TEXT:
        if key in escaped:
            value = _unescape(escaped, key)
        elif key in doc:
            value = doc[key]
        else:
            continue
        if not isinstance(value, str):
            raise _fail(source, f"'{key}' must be text")
        texts[key] = value
    tables: dict[str, dict[str, Any]] = {}
    for key in _TABLES:
        if key in escaped:
            tables[key] = _unescape_table(escaped, key, source)
        else:
            tables[key] = _table(doc.get(key, {}), key, source, json_values)
    revision = doc.get("revision", 0)
    if not _is_int(revision) or not 0 <= revision < _INT64[1]:
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
        content = _unescape(escaped, "content") if "content" in escaped else raw.get("content")
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
        for key, kind in _MESSAGE_OPTIONAL.items():
            if key in escaped:
                value = _unescape(escaped, key)
            elif key in raw:
                value = raw[key]
            else:
                continue
            if value is None and json_values:
                continue
            if kind is float and _is_int(value):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise _fail(source, f"{where} has an invalid {key}")
            if kind is int and not 0 <= value < _INT64[1]:
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
        return _unescape_tree(_json_provenance(value, source, where))
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
        out[key] = _drop_none(item)
    return out
