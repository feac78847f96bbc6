"""TOML text for a conversation document that reads back exactly.

The header (the conversation's own fields) is written by tomli-w and checked by
reading it back. The messages are written by a small emitter whose strings are
JSON-escaped, which is exact by construction (and fast: a 100k-message conversation
is written in about a second); text with newlines becomes multi-line strings for
readability. Both write DEL, C1 and bidi controls as ``\\uXXXX`` escapes.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from datetime import datetime
from typing import Any

import tomli_w

from .escaping import FILE_ESCAPE, escape_for_file, has_surrogates
from .schema import INT64, PROVENANCE, TOP_TEXT

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_JSON_NEWLINE = re.compile(r"\\\\|\\n")
_encode_string = json.encoder.encode_basestring  # C: a JSON string literal, non-ASCII kept


def plain_scalar(value: Any) -> bool:
    """True if TOML holds ``value`` as it is (a 64-bit int, a finite float, a bool,
    text without lone surrogates)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return INT64[0] <= value < INT64[1]
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return not has_surrogates(value)
    return False


def plain_value(value: Any) -> bool:
    """A :func:`plain_scalar`, or a list of them."""
    if isinstance(value, list):
        return all(plain_scalar(v) for v in value)
    return plain_scalar(value)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str, multiline: bool = False) -> str:
    """A TOML basic string (multi-line when ``multiline`` and the text has newlines)
    that reads back exactly: JSON escaping is a subset of TOML's, plus DEL, C1 and bidi
    controls as ``\\uXXXX``. ``text`` must hold no surrogates."""
    body = _encode_string(text)
    if FILE_ESCAPE.search(body):
        body = FILE_ESCAPE.sub(escape_for_file, body)
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
        if not INT64[0] <= value < INT64[1]:
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


def dump_messages(messages: list[dict[str, Any]]) -> str:
    """The ``[[messages]]`` tables, one per message entry."""
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
                parts.append(
                    f"{key} = {_toml_value(value, multiline=key in ('content', 'reasoning'))}\n"
                )
    return "".join(parts)


def dump_header(doc: dict[str, Any]) -> str:
    """The document without its messages, checked by reading it back."""
    has_cr = any("\r" in doc.get(key, "") for key in TOP_TEXT)
    for multiline in (False,) if has_cr else (True, False):
        text = tomli_w.dumps(doc, multiline_strings=multiline)
        if FILE_ESCAPE.search(text):
            text = FILE_ESCAPE.sub(escape_for_file, text)
        if tomllib.loads(text) == doc:
            return text
    raise ValueError("the header does not read back exactly")
