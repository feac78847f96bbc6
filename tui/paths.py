"""Where chat-tui keeps its files.

Everything is resolved when called, never at import, so ``XDG_*`` variables and
``--data-dir`` set by the caller (or a test) are honoured.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "chat-tui"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The user data folder (conversations live below it)."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("CHAT_TUI_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """Rebuildable files: the converted default model, indexes."""
    env = os.environ.get("CHAT_TUI_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    env = os.environ.get("CHAT_TUI_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def state_dir() -> Path:
    """What the app remembers between runs (open tabs per data dir, recent models):
    not the user's config, not their data."""
    env = os.environ.get("CHAT_TUI_STATE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))
