"""Store errors: each names the file and the reason in one sentence."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path


class StoreError(Exception):
    pass


class CorruptSessionError(StoreError):
    """A conversation file that cannot be read, does not parse or has the wrong shape.
    It is left as is."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}; the file was left unchanged.")


class UnsupportedSchemaError(CorruptSessionError):
    """A file written by a newer chat-tui."""


class StaleWriteError(StoreError):
    """Kept for callers that still catch it: saves now merge instead of refusing."""


class ConversationGoneError(StoreError):
    """The conversation's file was deleted (or moved to the trash) by someone else since
    it was read: saving would silently bring it back, so the caller decides."""


class DiskError(StoreError):
    """A write that failed on the disk (full, read-only, no permission, a file in the
    way). The sentence says what, where and why; ``cause`` keeps the ``OSError``."""

    def __init__(self, message: str, cause: OSError | None = None) -> None:
        self.cause = cause
        super().__init__(message)


class NotFoundError(StoreError):
    pass


_WORDS = {
    errno.ENOSPC: "no space left on device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EDQUOT: "disk quota exceeded",
    errno.EIO: "input/output error",
    errno.ENAMETOOLONG: "file name too long",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.EFBIG: "file too large",
    errno.EXDEV: "it is on another file system",
    errno.EBUSY: "device or resource busy",
}


def file_in_the_way(path: Path) -> Path | None:
    """The first of ``path`` and its parents that exists but is not a folder."""
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return None if candidate.is_dir() else candidate
        except OSError:
            return None
    return None


def describe_os_error(exc: BaseException, path: Path | None = None) -> str:
    """The cause of an ``OSError`` in a few words, e.g. "no space left on device"."""
    code = getattr(exc, "errno", None)
    if code in (errno.ENOTDIR, errno.EEXIST) and path is not None:
        blocker = file_in_the_way(path)
        if blocker is not None:
            return f"{blocker} is a file, not a folder"
    if code == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if code in _WORDS:
        return _WORDS[code]
    if code:
        return os.strerror(code).lower()
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def short(value: object, limit: int = 60) -> str:
    """A value for an error sentence: repr (controls escaped), cut to ``limit``."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def label(text: str, limit: int = 60) -> str:
    """A title or name inside a sentence: one line, controls made visible."""
    from ..safe_text import one_line

    return one_line(text, limit)


@contextlib.contextmanager
def disk_errors(action: str, where: Path | str) -> Iterator[None]:
    """Turn an ``OSError`` in the block into a :class:`DiskError` that reads
    "Could not <action> <where>: <cause>." (e.g. "Could not save 'Title' to
    /x/y.toml: no space left on device.")."""
    try:
        yield
    except StoreError:
        raise
    except OSError as exc:
        filename = getattr(exc, "filename", None)
        probe = Path(os.fsdecode(filename)) if filename else Path(where)
        cause = describe_os_error(exc, probe)
        raise DiskError(f"Could not {action} {label(str(where), 200)}: {cause}.", exc) from None
