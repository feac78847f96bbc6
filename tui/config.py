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
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .store.atomic import atomic_write, ensure_dir

CONFIG_NAME = "config.toml"


class ConfigError(Exception):
    """The config file could not be read or written; the message is one sentence."""


@dataclass
class AppConfig:
    theme: str | None = None  # None: not set by the user
    model: dict[str, Any] = field(default_factory=dict)  # the user's default model
    keymap: dict[str, str] = field(default_factory=dict)
    api_key_env: str = "OPENAI_API_KEY"  # the variable holding an endpoint's key
    problem: str | None = None  # why the file could not be read, if it could not
    legacy: dict[str, Any] = field(default_factory=dict)  # state keys older versions wrote

    @classmethod
    def path(cls) -> Path:
        return paths.config_dir() / CONFIG_NAME

    @classmethod
    def load(cls) -> AppConfig:
        path = cls.path()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
            return cls(problem=f"{path} could not be read ({exc}); using defaults")
        config = cls()
        if isinstance(data.get("theme"), str):
            config.theme = data["theme"]
        model = data.get("model")
        if isinstance(model, dict) and all(isinstance(k, str) for k in model):
            config.model = {k: v for k, v in model.items() if isinstance(v, str | bool | int)}
        keymap = data.get("keymap")
        if isinstance(keymap, dict):
            config.keymap = {str(k): v for k, v in keymap.items() if isinstance(v, str)}
        if isinstance(data.get("api_key_env"), str):
            config.api_key_env = data["api_key_env"]
        for key in ("open_tabs", "recent_models"):  # written by chat-tui 0.1 (state now)
            if isinstance(data.get(key), list):
                config.legacy[key] = [str(v) for v in data[key]]
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
