"""What the app remembers between runs, in the platformdirs *state* folder.

Not the user's config (:mod:`tui.config`) and not their data (conversations):

```toml
schema_version = 1
recent_models = ["default", "Qwen/Qwen2.5-0.5B-Instruct"]
show_sidebar = true
last_endpoint = "http://127.0.0.1:8000/v1"

[last_model]                  # the last local model loaded (its spec)
source = "default"
dtype = "auto"

[data_dirs."/home/ada/.local/share/chat-tui"]
open_tabs = ["20261125-101500-ab12cd"]
```

Open tabs are kept per data dir, so ``--data-dir`` never sees another folder's tabs.
Every change is a read-modify-write under a lock that touches only what changed, so
two running apps add to each other's open tabs instead of overwriting them.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from . import paths
from .store.atomic import atomic_write, ensure_dir, file_lock
from .tomlfile import TomlFileError, read_toml

STATE_NAME = "state.toml"
SCHEMA_VERSION = 1
MAX_RECENT = 10
MAX_TABS = 50


def data_key(data_dir: Path) -> str:
    """The key of a data dir in the state file (its absolute, resolved path)."""
    try:
        return str(Path(data_dir).expanduser().resolve())
    except OSError:
        return str(Path(data_dir).expanduser().absolute())


def _strings(value: Any, limit: int) -> list[str]:
    from .engine.spec import MAX_SOURCE_BYTES

    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str) and len(v) <= MAX_SOURCE_BYTES][:limit]


@dataclass
class AppState:
    """The state for one data dir. Read with :meth:`load`; each ``remember_*`` /
    ``set_*`` method writes its change at once (errors become :attr:`problem`)."""

    data_dir: Path
    open_tabs: list[str] = field(default_factory=list)
    recent_models: list[str] = field(default_factory=list)
    last_model: dict[str, Any] = field(default_factory=dict)
    show_sidebar: bool = True
    last_endpoint: str = ""
    problem: str | None = None  # the last read or write failure, as a sentence
    warnings: list[str] = field(default_factory=list)  # values ignored, one sentence each

    @staticmethod
    def path() -> Path:
        return paths.state_dir() / STATE_NAME

    # -- reading ----------------------------------------------------------------------------
    @classmethod
    def load(cls, data_dir: Path, legacy: dict[str, Any] | None = None) -> AppState:
        """The state for ``data_dir``; ``legacy`` holds what older versions kept in
        config.toml (used only while no state file exists)."""
        state = cls(Path(data_dir))
        document, problem = cls._read()
        state.problem = problem
        if document is None and legacy:
            state.open_tabs = _strings(legacy.get("open_tabs"), MAX_TABS)
            state.recent_models = _strings(legacy.get("recent_models"), MAX_RECENT)
            return state
        state._take(document or {})
        return state

    @classmethod
    def _read(cls) -> tuple[dict[str, Any] | None, str | None]:
        path = cls.path()
        try:
            return read_toml(path), None
        except TomlFileError as exc:
            return {}, f"{path} could not be read ({exc}); open tabs and recent models start empty"

    def _take(self, document: dict[str, Any]) -> None:
        from .engine.spec import checked_fields

        self.recent_models = _strings(document.get("recent_models"), MAX_RECENT)
        last = document.get("last_model")
        if last is not None:
            where = f"{self.path()} [last_model]"
            self.last_model, self.warnings = checked_fields(last, where, unknown=False)
            # the app remembers a model; it never remembers permission to run its code
            self.last_model.pop("trust_remote_code", None)
            self.last_model.pop("chat_template_file", None)
        if isinstance(document.get("show_sidebar"), bool):
            self.show_sidebar = document["show_sidebar"]
        if isinstance(document.get("last_endpoint"), str):
            self.last_endpoint = document["last_endpoint"]
        dirs = document.get("data_dirs")
        entry = dirs.get(data_key(self.data_dir)) if isinstance(dirs, dict) else None
        if isinstance(entry, dict):
            self.open_tabs = _strings(entry.get("open_tabs"), MAX_TABS)

    # -- writing ----------------------------------------------------------------------------
    def _update(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Read the file under its lock, let ``change`` edit the document, write it.
        A failure (a full disk) is kept in :attr:`problem`: state is not worth an error."""
        path = self.path()
        try:
            ensure_dir(path.parent)
            with file_lock(path.parent / f".{STATE_NAME}.lock"):
                document, problem = self._read()
                if problem is not None:
                    # never overwrite what we could not read: keep it aside, start afresh
                    aside = path.with_name(f"{STATE_NAME}.unreadable")
                    os.replace(path, aside)
                    self.problem = f"{problem}; it was kept as {aside}"
                document = document or {}
                before = copy.deepcopy(document)
                change(document)
                document["schema_version"] = SCHEMA_VERSION
                if document == before:
                    return  # nothing new: no write (a write waits for the disk's fsync)
                atomic_write(path, tomli_w.dumps(document))
        except OSError as exc:
            self.problem = f"Could not save the app's state in {path}: {exc.strerror or exc}"

    def set_open_tabs(self, tabs: list[str], closed: list[str] | tuple[str, ...] = ()) -> None:
        """This app now shows ``tabs`` and has ``closed`` some since its last write.
        Tabs another app recorded meanwhile are kept."""
        self.open_tabs = list(tabs)[:MAX_TABS]
        if not tabs and not closed and not self.path().exists():
            return  # nothing to record yet (a first start): no file, no fsync

        def change(document: dict[str, Any]) -> None:
            dirs = document.get("data_dirs")
            if not isinstance(dirs, dict):
                dirs = document["data_dirs"] = {}
            key = data_key(self.data_dir)
            entry = dirs.get(key) if isinstance(dirs.get(key), dict) else {}
            recorded = _strings(entry.get("open_tabs"), MAX_TABS)
            merged = [t for t in recorded if t not in closed]
            merged += [t for t in tabs if t not in merged]
            # keep this app's order, then what others added
            ordered = [t for t in tabs if t in merged] + [t for t in merged if t not in tabs]
            entry["open_tabs"] = ordered[:MAX_TABS]
            dirs[key] = entry

        self._update(change)

    def remember_model(self, spec: dict[str, Any]) -> None:
        # what _take would refuse is never written: no permission, no other file's name
        spec = {
            k: v for k, v in spec.items() if k not in ("trust_remote_code", "chat_template_file")
        }
        source = str(spec.get("source", ""))
        self.last_model = dict(spec)
        if source:
            self.recent_models = [source] + [m for m in self.recent_models if m != source]
            self.recent_models = self.recent_models[:MAX_RECENT]

        def change(document: dict[str, Any]) -> None:
            document["last_model"] = {k: v for k, v in spec.items() if v is not None}
            recent = _strings(document.get("recent_models"), MAX_RECENT)
            if source:
                recent = [source] + [m for m in recent if m != source]
            document["recent_models"] = recent[:MAX_RECENT]

        self._update(change)

    def remember_endpoint(self, url: str) -> None:
        self.last_endpoint = url

        def change(document: dict[str, Any]) -> None:
            document["last_endpoint"] = url

        self._update(change)

    def set_sidebar(self, shown: bool) -> None:
        self.show_sidebar = shown

        def change(document: dict[str, Any]) -> None:
            document["show_sidebar"] = shown

        self._update(change)
