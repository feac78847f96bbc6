"""What must never be shown: a credential held as a :class:`_Secret`,
:func:`redact_url` for any URL string, and the logging filter that applies it to the
URLs httpx logs."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "***"


class _Secret:
    """A credential that never shows itself in a repr, a str or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<hidden>"

    __str__ = __repr__


# names of query (or fragment) parameters whose values are shown as ***: api_key,
# x-api-key, access_token, sig, X-Amz-Signature, password, client_secret, auth, ...
_SECRET_NAME = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential|session", re.I)


def _redact_params(text: str) -> str:
    items = []
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if eq and value and _SECRET_NAME.search(unquote_plus(name)):
            item = f"{name}={REDACTED}"
        items.append(item)
    return "&".join(items)


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` removed and the values of query or fragment
    parameters that look like credentials shown as ``***``; never raises, whatever the
    string."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    cut = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if found != -1:
            cut = min(cut, found)
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        authority = authority.rpartition("@")[2]
    tail, hash_mark, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    tail = path + question + _redact_params(query) + hash_mark + _redact_params(fragment)
    return f"{scheme}{sep}{authority}{tail}"


class _RedactUrls:
    """A logging filter: httpx logs each request's URL, which may carry a key."""

    def filter(self, record: Any) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(str(arg)) if "://" in str(arg) else arg for arg in record.args
            )
        return True


def _quiet_url_logs() -> None:
    import logging

    logger = logging.getLogger("httpx2")
    if not any(isinstance(f, _RedactUrls) for f in logger.filters):
        logger.addFilter(_RedactUrls())
