"""The session store: one TOML file per conversation under ``<data dir>/sessions``.

* Writes are atomic (see :mod:`atomic`) and guarded: a per-conversation lock plus a
  ``revision`` check refuse a write based on a stale read (another chat-tui process
  saved in between), so two processes never silently overwrite each other.
* A file that does not parse or has the wrong shape is reported with its reason and
  never rewritten; it does not stop the other conversations from loading.
* Listing reads a small JSON index (title, times, model, message count) validated by
  each file's size and mtime, so only new or changed files are parsed. The index is a
  cache: delete it, or let it break, and it is rebuilt.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from . import codec
from .atomic import atomic_write, ensure_dir, file_lock
from .errors import CorruptSessionError, NotFoundError, StaleWriteError, StoreError
from .model import Conversation, new_id, now

INDEX_NAME = ".index.json"
INDEX_VERSION = 1
SUFFIX = ".toml"


@dataclass
class SessionInfo:
    id: str
    title: str
    name: str | None
    created: str
    updated: str
    model: str
    messages: int
    path: str

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclass
class Problem:
    """An unreadable conversation file."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{Path(self.path).name}: {self.reason}"


@dataclass
class SearchHit:
    info: SessionInfo
    snippets: list[str]


def slugify(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")
    return slug[:80] or "conversation"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


_REVISION = re.compile(rb"^revision = (\d+)$", re.MULTILINE)


def _header_revision(path: Path) -> int | None:
    """The ``revision`` near the top of a file we wrote (cheap: no full parse)."""
    try:
        with open(path, "rb") as handle:
            match = _REVISION.search(handle.read(4096))
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _iso(value: datetime) -> str:
    return value.isoformat()


def _info(conv: Conversation, path: Path) -> SessionInfo:
    return SessionInfo(
        id=conv.id,
        title=conv.title,
        name=conv.name,
        created=_iso(conv.created),
        updated=_iso(conv.updated),
        model=conv.model_name,
        messages=conv.message_count,
        path=str(path),
    )


def _snippet(text: str, start: int, length: int, width: int = 40) -> str:
    left = max(0, start - width)
    right = min(len(text), start + length + width)
    core = " ".join(text[left:right].split())
    return ("…" if left else "") + core + ("…" if right < len(text) else "")


class SessionStore:
    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        from .. import paths

        self.root = paths.data_dir(data_dir)
        self.folder = self.root / "sessions"

    # -- paths -------------------------------------------------------------------------
    def _ready(self) -> Path:
        ensure_dir(self.root)
        ensure_dir(self.folder)
        ensure_dir(self.folder / ".locks")
        return self.folder

    def path_for(self, conv_id: str) -> Path:
        if not conv_id or "/" in conv_id or conv_id.startswith("."):
            raise StoreError(f"Invalid conversation id {conv_id!r}.")
        return self.folder / f"{conv_id}{SUFFIX}"

    def _lock_path(self, conv_id: str) -> Path:
        return self.folder / ".locks" / f"{conv_id}.lock"

    # -- create, read, write -----------------------------------------------------------
    def new(
        self,
        *,
        name: str | None = None,
        title: str | None = None,
        model: dict[str, Any] | None = None,
        system_prompt: str = "",
        settings: dict[str, Any] | None = None,
    ) -> Conversation:
        """A new conversation (not on disk until its first save)."""
        self._ready()
        if name:
            base = slugify(name)
            conv_id, n = base, 1
            while self.path_for(conv_id).exists():
                n += 1
                conv_id = f"{base}-{n}"
        else:
            conv_id = now().strftime("%Y%m%d-%H%M%S-") + new_id(3)
        return Conversation(
            id=conv_id,
            name=name,
            title=title or "New conversation",
            model=dict(model or {}),
            system_prompt=system_prompt,
            settings=dict(settings or {}),
        )

    def load(self, conv_id: str) -> Conversation:
        path = self.path_for(conv_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFoundError(f"No conversation {conv_id!r} in {self.folder}.") from None
        except UnicodeDecodeError:
            raise CorruptSessionError(str(path), "not UTF-8 text") from None
        conv = codec.loads(text, str(path))
        if conv.id != conv_id:  # the file name is the id; trust the name
            conv.id = conv_id
        conv.disk_stamp = _stamp(path)
        return conv

    def save(self, conv: Conversation) -> Path:
        """Write ``conv`` atomically. Raises :class:`StaleWriteError` if the file on disk
        has a newer revision than the one ``conv`` was read at, and
        :class:`CorruptSessionError` rather than overwrite an unreadable file."""
        self._ready()
        path = self.path_for(conv.id)
        with file_lock(self._lock_path(conv.id)):
            stamp = _stamp(path)
            unchanged = stamp == conv.disk_stamp and _header_revision(path) == conv.revision
            if stamp is not None and not unchanged:
                on_disk = self.load(conv.id)  # raises CorruptSessionError: never overwrite
                if on_disk.revision != conv.revision:
                    raise StaleWriteError(
                        f"'{conv.title}' was changed by another chat-tui process since it "
                        "was opened; reopen it to see those changes (yours are kept in "
                        "this window)."
                    )
            conv.revision += 1
            try:
                atomic_write(path, codec.dumps(conv))
            except BaseException:
                conv.revision -= 1
                raise
            conv.disk_stamp = _stamp(path)
        self._update_index_entry(conv, path)
        return path

    def delete(self, conv_id: str) -> Path:
        """Move a conversation to ``sessions/.trash`` (kept, not destroyed)."""
        path = self.path_for(conv_id)
        if not path.exists():
            raise NotFoundError(f"No conversation {conv_id!r}.")
        trash = ensure_dir(self.folder / ".trash")
        target = trash / f"{conv_id}-{new_id(3)}{SUFFIX}"
        os.replace(path, target)
        return target

    def rename(self, conv_id: str, title: str) -> Conversation:
        conv = self.load(conv_id)
        conv.title = title.strip() or conv.title
        conv.touch()
        self.save(conv)
        return conv

    def import_conversation(self, conv: Conversation) -> Conversation:
        """Save an imported conversation under a fresh id (never over an existing one)."""
        fresh = self.new(name=conv.name)
        conv.id, conv.revision = fresh.id, 0
        self.save(conv)
        return conv

    # -- listing -----------------------------------------------------------------------
    def _read_index(self) -> dict[str, Any]:
        try:
            data = json.loads((self.folder / INDEX_NAME).read_text(encoding="utf-8"))
            if data.get("version") == INDEX_VERSION and isinstance(data.get("files"), dict):
                return data
        except (OSError, ValueError, AttributeError):
            pass
        return {"version": INDEX_VERSION, "files": {}}

    def _write_index(self, data: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the index is only a cache
            atomic_write(self.folder / INDEX_NAME, json.dumps(data, separators=(",", ":")))

    def _update_index_entry(self, conv: Conversation, path: Path) -> None:
        with file_lock(self._lock_path(INDEX_NAME)):
            data = self._read_index()
            stat = path.stat()
            data["files"][path.name] = {
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "info": asdict(_info(conv, path)),
            }
            self._write_index(data)

    def scan(self) -> tuple[list[SessionInfo], list[Problem]]:
        """Every conversation (newest first) and every unreadable file with its reason."""
        if not self.folder.is_dir():
            return [], []
        data = self._read_index()
        files: dict[str, Any] = data["files"]
        seen: set[str] = set()
        changed = False
        infos: list[SessionInfo] = []
        problems: list[Problem] = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if not entry.name.endswith(SUFFIX) or entry.name.startswith("."):
                    continue
                try:
                    stat = entry.stat()
                except OSError:
                    continue
                seen.add(entry.name)
                cached = files.get(entry.name)
                if (
                    cached
                    and cached.get("size") == stat.st_size
                    and cached.get("mtime_ns") == stat.st_mtime_ns
                ):
                    if "problem" in cached:
                        problems.append(Problem(entry.path, cached["problem"]))
                        continue
                    try:
                        infos.append(SessionInfo(**cached["info"]))
                        continue
                    except (TypeError, KeyError):
                        pass  # an entry of the wrong shape: parse the file again
                record: dict[str, Any] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
                try:
                    conv = self.load(entry.name[: -len(SUFFIX)])
                    info = _info(conv, Path(entry.path))
                    record["info"] = asdict(info)
                    infos.append(info)
                except CorruptSessionError as exc:
                    record["problem"] = exc.reason
                    problems.append(Problem(entry.path, exc.reason))
                except (OSError, StoreError) as exc:
                    problems.append(Problem(entry.path, str(exc)))
                    continue
                files[entry.name] = record
                changed = True
        for name in list(files):
            if name not in seen:
                del files[name]
                changed = True
        if changed:
            with file_lock(self._lock_path(INDEX_NAME)):
                self._write_index(data)
        infos.sort(key=lambda i: i.updated, reverse=True)
        problems.sort(key=lambda p: p.path)
        return infos, problems

    def list(self) -> list[SessionInfo]:
        return self.scan()[0]

    def rebuild_index(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder / INDEX_NAME).unlink()
        self.scan()

    def most_recent(self) -> SessionInfo | None:
        infos = self.list()
        return infos[0] if infos else None

    def find(self, key: str) -> SessionInfo | None:
        """By id, then by name, then by a unique id prefix or unique title."""
        infos = self.list()
        for test in (
            lambda i: i.id == key,
            lambda i: i.name == key,
            lambda i: i.id == slugify(key),
        ):
            found = [i for i in infos if test(i)]
            if found:
                return found[0]
        for test in (lambda i: i.id.startswith(key), lambda i: i.title == key):
            found = [i for i in infos if test(i)]
            if len(found) == 1:
                return found[0]
        return None

    def open_or_create(self, name: str, **fields: Any) -> tuple[Conversation, bool]:
        """The conversation called ``name``, or a new one with that name."""
        info = self.find(name)
        if info is not None:
            return self.load(info.id), False
        return self.new(name=name, **fields), True

    # -- search --------------------------------------------------------------------------
    def search(self, text: str, limit: int = 200) -> list[SearchHit]:
        """Case-insensitive full-text search of every conversation's messages and title.

        A raw-bytes pre-filter skips files that cannot match; it is exact only for text
        that TOML writes literally, so queries holding quotes, backslashes or control
        characters parse every file."""
        needle = text.casefold()
        if not needle:
            return []
        literal = not any(c in text for c in '"\\') and all(c >= " " for c in text)
        hits: list[SearchHit] = []
        for info in self.list():
            path = Path(info.path)
            try:
                raw = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if literal and needle not in raw.casefold():
                continue
            try:
                conv = codec.loads(raw, str(path))
            except CorruptSessionError:
                continue
            snippets = []
            for m in conv.messages:
                index = m.content.casefold().find(needle)
                if index >= 0:
                    snippets.append(f"{m.role}: {_snippet(m.content, index, len(text))}")
            if snippets or needle in conv.title.casefold():
                hits.append(SearchHit(info, snippets[:5]))
                if len(hits) >= limit:
                    break
        return hits
