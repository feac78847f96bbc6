"""Older conversation files brought up to the schema this chat-tui writes, one step a
file (``v1_to_v2.py``: schema 1 to 2). A step takes the parsed document and returns
it at the next version; it checks only what it needs, the schema checks the rest.

A file newer than :data:`SCHEMA_VERSION` is refused (:class:`UnsupportedSchemaError`),
never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import CorruptSessionError, UnsupportedSchemaError
from . import v1_to_v2

SCHEMA_VERSION = 2  # what files are written in: where the last step arrives

Step = Callable[[dict[str, Any], str], dict[str, Any]]
STEPS: dict[int, Step] = {1: v1_to_v2.upgrade}  # from version N to N + 1


def migrate(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """``doc`` (from the file ``source``) at :data:`SCHEMA_VERSION`."""
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
    while version < SCHEMA_VERSION:
        doc = STEPS[version](doc, source)
        version += 1
    return doc
