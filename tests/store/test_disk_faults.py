"""Disk faults are one sentence (what, where, why) and lose nothing: every write path
turns an OSError into DiskError. Faults are injected at the atomic-write layer (no
root needed), plus real file-in-the-way cases."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.store.helpers import add_healthy, run_cli
from tui.store import DiskError, SessionStore, StoreError
from tui.store import export as exporter
from tui.store.atomic import ensure_dir, fault_hook, file_lock


def fail(code: int, operations: tuple[str, ...] = ("write",), match: str = "") -> Callable:
    def hook(operation: str, path: Path) -> None:
        if operation in operations and match in str(path):
            raise OSError(code, os.strerror(code), str(path))

    return hook


def one_sentence(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text.endswith(".") and text[0].isupper(), text
    return text


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "no space left on device"),
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
        (errno.EDQUOT, "disk quota exceeded"),
    ],
)
def test_a_failing_save_is_one_sentence_and_keeps_everything(
    store: SessionStore, code: int, words: str
) -> None:
    conv = add_healthy(store)
    path = store.path_for(conv.id)
    before, revision = path.read_bytes(), conv.revision
    conv.append("user", "this must not be lost")
    with fault_hook(fail(code)), pytest.raises(DiskError) as raised:
        store.save(conv)
    assert one_sentence(raised.value) == f"Could not save '{conv.title}' to {path}: {words}."
    assert raised.value.cause.errno == code
    assert path.read_bytes() == before and leftovers(store.folder) == []
    assert conv.revision == revision and conv.transcript[-1].content == "this must not be lost"
    store.save(conv)  # the next save, on a healthy disk, keeps it
    assert store.load(conv.id).transcript[-1].content == "this must not be lost"


def test_a_fault_while_renaming_the_temp_file(store: SessionStore) -> None:
    conv = add_healthy(store)
    before = store.path_for(conv.id).read_bytes()
    with fault_hook(fail(errno.EIO, ("replace",))), pytest.raises(DiskError, match="input/output"):
        store.rename(conv.id, "new title")
    assert store.path_for(conv.id).read_bytes() == before and leftovers(store.folder) == []


def test_creating_the_folders_on_a_read_only_disk(store: SessionStore) -> None:
    conv = store.new(title="first")
    conv.append("user", "x")
    with fault_hook(fail(errno.EROFS, ("mkdir",))), pytest.raises(DiskError) as raised:
        store.save(conv)
    assert one_sentence(raised.value).endswith(": read-only file system.")
    assert not store.root.exists()


def test_delete_to_the_trash(store: SessionStore) -> None:
    conv = add_healthy(store)
    with fault_hook(fail(errno.EROFS, ("replace",))), pytest.raises(DiskError) as raised:
        store.delete(conv.id)
    text = one_sentence(raised.value)
    assert text.startswith(f"Could not move '{conv.id}' to the trash in {store.folder / '.trash'}")
    assert store.path_for(conv.id).exists()
    (store.folder / ".trash").rmdir()
    (store.folder / ".trash").write_text("a file where the trash folder goes")
    with pytest.raises(DiskError, match=r"\.trash is a file, not a folder\.$"):
        store.delete(conv.id)
    assert store.path_for(conv.id).exists()


def test_import_on_a_full_disk(store: SessionStore, tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_text('[{"role": "user", "content": "imported"}]')
    with fault_hook(fail(errno.ENOSPC)), pytest.raises(DiskError, match="no space left"):
        store.import_conversation(exporter.import_file(source))
    with fault_hook(fail(errno.ENOSPC)):
        code, out, err = run_cli("--data-dir", str(store.root), "--import", str(source))
    assert code == 1 and out == ""
    assert err.startswith("chat-tui: Could not save 'imported' to ") and err.count("\n") == 1
    assert err.endswith(": no space left on device.\n")


def test_the_index_is_a_cache_its_faults_do_not_fail_a_save(store: SessionStore) -> None:
    conv = add_healthy(store)
    conv.append("user", "more")
    with fault_hook(fail(errno.ENOSPC, ("write", "lock"), ".index")):
        store.save(conv)
        assert [i.messages for i in store.list()] == [3]
    assert store.load(conv.id).transcript[-1].content == "more"


def test_export_to_a_folder(store: SessionStore, tmp_path: Path) -> None:
    conv = add_healthy(store)
    paths = exporter.export_to_folder(conv, tmp_path / "new" / "exports")
    assert [p.name for p in paths] == [f"{conv.id}.md", f"{conv.id}.json"]
    assert "general kenobi" in paths[0].read_text()
    assert stat.S_IMODE((tmp_path / "new" / "exports").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    with fault_hook(fail(errno.EROFS)), pytest.raises(DiskError) as raised:
        exporter.export_to_folder(conv, tmp_path / "elsewhere", ["json"])
    assert one_sentence(raised.value) == (
        f"Could not export '{conv.title}' to {tmp_path / 'elsewhere'}: read-only file system."
    )
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    for target in (blocker, blocker / "below"):
        with pytest.raises(DiskError) as raised:
            exporter.export_to_folder(conv, target)
        assert one_sentence(raised.value).endswith(f": {blocker} is a file, not a folder.")
    with pytest.raises(StoreError, match="Unknown export format"):
        exporter.export_to_folder(conv, tmp_path / "x", ["pdf"])


def test_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    store = SessionStore(blocker)
    conv = store.new(title="t")
    conv.append("user", "x")
    with pytest.raises(DiskError) as raised:
        store.save(conv)
    assert one_sentence(raised.value) == (
        f"Could not save 't' to {blocker}/sessions/{conv.id}.toml: "
        f"{blocker} is a file, not a folder."
    )
    assert store.list() == []
    code, out, err = run_cli("--data-dir", str(blocker), "--list")
    assert code == 0 and out.startswith("No saved conversations") and err == ""
    assert blocker.read_text() == "not a folder"


def test_sessions_folder_or_locks_that_are_files(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "data")
    add_healthy(store)
    locks = store.folder / ".locks"
    for child in locks.iterdir():
        child.unlink()
    locks.rmdir()
    locks.write_text("in the way")
    conv = store.load(store.list()[0].id)
    conv.append("user", "x")
    with pytest.raises(DiskError, match=r"\.locks is a file, not a folder\.$"):
        store.save(conv)
    assert len(store.list()) == 1  # reading still works


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through 0500 folders")
def test_a_read_only_folder(store: SessionStore) -> None:
    conv = add_healthy(store)
    conv.append("user", "x")
    store.folder.chmod(0o500)
    try:
        with pytest.raises(DiskError, match="permission denied"):
            store.save(conv)
    finally:
        store.folder.chmod(0o700)


def test_folders_are_created_0700_and_existing_ones_keep_their_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    store = SessionStore(shared)
    add_healthy(store)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # the sticky bit stays
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    old_umask = os.umask(0o022)
    try:
        made = ensure_dir(tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old_umask)
    for folder in (made, made.parent, made.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    open_folder = tmp_path / "open"
    open_folder.mkdir(mode=0o755)
    open_folder.chmod(0o755)
    ensure_dir(open_folder)
    assert stat.S_IMODE(open_folder.stat().st_mode) == 0o755


def test_file_lock_makes_its_folder(tmp_path: Path) -> None:
    with file_lock(tmp_path / "missing" / "folder" / "x.lock"):
        assert (tmp_path / "missing" / "folder" / "x.lock").exists()
