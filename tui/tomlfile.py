"""Reading a small TOML file that anyone could have put there (the user's config, the
app state, a theme): only a regular file, bounded in size, never blocking on a FIFO
and never reading a device (see :func:`tui.store.atomic.read_file`)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .store.atomic import ReadRefused, read_bounded

MAX_BYTES = 1024 * 1024
"""A config or state file larger than this is not one chat-tui or a person wrote."""


class TomlFileError(ValueError):
    """The file could not be read; ``str()`` is the reason, without the path."""


def read_toml(path: Path, limit: int = MAX_BYTES) -> dict[str, Any] | None:
    """The table in ``path``, or ``None`` if there is no such file. Raises
    :class:`TomlFileError` with the reason for anything else."""
    try:
        raw = read_bounded(path, limit)
    except FileNotFoundError:
        return None
    except ReadRefused as exc:
        raise TomlFileError(str(exc)) from None
    except OSError as exc:
        raise TomlFileError(exc.strerror or str(exc)) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise TomlFileError("it is not UTF-8 text") from None
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise TomlFileError(f"not valid TOML: {exc}") from None
