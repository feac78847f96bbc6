"""Hostile files break nothing but themselves: any bytes, any TOML shape, any index
content, FIFOs, folders and huge files in the sessions folder are reported with a
reason, never change, and never stop the healthy conversations from working."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.store.helpers import HEALTHY_NAME, add_healthy, finishes, run_cli, snapshot_files
from tui.store import ChatMessage, Conversation, CorruptSessionError, SessionStore, codec
from tui.store.store import INDEX_VERSION

V2 = 'schema_version = 2\nid = "x"\n'
MSG = '[[messages]]\nid = "{id}"\nrole = "user"\ncontent = "hi"\n'


def msg(mid: str, parent: str | None = None, extra: str = "") -> str:
    text = MSG.format(id=mid)
    if parent is not None:
        text += f'parent = "{parent}"\n'
    return text + extra


HOSTILE: dict[str, bytes | str] = {
    "deep_array": "schema_version = 2\na = " + "[" * 100_000 + "]" * 100_000 + "\n",
    "deep_inline_table": "a = " + "{b = " * 50_000 + "1" + "}" * 50_000 + "\n",
    "head_is_a_list": V2 + 'head = ["a"]\n' + msg("a"),
    "head_is_a_number": V2 + "head = 5\n" + msg("a"),
    "head_is_a_table": V2 + "[head]\nx = 1\n",
    "dangling_head": V2 + 'head = "zz"\n' + msg("a"),
    "schema1_messages_number": 'schema_version = 1\nid = "x"\nmessages = 5\n',
    "schema1_messages_text": 'schema_version = 1\nid = "x"\nmessages = "nope"\n',
    "schema1_messages_table": 'schema_version = 1\nid = "x"\n[messages]\na = 1\n',
    "schema1_message_ids_lists": 'schema_version = 1\nid = "x"\n[[messages]]\nid = [1]\n'
    'role = "user"\ncontent = "a"\n[[messages]]\nrole = "user"\ncontent = "b"\n',
    "schema2_messages_strings": V2 + 'messages = ["a", "b"]\n',
    "schema_version_bool": 'schema_version = true\nid = "x"\n',
    "schema_version_text": 'schema_version = "2"\nid = "x"\n',
    "schema_version_future": 'schema_version = 99\nid = "x"\n',
    "id_is_a_list": "schema_version = 2\nid = [1]\n",
    "no_id": "schema_version = 2\n",
    "title_is_a_number": V2 + "title = 5\n",
    "name_is_a_list": V2 + 'name = ["a"]\n',
    "system_prompt_is_a_table": V2 + "[system_prompt]\na = 1\n",
    "revision_negative": V2 + "revision = -1\n",
    "revision_bool": V2 + "revision = true\n",
    "revision_huge": V2 + "revision = " + "9" * 40 + "\n",
    "huge_integer": V2 + "x = " + "1" * 5000 + "\n",
    "created_is_a_date": V2 + "created = 1979-05-27\n",
    "created_is_a_time": V2 + "created = 07:32:00\n",
    "created_is_a_list": V2 + "created = [1]\n",
    "model_not_a_table": V2 + "model = 5\n",
    "model_nested_table": V2 + "[model]\nsource = 'm'\n[model.inner]\nx = 1\n",
    "model_null_like": V2 + "[model]\nsource = []\nx = [[1]]\n",
    "settings_nested_list": V2 + "[settings]\nbad_words_ids = [[1, 2]]\n",
    "settings_inline_table": V2 + "[settings]\nx = {a = 1}\n",
    "settings_datetime": V2 + "[settings]\nx = 1979-05-27T07:32:00Z\n",
    "settings_list_of_tables": V2 + "[[settings.x]]\na = 1\n",
    "escaped_not_a_table": V2 + "escaped = 5\n",
    "escaped_not_text": V2 + "[escaped]\ntitle = 5\n",
    "escaped_bad_json": V2 + '[escaped]\nsettings = "{"\n',
    "escaped_settings_number": V2 + '[escaped]\nsettings = "5"\n',
    "escaped_model_null": V2 + '[escaped]\nmodel = "null"\n',
    "escaped_deep_json": V2 + '[escaped]\nsettings = "' + "[" * 100_000 + '"\n',
    "escaped_settings_too_deep": V2 + '[escaped]\nsettings = "{\\"a\\": [[[[[[[[[[1]]]]]]]]]]}"\n',
    "escaped_settings_list": V2 + '[escaped]\nsettings = "[1]"\n',
    "message_not_a_table": V2 + "messages = [1]\n",
    "message_bad_role": V2 + '[[messages]]\nid = "a"\nrole = "robot"\ncontent = "hi"\n',
    "message_role_list": V2 + '[[messages]]\nid = "a"\nrole = ["user"]\ncontent = "hi"\n',
    "message_no_content": V2 + '[[messages]]\nid = "a"\nrole = "user"\n',
    "message_content_list": V2 + '[[messages]]\nid = "a"\nrole = "user"\ncontent = ["x"]\n',
    "message_id_list": V2 + '[[messages]]\nid = [1]\nrole = "user"\ncontent = "x"\n',
    "message_id_with_escape": V2 + '[[messages]]\nid = "\\u001b[2J"\nrole = "user"\n'
    'content = "x"\n',
    "message_parent_list": V2 + msg("a", extra='parent = ["b"]\n'),
    "message_parent_missing": V2 + msg("a", "zz"),
    "message_time_text": V2 + msg("a", extra='time = "yesterday"\n'),
    "message_time_huge_text": V2 + msg("a", extra=f'time = "{"9" * 100_000}"\n'),
    "message_tokens_text": V2 + msg("a", extra='prompt_tokens = "many"\n'),
    "message_tokens_negative": V2 + msg("a", extra="new_tokens = -5\n"),
    "message_tokens_bool": V2 + msg("a", extra="new_tokens = true\n"),
    "message_speed_text": V2 + msg("a", extra='tokens_per_second = "fast"\n'),
    "message_stop_reason_list": V2 + msg("a", extra="stop_reason = [1]\n"),
    "message_escaped_number": V2 + msg("a", extra="escaped = {content = 5}\n"),
    "message_escaped_list": V2 + msg("a", extra="escaped = [1]\n"),
    "cycle_of_two": V2 + 'head = "a"\n' + msg("a", "b") + msg("b", "a"),
    "cycle_of_one": V2 + 'head = "a"\n' + msg("a", "a"),
    "long_cycle": V2 + "".join(msg(f"m{i}", f"m{(i + 1) % 500}") for i in range(500)),
    "not_toml": "title = \n",
    "empty": "",
    "not_utf8": b"\xff\xfe\x00garbage",
    "nul_bytes": b"\x00" * 100,
    "utf8_bom": "\ufeffschema_version = 2\n",
    "binary_noise": bytes(range(256)) * 40,
}


def as_bytes(body: bytes | str) -> bytes:
    return body if isinstance(body, bytes) else body.encode("utf-8")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_hostile_file_raises_only_corrupt_session_error(name: str) -> None:
    data = as_bytes(HOSTILE[name])
    started = time.monotonic()
    with pytest.raises(CorruptSessionError) as raised:
        finishes(lambda: codec.loads_bytes(data, f"{name}.toml"))
    assert raised.value.reason
    assert str(raised.value) == f"{name}.toml: {raised.value.reason}; the file was left unchanged."
    assert len(raised.value.reason) < 300  # a reason, not a dump of the file
    assert time.monotonic() - started < 20


def test_reasons_say_what_is_wrong() -> None:
    def reason(name: str) -> str:
        with pytest.raises(CorruptSessionError) as raised:
            codec.loads_bytes(as_bytes(HOSTILE[name]), name)
        return raised.value.reason

    assert reason("deep_array") == "nested too deeply"
    assert reason("deep_inline_table") == "nested too deeply"
    assert reason("cycle_of_two") == "messages form a cycle"
    assert reason("cycle_of_one") == "messages form a cycle"
    assert reason("long_cycle") == "messages form a cycle"
    assert reason("head_is_a_list") == "'head' must be a message id"
    assert reason("schema1_messages_number") == "'messages' must be a list of tables"
    assert reason("settings_nested_list").startswith("'settings.bad_words_ids' must be a value")
    assert reason("model_nested_table").startswith("'model.inner' must be a value")
    assert reason("not_utf8") == "not UTF-8 text"
    assert "newer" in reason("schema_version_future")


def test_a_deep_nesting_is_refused_quickly() -> None:
    data = as_bytes(HOSTILE["deep_array"])
    started = time.monotonic()
    with pytest.raises(CorruptSessionError, match="nested too deeply"):
        codec.loads_bytes(data)
    assert time.monotonic() - started < 10  # generous: it takes milliseconds


def test_tree_walks_are_bounded_even_on_a_cycle() -> None:
    """The codec refuses cycles, but a conversation built in memory may still hold one:
    no walk may spin."""
    conv = Conversation(id="c")
    conv.messages = [
        ChatMessage("user", "a", id="a", parent="c"),
        ChatMessage("assistant", "b", id="b", parent="a"),
        ChatMessage("user", "c", id="c", parent="b"),
    ]
    conv.head = "a"

    def walk() -> None:
        assert {m.id for m in conv.path()} == {"a", "b", "c"}
        assert len(conv.transcript) == 3 and conv.message_count == 3
        assert conv.leaf_of("a") in {"a", "b", "c"}
        assert [m.id for m in conv.siblings("b")] == ["b"]
        conv.switch_to("b")
        assert len(conv.chat_messages()) == 3

    finishes(walk, 10)


def place_hostile_files(folder: Path) -> dict[Path, bytes]:
    for name, body in HOSTILE.items():
        (folder / f"{name}.toml").write_bytes(as_bytes(body))
    return snapshot_files(folder)


def test_hostile_files_beside_a_healthy_one(store: SessionStore) -> None:
    healthy = add_healthy(store)
    originals = place_hostile_files(store.folder)
    del originals[store.path_for(healthy.id)]
    for _round in range(2):  # parsed, then from the index: same answers
        infos, problems = finishes(store.scan)
        assert [i.id for i in infos] == [healthy.id]
        assert {Path(p.path).stem for p in problems} == set(HOSTILE)
        assert all(p.reason for p in problems)
    assert store.find(HEALTHY_NAME).id == healthy.id
    assert store.most_recent().id == healthy.id
    conv, created = store.open_or_create(HEALTHY_NAME)
    assert not created and conv.id == healthy.id
    conv.append("user", "still works")
    store.save(conv)
    fresh, created = store.open_or_create("a new one")
    assert created
    store.save(fresh)
    assert [h.info.id for h in store.search("zebra")] == [healthy.id]

    code, out, err = run_cli("--data-dir", str(store.root), "--list")
    assert code == 0 and err == ""
    assert out.count("unreadable: ") == len(HOSTILE)
    code, out, _ = run_cli("--data-dir", str(store.root), "--export", HEALTHY_NAME)
    assert code == 0 and "general kenobi" in out and "still works" in out
    code, out, _ = run_cli(
        "--data-dir", str(store.root), "--export", HEALTHY_NAME, "--format", "json"
    )
    assert code == 0 and json.loads(out)["messages"][0]["content"] == "hello there, zebra"
    code, out, _ = run_cli("--data-dir", str(store.root), "--search", "zebra")
    assert code == 0 and out.startswith(HEALTHY_NAME)
    for path, body in originals.items():
        assert path.read_bytes() == body, path.name


def test_files_that_are_not_plain_files(store: SessionStore, tmp_path: Path) -> None:
    """A FIFO (opening it would block), a folder, a link to /dev/zero (endless) and a
    sparse file far above the size limit are reported, not read."""
    healthy = add_healthy(store)
    folder = store.folder
    os.mkfifo(folder / "fifo.toml")
    (folder / "folder.toml").mkdir()
    os.symlink("/dev/zero", folder / "zero.toml")
    os.symlink(tmp_path / "nowhere", folder / "dangling.toml")
    with open(folder / "huge.toml", "wb") as handle:
        handle.truncate(4 * 1024**3)  # 4 GiB of nothing: reading it whole would show
    with open(folder / "just_too_big.toml", "wb") as handle:
        handle.truncate(16 * 1024 * 1024 + 1)
    infos, problems = finishes(store.scan)
    assert [i.id for i in infos] == [healthy.id]
    reasons = {Path(p.path).name: p.reason for p in problems}
    assert reasons["fifo.toml"] == "is not a regular file"
    assert reasons["folder.toml"] == "is a folder, not a file"
    assert reasons["zero.toml"] == "is not a regular file"
    assert reasons["huge.toml"].startswith("is too large to open (4096 MiB")
    assert reasons["just_too_big.toml"].startswith("is too large to open (16 MiB")
    assert "16 MiB" in reasons["just_too_big.toml"]
    assert "dangling.toml" in reasons
    for key in ("fifo", "huge", "folder"):
        with pytest.raises(CorruptSessionError):
            finishes(lambda key=key: store.load(key))
    code, out, _ = finishes(lambda: run_cli("--data-dir", str(store.root), "--list"))
    assert code == 0 and out.count("unreadable: ") == 6
    assert (folder / "huge.toml").stat().st_size == 4 * 1024**3


def test_a_sessions_folder_without_locks_or_index(store: SessionStore) -> None:
    healthy = add_healthy(store)
    shutil.rmtree(store.folder / ".locks")
    (store.folder / ".index.json").unlink()
    assert [i.id for i in store.list()] == [healthy.id]
    conv = store.load(healthy.id)
    conv.append("user", "after the copy")
    store.save(conv)  # the lock folder is made again
    assert (store.folder / ".locks").is_dir()
    assert json.loads((store.folder / ".index.json").read_text())["version"] == INDEX_VERSION
    shutil.rmtree(store.folder / ".locks")
    assert store.delete(healthy.id).exists()


def index_with(store: SessionStore, entry: object, name: str | None = None) -> None:
    (store.folder / ".index.json").write_text(
        json.dumps({"version": INDEX_VERSION, "files": {name: entry}})
        if name
        else json.dumps(entry)
    )


def test_any_index_content_falls_back_to_the_files(store: SessionStore) -> None:
    healthy = add_healthy(store)
    path = store.path_for(healthy.id)
    info = path.stat()
    right = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
    good_info = json.loads((store.folder / ".index.json").read_text())["files"][path.name]["info"]
    wrong_shapes = [
        None,
        5,
        "text",
        [],
        {**right},
        {**right, "info": 5},
        {**right, "info": []},
        {**right, "info": {}},
        {**right, "info": {**good_info, "title": 5}},
        {**right, "info": {**good_info, "name": ["x"]}},
        {**right, "info": {**good_info, "messages": "2"}},
        {**right, "info": {**good_info, "messages": -1}},
        {**right, "info": {**good_info, "messages": True}},
        {**right, "problem": 5},
        {"size": "1", "mtime_ns": right["mtime_ns"], "info": good_info},
        {"size": True, "mtime_ns": right["mtime_ns"], "info": good_info},
    ]
    for entry in wrong_shapes:
        index_with(store, entry, path.name)
        (found,) = store.list()
        assert (found.id, found.title, found.messages) == (healthy.id, healthy.title, 2), entry
    whole_files = [
        [],
        5,
        "x",
        {"version": INDEX_VERSION + 1, "files": {}},
        {"version": INDEX_VERSION, "files": []},
        {"version": INDEX_VERSION, "files": {"5": 5}},
        {"version": str(INDEX_VERSION)},
    ]
    for document in whole_files:
        index_with(store, document)
        assert [i.id for i in store.list()] == [healthy.id], document
    (store.folder / ".index.json").write_text("[" * 100_000)
    assert [i.id for i in store.list()] == [healthy.id]
    (store.folder / ".index.json").write_bytes(b"\xff\xfe")
    assert [i.id for i in store.list()] == [healthy.id]
    # a cache entry of the right shape that points elsewhere: the file decides the path
    index_with(store, {**right, "info": {**good_info, "path": "/etc/passwd", "id": "x"}}, path.name)
    (found,) = store.list()
    assert (found.path, found.id) == (str(path), healthy.id)


def test_an_index_that_is_not_a_file(store: SessionStore) -> None:
    healthy = add_healthy(store)
    (store.folder / ".index.json").unlink()
    os.mkfifo(store.folder / ".index.json")
    assert [i.id for i in finishes(store.list)] == [healthy.id]
    (store.folder / ".index.json").unlink()
    (store.folder / ".index.json").mkdir()
    assert [i.id for i in finishes(store.list)] == [healthy.id]
    conv = store.load(healthy.id)
    conv.append("user", "more")
    store.save(conv)  # the index cannot be written: the save still succeeds
    assert store.load(healthy.id).transcript[-1].content == "more"


def test_an_unreadable_session_target_is_reported_not_duplicated(store: SessionStore) -> None:
    conv, _created = store.open_or_create("notes")
    conv.append("user", "hi")
    store.save(conv)
    path = store.path_for(conv.id)
    path.write_text("not = [valid")
    before = path.read_bytes()
    with pytest.raises(CorruptSessionError, match="not valid TOML"):
        store.open_or_create("notes")
    assert sorted(p.name for p in store.folder.glob("*.toml")) == [path.name]
    with pytest.raises(CorruptSessionError):
        store.save(conv)  # never overwrite what cannot be read
    assert path.read_bytes() == before


def test_the_largest_revision_a_read_accepts_is_never_written_past(
    store: SessionStore,
) -> None:
    """`revision = 9223372036854775807` (the largest TOML integer) was saved as one more,
    which the next read refused: the conversation was locked. It stays readable."""
    store.folder.mkdir(parents=True, exist_ok=True)
    (store.folder / "maxed.toml").write_text(
        'schema_version = 2\nid = "maxed"\nrevision = 9223372036854775807\n' + msg("a")
    )
    for word in ("one", "two"):
        conv = store.load("maxed")
        conv.append("assistant", word)
        store.save(conv)
    again = store.load("maxed")
    assert again.revision == 2**63 - 1
    assert [m.content for m in again.messages][-2:] == ["one", "two"]


def test_exporting_a_file_from_a_newer_chat_tui_says_so(store: SessionStore) -> None:
    """`--export` of a newer schema said "No saved conversation called …"."""
    store.folder.mkdir(parents=True, exist_ok=True)
    (store.folder / "future.toml").write_text('schema_version = 99\nid = "future"\n')
    for args in (("--export", "future"), ("--replay", "future")):
        code, out, err = run_cli("--data-dir", str(store.root), *args)
        assert code == 1 and out == ""
        assert "future.toml: schema_version 99 is newer" in err and "No saved" not in err
    code, _, err = run_cli("--data-dir", str(store.root), "--export", "nothing")
    assert code == 1 and "No saved conversation called 'nothing'" in err
