"""Typed user settings in ``config.toml`` (platformdirs config dir), read at call time.

```toml
theme = "chat-tui-dark"
open_tabs = ["20261125-101500-ab12cd"]
recent_models = ["default", "Qwen/Qwen2.5-0.5B-Instruct"]

[model]          # the default model spec for new sessions
source = "default"
dtype = "auto"

[keymap]         # binding id = keys, e.g. remap "new tab" to ctrl+t
new_tab = "ctrl+t"
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from . import paths
from .store.atomic import atomic_write, ensure_dir

CONFIG_NAME = "config.toml"
MAX_RECENT = 10


@dataclass
class AppConfig:
    theme: str = "chat-tui-dark"
    model: dict[str, Any] = field(default_factory=dict)
    keymap: dict[str, str] = field(default_factory=dict)
    recent_models: list[str] = field(default_factory=list)
    open_tabs: list[str] = field(default_factory=list)
    show_sidebar: bool = True
    endpoint: str = ""  # the last OpenAI-compatible server used (URL only)
    api_key_env: str = "OPENAI_API_KEY"  # the variable holding its key, never the key
    problem: str | None = None  # why the file could not be read, if it could not

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
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            return cls(problem=f"{path} could not be read ({exc}); using defaults")
        config = cls()
        if isinstance(data.get("theme"), str):
            config.theme = data["theme"]
        if isinstance(data.get("model"), dict):
            config.model = data["model"]
        if isinstance(data.get("keymap"), dict):
            config.keymap = {str(k): str(v) for k, v in data["keymap"].items()}
        for key in ("recent_models", "open_tabs"):
            value = data.get(key)
            if isinstance(value, list):
                setattr(config, key, [str(v) for v in value])
        for key in ("endpoint", "api_key_env"):
            if isinstance(data.get(key), str):
                setattr(config, key, data[key])
        if isinstance(data.get("show_sidebar"), bool):
            config.show_sidebar = data["show_sidebar"]
        return config

    def save(self) -> None:
        if self.problem:  # never overwrite a file we could not read
            return
        path = self.path()
        ensure_dir(path.parent)
        data = {
            "theme": self.theme,
            "show_sidebar": self.show_sidebar,
            "endpoint": self.endpoint,
            "api_key_env": self.api_key_env,
            "open_tabs": self.open_tabs,
            "recent_models": self.recent_models[:MAX_RECENT],
            "model": self.model,
            "keymap": self.keymap,
        }
        atomic_write(path, tomli_w.dumps(data))

    def remember_model(self, source: str) -> None:
        self.recent_models = [source] + [m for m in self.recent_models if m != source]
        self.recent_models = self.recent_models[:MAX_RECENT]
