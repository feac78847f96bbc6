"""The session store: one TOML file per conversation under ``<data dir>/sessions``.

* Writes are atomic (see :mod:`atomic`) and made under a per-conversation lock. When
  another chat-tui saved the conversation since it was read, the save merges (see
  :mod:`merge`): both sides' messages are kept, as branches where both appended. Only
  when the file became unreadable (never overwritten) or was deleted since it was
  read does a save refuse.
* A file that cannot be read, does not parse or has the wrong shape is reported with
  its reason and never rewritten; it does not stop the other conversations from
  loading. Files are read with a size limit and never block (FIFOs, devices).
* Named conversations live in ``<slug>-<hash of the name>.toml``; the name itself is
  kept inside the file and matched exactly, so distinct names never share a file.
* Listing reads a small JSON index (title, times, model, message count) validated by
  each file's size and mtime, so only new or changed files are parsed. The index is a
  cache: delete it, or let it break, and it is rebuilt; every entry is checked.
* Disk faults raise :class:`DiskError`, one sentence naming what, where and why.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import stat as stat_module
import sys
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import codec, escaping, schema
from .atomic import ReadRefused, atomic_write, ensure_dir, file_lock, move, read_file
from .errors import (
    ConversationGoneError,
    CorruptSessionError,
    NotFoundError,
    StoreError,
    describe_os_error,
    disk_errors,
    label,
)
from .fit import fit
from .merge import MergeReport, merge
from .model import Conversation, new_id, now

INDEX_NAME = ".index.json"
# 2: strings escaped with escaping.escape_text (exact for any str); 3: entries signed
INDEX_VERSION = 4  # 4: an endpoint conversation lists its server's model
INDEX_KEY_NAME = "index.key"
SUFFIX = ".toml"
MAX_FILE_BYTES = schema.MAX_FILE_BYTES
MAX_INDEX_BYTES = 64 * 1024 * 1024


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


_INFO_FIELDS = tuple(f.name for f in fields(SessionInfo))


@dataclass
class Problem:
    """An unreadable conversation file."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{Path(self.path).name}: {self.reason}"


@dataclass
class TrashedInfo:
    """A deleted conversation in the trash."""

    trash_name: str  # the file's name in the trash
    id: str  # the id it had
    title: str
    name: str | None
    deleted: str  # ISO time the file was moved to the trash


@dataclass
class SearchHit:
    info: SessionInfo
    snippets: list[str]


def _trashed_id(file_name: str) -> str:
    """The id a trashed file had: its name without ``-XXXXXXXX.toml`` (see delete)."""
    stem = file_name[: -len(SUFFIX)]
    head, dash, tail = stem.rpartition("-")
    return head if dash and len(tail) == 8 else stem


def _mtime(entry: os.DirEntry) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def slugify(name: str) -> str:
    """The file name an older chat-tui gave a named conversation (several names could
    share it; kept to explain old files, no longer used for new ones)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")
    return slug[:80] or "conversation"


_NOT_WORD = re.compile(r"\W+")


def file_stem_for_name(name: str) -> str:
    """A safe file name (without ``.toml``) for the conversation called ``name``: a
    readable slug in any script plus a hash of the full name, so names that differ
    only in punctuation, case or script never share a file."""
    slug = _NOT_WORD.sub("-", name).strip("-_")[:40].rstrip("-_")
    try:
        slug.encode(sys.getfilesystemencoding())
    except (UnicodeEncodeError, LookupError):
        slug = re.sub(r"[^A-Za-z0-9]+", "-", slug).strip("-")
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{slug}-{digest}" if slug else f"conversation-{digest}"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


_REVISION = re.compile(rb"^revision = (\d{1,19})$", re.MULTILINE)


def _encode(conv: Conversation) -> bytes:
    return codec.dumps(conv).encode("utf-8")


def _header_revision(path: Path) -> int | None:
    """The ``revision`` near the top of a file we wrote (cheap: no full parse)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat_module.S_ISREG(os.fstat(fd).st_mode):
            return None
        match = _REVISION.search(os.read(fd, 4096))
    except OSError:
        return None
    finally:
        os.close(fd)
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


def _cached_info(entry: Any, stem: str, path: str) -> SessionInfo | None:
    """The SessionInfo in an index entry, if it has exactly the right shape."""
    info = entry.get("info")
    if not isinstance(info, dict) or not all(key in info for key in _INFO_FIELDS):
        return None
    values = {key: info[key] for key in _INFO_FIELDS}
    texts = ("id", "title", "created", "updated", "model", "path")
    if not all(isinstance(values[key], str) for key in texts):
        return None
    if values["name"] is not None and not isinstance(values["name"], str):
        return None
    count = values["messages"]
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        return None
    for key in ("title", "created", "updated", "model"):
        values[key] = escaping.unescape_text(values[key])
    if values["name"] is not None:
        values["name"] = escaping.unescape_text(values["name"])
    values["id"], values["path"] = stem, path  # the file is the truth, not the cache
    return SessionInfo(**values)


def _index_info(info: SessionInfo) -> dict[str, Any]:
    """A SessionInfo for the JSON index, its strings escaped so that any str (lone
    surrogates included) reads back exactly."""
    return {
        key: escaping.escape_text(value) if isinstance(value, str) else value
        for key, value in asdict(info).items()
    }


_KEYS: dict[str, bytes] = {}


def index_key() -> bytes:
    """The key that signs index entries, kept in the state folder (0600), not beside the
    conversations: whoever can write the data folder cannot make the index say that a
    file holds another conversation (the files are the truth). Made on first use; a
    state folder that cannot hold it gives a key for this process only (listing then
    parses the files once per run)."""
    from .. import paths

    folder = paths.state_dir()
    cached = _KEYS.get(str(folder))
    if cached is not None:
        return cached
    path = folder / INDEX_KEY_NAME
    key = b""
    try:
        key = read_file(path, 64)[0]
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            ensure_dir(folder)
            fresh = os.urandom(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(fresh)
            key = fresh
    except (OSError, ReadRefused):
        pass
    if len(key) < 16:
        key = os.urandom(32)
    _KEYS[str(folder)] = key
    return key


def _signature(key: bytes, file_name: str, entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "mac"}
    message = json.dumps([file_name, body], sort_keys=True, separators=(",", ":"))
    return hmac.new(key, message.encode("utf-8", "surrogatepass"), "sha256").hexdigest()


def _sign(key: bytes, file_name: str, entry: dict[str, Any]) -> dict[str, Any]:
    entry["mac"] = _signature(key, file_name, entry)
    return entry


def _valid_entry(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    for key in ("size", "mtime_ns"):
        value = entry.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            return False
    if "problem" in entry:
        return isinstance(entry["problem"], str)
    return isinstance(entry.get("info"), dict)


def _snippet(text: str, start: int, length: int, width: int = 40) -> str:
    left = max(0, start - width)
    right = min(len(text), start + length + width)
    core = " ".join(text[left:right].split())
    return ("…" if left else "") + core + ("…" if right < len(text) else "")


def _quoted(title: str) -> str:
    return f"'{label(title)}'"


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
        if (
            not isinstance(conv_id, str)
            or not conv_id
            or "/" in conv_id
            or "\0" in conv_id
            or conv_id.startswith(".")
        ):
            raise StoreError(f"Invalid conversation id {conv_id!r}.")
        return self.folder / f"{conv_id}{SUFFIX}"

    def _lock_path(self, conv_id: str) -> Path:
        return self.folder / ".locks" / f"{conv_id}.lock"

    def _taken(self, conv_id: str) -> bool:
        return os.path.lexists(self.path_for(conv_id))

    def _free_id(self, base: str) -> str:
        conv_id, n = base, 1
        while self._taken(conv_id):
            n += 1
            conv_id = f"{base}-{n}"
        return conv_id

    def _fresh_id(self, name: str | None) -> str:
        if name:
            return self._free_id(file_stem_for_name(name))
        while True:
            conv_id = now().strftime("%Y%m%d-%H%M%S-") + new_id(4)
            if not self._taken(conv_id):
                return conv_id

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
        return Conversation(
            id=self._fresh_id(name),
            name=name,
            title=title or "New conversation",
            model=dict(model or {}),
            system_prompt=system_prompt,
            settings=dict(settings or {}),
        )

    def _read(self, path: Path, conv_id: str) -> Conversation:
        """Read and validate one file. Raises :class:`NotFoundError` if it is missing
        and :class:`CorruptSessionError` (with the reason) for anything else."""
        try:
            data, info = read_file(path, MAX_FILE_BYTES)
        except FileNotFoundError:
            raise NotFoundError(f"No conversation {conv_id!r} in {self.folder}.") from None
        except ReadRefused as exc:
            raise CorruptSessionError(str(path), exc.reason) from None
        except OSError as exc:
            reason = f"could not be read ({describe_os_error(exc, path)})"
            raise CorruptSessionError(str(path), reason) from None
        conv = codec.loads_bytes(data, str(path))
        conv.id = conv_id  # the file name is the id; trust the name
        conv.disk_stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        conv.mark_saved()
        return conv

    def load(self, conv_id: str) -> Conversation:
        return self._read(self.path_for(conv_id), conv_id)

    def save(self, conv: Conversation) -> Path:
        """Write ``conv`` atomically, merging what another chat-tui saved meanwhile.

        If the file changed since ``conv`` was read, the file is read again and merged
        into ``conv`` (see :func:`merge.merge`); ``conv.last_merge`` then tells what
        came from the other side (None when nothing did). Raises
        :class:`CorruptSessionError` rather than overwrite an unreadable file,
        :class:`ConversationGoneError` if the file was deleted since it was read, and
        :class:`DiskError` when the disk refuses. A new conversation whose id was
        taken meanwhile gets a fresh id (``conv.id`` changes) unless it is the same
        named conversation, which is merged."""
        path = self.path_for(conv.id)
        with disk_errors(f"save {_quoted(conv.title)} to", path):
            self._ready()
            for _attempt in range(1000):
                path = self.path_for(conv.id)
                with file_lock(self._lock_path(conv.id)):
                    if self._save_locked(conv, path):
                        break
            else:  # pragma: no cover - needs 1000 concurrent creators of one name
                raise StoreError(f"Could not find a free file name for {_quoted(conv.title)}.")
        self._update_index_entry(conv, path)
        return path

    def _save_locked(self, conv: Conversation, path: Path) -> bool:
        """Merge and write under the lock; False if ``conv`` needs another id first."""
        stamp = _stamp(path)
        report: MergeReport | None = None
        if stamp is None:
            if conv.on_disk:
                raise ConversationGoneError(
                    f"{_quoted(conv.title)} was deleted (or moved to the trash) since it was "
                    "opened, so it was not saved; save it as a new conversation to keep it."
                )
        elif not conv.on_disk:
            # a new conversation, but the id is taken: the same named conversation
            # created by another process is merged; anything else gets a fresh id
            try:
                other = self._read(path, conv.id)
            except (CorruptSessionError, NotFoundError):
                other = None
            if other is not None and conv.name is not None and other.name == conv.name:
                report = merge(conv, other, None)
            else:
                conv.id = self._fresh_id(conv.name)
                return False
        elif not (stamp == conv.disk_stamp and _header_revision(path) == conv.revision):
            other = self._read(path, conv.id)  # CorruptSessionError: never overwrite
            report = merge(conv, other, conv._base)
        self._write(conv, path)
        conv.last_merge = report if report else None
        return True

    def _write(self, conv: Conversation, path: Path) -> None:
        previous = conv.revision
        # never write what a read refuses: a file's revision can be the largest one
        # read accepts (a hand-made 2**63 - 1), and it stays there
        conv.revision = min(conv.revision + 1, schema.INT64[1] - 1)
        try:
            data = _encode(conv)
            conv.last_cuts = []
            if len(data) > MAX_FILE_BYTES:  # cut the longest texts, marked, to fit
                conv.last_cuts, data = fit(conv, MAX_FILE_BYTES, _encode, data)
            if len(data) > MAX_FILE_BYTES:
                raise StoreError(
                    f"{_quoted(conv.title)} is too large to save "
                    f"({len(data) // (1024 * 1024)} MiB; the limit is "
                    f"{MAX_FILE_BYTES // (1024 * 1024)} MiB): export it and continue in "
                    "a new conversation."
                )
            atomic_write(path, data)
        except BaseException:
            conv.revision = previous
            raise
        conv.disk_stamp = _stamp(path)
        conv.mark_saved()

    def save_as_new(self, conv: Conversation) -> Path:
        """Save ``conv`` under a fresh id, e.g. after :class:`ConversationGoneError`."""
        conv.forget_saved()
        conv.id = self._fresh_id(conv.name)
        conv.revision = 0
        return self.save(conv)

    def delete(self, conv_id: str) -> Path:
        """Move a conversation to ``sessions/.trash`` (kept, not destroyed)."""
        path = self.path_for(conv_id)
        if not os.path.lexists(path):
            raise NotFoundError(f"No conversation {conv_id!r}.")
        trash = self.folder / ".trash"
        target = trash / f"{conv_id}-{new_id(4)}{SUFFIX}"
        with disk_errors(f"move {conv_id!r} to the trash in", trash):
            ensure_dir(trash)
            with file_lock(self._lock_path(conv_id)):
                if not os.path.lexists(path):
                    raise NotFoundError(f"No conversation {conv_id!r}.")
                move(path, target)
        return target

    # -- the trash ---------------------------------------------------------------------
    def trashed(self, limit: int = 500) -> tuple[list[TrashedInfo], list[Problem]]:
        """The deleted conversations that can be restored (newest deletion first), and
        the files in the trash that cannot be read, with the reason."""
        trash = self.folder / ".trash"
        try:
            entries = [e for e in os.scandir(trash) if e.name.endswith(SUFFIX)]
        except OSError:
            return [], []
        found: list[TrashedInfo] = []
        problems: list[Problem] = []
        entries.sort(key=lambda e: _mtime(e), reverse=True)
        for entry in entries[:limit]:
            original = _trashed_id(entry.name)
            try:
                conv = self._read(Path(entry.path), original)
            except StoreError as exc:
                problems.append(Problem(entry.path, getattr(exc, "reason", str(exc))))
                continue
            deleted = datetime.fromtimestamp(_mtime(entry), UTC).isoformat(timespec="seconds")
            found.append(TrashedInfo(entry.name, original, conv.title, conv.name, deleted))
        return found, problems

    def restore(self, trash_name: str) -> str:
        """Move a deleted conversation back from the trash; the id it has again (a new
        one if its old id was taken meanwhile). Raises :class:`NotFoundError` or
        :class:`DiskError`."""
        if "/" in trash_name or trash_name.startswith(".") or not trash_name.endswith(SUFFIX):
            raise NotFoundError(f"No deleted conversation {trash_name!r}.")
        source = self.folder / ".trash" / trash_name
        original = _trashed_id(trash_name)
        conv = self._read(source, original)  # it must read, or it stays in the trash
        with disk_errors(f"restore {_quoted(conv.title)} to", self.folder):
            self._ready()
            name_taken = conv.name is not None and self.find_by_name(conv.name) is not None
            with file_lock(self._lock_path(original)):
                back = not name_taken and not os.path.lexists(self.path_for(original))
                if back:
                    move(source, self.path_for(original))
            if back:
                self._update_index_entry(self.load(original), self.path_for(original))
                return original
            # its id or its name is in use now: it comes back as a new conversation
            if name_taken and conv.name is not None:
                conv.name = self._free_name(conv.name)
            self.save_as_new(conv)
            os.unlink(source)
        return conv.id

    def rename(self, conv_id: str, title: str) -> Conversation:
        conv = self.load(conv_id)
        conv.title = title.strip() or conv.title
        conv.touch()
        self.save(conv)
        return conv

    def import_conversation(self, conv: Conversation) -> Conversation:
        """Save an imported conversation under a fresh id (never over an existing one).
        A name already in use gets a number: ``name (2)``."""
        if conv.name is not None:
            conv.name = self._free_name(conv.name)
        conv.forget_saved()
        conv.id = self._fresh_id(conv.name)
        conv.revision = 0
        self.save(conv)
        return conv

    def _free_name(self, name: str) -> str:
        used = {info.name for info in self.list()}
        candidate, n = name, 1
        while candidate in used:
            n += 1
            candidate = f"{name} ({n})"
        return candidate

    # -- listing -----------------------------------------------------------------------
    def _read_index(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"version": INDEX_VERSION, "files": {}}
        try:
            data = json.loads(read_file(self.folder / INDEX_NAME, MAX_INDEX_BYTES)[0])
        except (OSError, ReadRefused, ValueError, RecursionError):
            return empty
        if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
            return empty
        files = data.get("files")
        if not isinstance(files, dict):
            return empty
        key = index_key()
        empty["files"] = {
            name: entry
            for name, entry in files.items()
            if isinstance(name, str)
            and _valid_entry(entry)
            and isinstance(entry.get("mac"), str)
            and hmac.compare_digest(entry["mac"], _signature(key, name, entry))
        }
        return empty

    def _write_index(self, data: dict[str, Any]) -> None:
        """Write the index; it is only a cache, so a failure (read-only folder, full
        disk) is ignored: listing works from the files."""
        suppressed = contextlib.suppress(OSError, ValueError, RecursionError)
        with suppressed, file_lock(self._lock_path(INDEX_NAME)):
            atomic_write(self.folder / INDEX_NAME, json.dumps(data, separators=(",", ":")))

    def _update_index_entry(self, conv: Conversation, path: Path) -> None:
        with contextlib.suppress(OSError), file_lock(self._lock_path(INDEX_NAME)):
            data = self._read_index()
            info = path.stat()
            entry = {
                "size": info.st_size,
                "mtime_ns": info.st_mtime_ns,
                "info": _index_info(_info(conv, path)),
            }
            data["files"][path.name] = _sign(index_key(), path.name, entry)
            atomic_write(self.folder / INDEX_NAME, json.dumps(data, separators=(",", ":")))

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
        written: dict[str, int] = {}  # path -> mtime_ns: the newer of two in one second
        try:
            with os.scandir(self.folder) as iterator:
                entries = list(iterator)
        except OSError as exc:
            reason = f"could not be read ({describe_os_error(exc, self.folder)})"
            return [], [Problem(str(self.folder), reason)]
        for entry in entries:
            name = entry.name
            if not name.endswith(SUFFIX) or name.startswith("."):
                continue
            stem = name[: -len(SUFFIX)]
            try:
                info = entry.stat()
            except OSError as exc:
                problems.append(
                    Problem(entry.path, f"could not be read ({describe_os_error(exc)})")
                )
                continue
            seen.add(name)
            written[entry.path] = info.st_mtime_ns
            cached = files.get(name)
            if (
                cached is not None
                and cached["size"] == info.st_size
                and cached["mtime_ns"] == info.st_mtime_ns
            ):
                if "problem" in cached:
                    problems.append(Problem(entry.path, cached["problem"][:500]))
                    continue
                found = _cached_info(cached, stem, entry.path)
                if found is not None:
                    infos.append(found)
                    continue
            record: dict[str, Any] = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
            try:
                conv = self._read(Path(entry.path), stem)
            except CorruptSessionError as exc:
                record["problem"] = exc.reason
                problems.append(Problem(entry.path, exc.reason))
            except StoreError:
                continue  # vanished meanwhile
            else:
                found = _info(conv, Path(entry.path))
                record["info"] = _index_info(found)
                infos.append(found)
            files[name] = _sign(index_key(), name, record)
            changed = True
        for name in list(files):
            if name not in seen:
                del files[name]
                changed = True
        if changed:
            self._write_index(data)
        # newest first; "updated" has whole seconds, so within one the file written
        # last comes first (in directory order, two replies a second apart could swap)
        infos.sort(key=lambda i: (i.updated, written.get(i.path, 0)), reverse=True)
        problems.sort(key=lambda p: p.path)
        return infos, problems

    def list(self) -> list[SessionInfo]:
        return self.scan()[0]

    def rebuild_index(self) -> None:
        with contextlib.suppress(OSError):
            (self.folder / INDEX_NAME).unlink()
        self.scan()

    def most_recent(self) -> SessionInfo | None:
        infos = self.list()
        return infos[0] if infos else None

    def find_by_name(self, name: str) -> SessionInfo | None:
        """The conversation called exactly ``name`` (the newest, should two share it)."""
        return next((i for i in self.list() if i.name == name), None)

    def find(self, key: str) -> SessionInfo | None:
        """By exact name, then by id, then by a unique id prefix or unique title."""
        infos = self.list()
        for test in (lambda i: i.name == key, lambda i: i.id == key):
            found = [i for i in infos if test(i)]
            if found:
                return found[0]
        for test in (lambda i: i.id.startswith(key), lambda i: i.title == key):
            found = [i for i in infos if test(i)]
            if len(found) == 1:
                return found[0]
        return None

    def not_found(self, key: str) -> str:
        """The sentence for a ``key`` :meth:`find` did not match: a file of that name
        that cannot be read says why (a newer schema, damage), instead of "no such"."""
        stems = {key, file_stem_for_name(key)}
        for problem in self.scan()[1]:
            if Path(problem.path).stem in stems:
                return f"{problem}."
        return f"No saved conversation called {key!r}; see chat-tui --list."

    def open_or_create(self, name: str, **fields: Any) -> tuple[Conversation, bool]:
        """The conversation called exactly ``name``, or a new one with that name.

        Raises :class:`CorruptSessionError` if the file that holds a conversation of
        that name exists but cannot be read (rather than start a second one)."""
        infos, problems = self.scan()
        for info in infos:
            if info.name == name:
                return self.load(info.id), False
        own = file_stem_for_name(name) + SUFFIX
        for problem in problems:
            if Path(problem.path).name == own:
                raise CorruptSessionError(problem.path, problem.reason)
        return self.new(name=name, **fields), True

    # -- search --------------------------------------------------------------------------
    def search(self, text: str, limit: int = 200) -> list[SearchHit]:
        """Case-insensitive full-text search of every conversation's messages and title.

        A raw-bytes pre-filter skips files that cannot match; it is exact only for text
        that TOML writes literally, so queries holding quotes, backslashes, control
        characters or lone surrogates parse every file."""
        needle = text.casefold()
        if not needle:
            return []
        literal = (
            not any(c in text for c in '"\\')
            and all(c >= " " for c in text)
            and not escaping.needs_escape_in_file(text)
        )
        hits: list[SearchHit] = []
        for info in self.list():
            path = Path(info.path)
            try:
                raw = read_file(path, MAX_FILE_BYTES)[0].decode("utf-8")
            except (OSError, ReadRefused, UnicodeDecodeError):
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
