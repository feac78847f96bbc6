"""Text in a conversation file, made safe reversibly.

TOML (UTF-8) cannot hold lone surrogates such as ``"\\ud800"``: :func:`escape_text`
writes them (and doubles backslashes) so that :func:`unescape_text` gets the exact
string back, and :func:`fix` makes a readable stand-in (U+FFFD) to show beside it.
DEL, C1 controls and bidi overrides are allowed raw in TOML, but a file written with
them could drive the terminal it is printed on: they are written as ``\\uXXXX``.
"""

from __future__ import annotations

import re
from typing import Any

SURROGATE = re.compile("[\ud800-\udfff]")
# allowed raw in TOML, but escaped in our files so `cat` of a file is harmless
FILE_ESCAPE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_TO_ESCAPE = re.compile("[\\\\\ud800-\udfff]")
_ESCAPED = re.compile(r"\\(\\|u[dD][89a-fA-F][0-9a-fA-F]{2})")


def has_surrogates(text: str) -> bool:
    return SURROGATE.search(text) is not None


def needs_escape_in_file(text: str) -> bool:
    """True if ``text`` is not written literally in a conversation file (lone
    surrogates, DEL, C1 and bidi controls)."""
    return has_surrogates(text) or FILE_ESCAPE.search(text) is not None


def fix(text: str) -> str:
    """A readable stand-in for ``text``: lone surrogates shown as U+FFFD."""
    return SURROGATE.sub("\ufffd", text) if has_surrogates(text) else text


def escape_for_file(match: re.Match[str]) -> str:
    """A :data:`FILE_ESCAPE` character as a ``\\uXXXX`` escape (for ``re.sub``)."""
    return f"\\u{ord(match.group()):04x}"


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


def escape_tree(value: Any) -> Any:
    """``value`` with every string in it (keys too) escaped by :func:`escape_text`."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {escape_text(str(k)): escape_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_tree(v) for v in value]
    return value


def unescape_tree(value: Any) -> Any:
    if isinstance(value, str):
        return unescape_text(value)
    if isinstance(value, dict):
        return {unescape_text(k): unescape_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescape_tree(v) for v in value]
    return value
