"""Crash-safe file writes and bounded reads.

Writes go to a temp file in the same folder, are fsynced, renamed over the target and
the folder is fsynced. Every operation that changes the disk first calls the fault
hook (see :func:`fault_hook`), so tests can simulate a full disk or a read-only file
system without root. These functions raise plain ``OSError``; the store turns it into
a sentence (:class:`~tui.store.errors.DiskError`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700

# (operation, path) -> None, or raise OSError. Operations: "mkdir", "write", "replace",
# "lock".
FaultHook = Callable[[str, Path], None]
_hooks: list[FaultHook] = []


@contextlib.contextmanager
def fault_hook(hook: FaultHook) -> Iterator[None]:
    """Call ``hook(operation, path)`` before every disk change made in the block; it may
    raise ``OSError(errno.ENOSPC, ...)`` and the like to simulate a disk fault."""
    _hooks.append(hook)
    try:
        yield
    finally:
        _hooks.remove(hook)


def _check(operation: str, path: Path) -> None:
    for hook in list(_hooks):
        hook(operation, path)


def ensure_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents with mode 0700. A folder that already
    exists keeps its mode (a shared 1777 folder keeps its sticky bit)."""
    path = Path(path)
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        if current.exists() or current.is_symlink():
            # a file (or a dangling link) where a folder should be: let mkdir say so
            break
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        _check("mkdir", folder)
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            if folder.is_dir():
                continue  # created by someone else meanwhile
            raise
        with contextlib.suppress(OSError):  # exactly 0700, whatever the umask
            os.chmod(folder, DIR_MODE)
    if not path.is_dir():
        _check("mkdir", path)
        os.mkdir(path, DIR_MODE)  # raises FileExistsError / NotADirectoryError
    return path


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash at any point leaves either the old
    file or the new one, never a mix."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    folder = path.parent
    _check("write", path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        _check("replace", path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def move(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` (same file system), durably."""
    _check("replace", target)
    os.replace(source, target)
    fsync_dir(Path(target).parent)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) held for the duration of the block. The lock
    file's folder is created if it is missing."""
    import fcntl

    path = Path(path)
    ensure_dir(path.parent)
    _check("lock", path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class ReadRefused(Exception):
    """A file :func:`read_bounded` will not read; ``reason`` is a short phrase."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _size_words(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MiB" if size >= 1024 * 1024 else f"{size} bytes"


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see :func:`read_file`)."""
    return read_file(path, limit)[0]


def read_file(path: Path, limit: int) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file of at most ``limit`` bytes, and its ``fstat``.

    Never blocks on a FIFO, never reads a device or a file larger than ``limit`` (the
    size is checked before reading, and reading stops at ``limit + 1`` bytes in case
    the file grows). Raises ``FileNotFoundError``, ``OSError``, or
    :class:`ReadRefused` with the reason."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ReadRefused("is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise ReadRefused("is not a regular file")
        if info.st_size > limit:
            raise ReadRefused(
                f"is too large to open ({_size_words(info.st_size)}; "
                f"the limit is {_size_words(limit)})"
            )
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise ReadRefused(f"is too large to open (the limit is {_size_words(limit)})")
        return b"".join(chunks), info
    finally:
        os.close(fd)
