"""The user's ``config.toml`` (in the platformdirs config folder), read at call time.

The file is the user's: chat-tui reads it and never rewrites it behind their back.
Only a preference the user changes in the UI (choosing a theme) is written, and then
through a round-trip editor (tomlkit) that keeps their comments, order and unknown
tables. What the app remembers on its own (open tabs, recent models, the last model)
lives in :mod:`tui.state`.

```toml
theme = "chat-tui-dark"

[model]          # the default model for new sessions
source = "default"
dtype = "auto"

[keymap]         # binding id = keys, e.g. remap "new tab" to ctrl+t
new_tab = "ctrl+t"
```
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .store.atomic import atomic_write, ensure_dir
from .tomlfile import TomlFileError, read_toml

CONFIG_NAME = "config.toml"
_KEYS = re.compile(r"^[a-z0-9_+\-]+(,[a-z0-9_+\-]+)*$")
"""Textual key names (``ctrl+t``, ``f1``, ``left_square_bracket``), comma-separated."""
_BINDING_ID = re.compile(r"^[a-z0-9_.]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class ConfigError(Exception):
    """The config file could not be read or written; the message is one sentence."""


@dataclass
class AppConfig:
    theme: str | None = None  # None: not set by the user
    model: dict[str, Any] = field(default_factory=dict)  # the user's default model
    keymap: dict[str, str] = field(default_factory=dict)
    api_key_env: str = "OPENAI_API_KEY"  # the variable holding an endpoint's key
    problem: str | None = None  # why the file could not be read, if it could not
    warnings: list[str] = field(default_factory=list)  # keys ignored, one sentence each
    legacy: dict[str, Any] = field(default_factory=dict)  # state keys older versions wrote

    @classmethod
    def path(cls) -> Path:
        return paths.config_dir() / CONFIG_NAME

    @classmethod
    def load(cls) -> AppConfig:
        """The user's config. A file that cannot be read is a :attr:`problem` (and is
        never written); a key of the wrong type or value is one sentence in
        :attr:`warnings`, naming the file and key, and is ignored."""
        path = cls.path()
        try:
            data = read_toml(path)
        except TomlFileError as exc:
            return cls(problem=f"{path} could not be read ({exc}); using defaults")
        if data is None:
            return cls()
        config = cls()
        warn = config.warnings.append

        def text(key: str) -> str | None:
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                warn(f"{path}: {key} should be text in quotes; it is ignored.")
                return None
            return value

        theme = text("theme")
        if theme is not None:
            from .safe_text import one_line

            if one_line(theme) != theme or len(theme) > 60:
                warn(f"{path}: theme is not a theme name; it is ignored.")
            else:
                config.theme = theme
        if "model" in data:
            config.model, problems = _checked_model(data["model"], f"{path} [model]")
            config.warnings += problems
        keymap = data.get("keymap")
        if keymap is not None:
            config.keymap = _checked_keymap(keymap, f"{path} [keymap]", warn)
        env_name = text("api_key_env")
        if env_name is not None:
            if _ENV_NAME.match(env_name):
                config.api_key_env = env_name
            else:
                warn(f"{path}: api_key_env is not an environment variable name; it is ignored.")
        for key in ("open_tabs", "recent_models"):  # written by chat-tui 0.1 (state now)
            if isinstance(data.get(key), list):
                config.legacy[key] = [v for v in data[key] if isinstance(v, str)]
        return config

    def set_theme(self, theme: str) -> None:
        """The user picked a theme: change that one line of the file, nothing else."""
        self.theme = theme
        self._edit("theme", theme)

    def _edit(self, key: str, value: Any) -> None:
        if self.problem:  # never overwrite a file we could not read
            raise ConfigError(f"Not saved: {self.problem}.")
        import tomlkit

        path = self.path()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Could not read {path}: {exc}.") from None
        try:
            document = tomlkit.parse(text)
        except Exception as exc:  # tomlkit raises its own ParseError family
            raise ConfigError(f"Not saved: {path} could not be read ({exc}).") from None
        if document.get(key) == value:
            return
        document[key] = value  # tomlkit keeps comments and puts a new key before tables
        try:
            ensure_dir(path.parent)
            mode = path.stat().st_mode & 0o7777 if text else None
            atomic_write(path, tomlkit.dumps(document))
            if mode is not None:
                os.chmod(path, mode)  # the user's file keeps the mode they gave it
        except OSError as exc:
            raise ConfigError(f"Could not save {path}: {exc.strerror or exc}.") from None


def _checked_model(table: Any, where: str) -> tuple[dict[str, Any], list[str]]:
    from .engine.spec import checked_fields

    model, problems = checked_fields(table, where)
    if model.get("trust_remote_code") is True:
        del model["trust_remote_code"]
        problems.append(
            f"{where} trust_remote_code is not taken from a file: a model's own code runs "
            "only with --trust-remote-code on the command line."
        )
    return model, problems


def _checked_keymap(table: Any, where: str, warn: Any) -> dict[str, str]:
    """Binding id -> keys, for the entries that are both (``set_keymap`` shows keys in
    the footer and help, so nothing else may reach it)."""
    if not isinstance(table, dict):
        warn(f'{where} should be a table of binding = "keys"; it is ignored.')
        return {}
    keymap: dict[str, str] = {}
    for binding, keys in table.items():
        if not _BINDING_ID.match(str(binding)):
            warn(f"{where} has an entry that is not a binding id; it is ignored.")
        elif not isinstance(keys, str) or not _KEYS.match(keys.replace(" ", "")):
            warn(f'{where} {binding} should be key names such as "ctrl+t"; it is ignored.')
        else:
            keymap[binding] = keys.replace(" ", "")
    return keymap
