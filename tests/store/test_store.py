"""The TOML session store: round trips, migrations, corruption, stale writes, index."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui.store import (
    Conversation,
    CorruptSessionError,
    SessionStore,
    UnsupportedSchemaError,
    codec,
)
from tui.store import export as exporter
from tui.store.store import INDEX_VERSION

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / "data")


def make(store: SessionStore, *texts: str, name: str | None = None) -> Conversation:
    conv = store.new(name=name, model={"source": "default", "dtype": "fp32"})
    for i, text in enumerate(texts):
        conv.append("user" if i % 2 == 0 else "assistant", text)
    store.save(conv)
    return conv


TRICKY = [
    "quotes \" and 'single' and \"\"\"triple\"\"\" and '''triple'''",
    "backslashes \\ \\n \\u0041 \\\\",
    "carriage\rreturn and crlf\r\nline",
    "control \x00\x01\x07\x08\x0b\x0c\x1b\x1f\x7f chars",
    "planes: é 漢字 🙂 𝄞 \U0010fffd \u2028 \u0085 \ufeff",
    "\n\nleading and trailing newlines\n\n",
    "",
    'ends with quote"',
    "ends with backslash\\",
]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_text_round_trips(store: SessionStore, text: str) -> None:
    conv = make(store, text, text)
    conv.system_prompt = text
    conv.title = text or "t"
    store.save(conv)
    loaded = store.load(conv.id)
    assert [m.content for m in loaded.messages] == [text, text]
    assert loaded.system_prompt == text
    assert loaded.title == (text or "t")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    contents=st.lists(st.text(), min_size=1, max_size=4),
    system=st.text(),
    title=st.text(min_size=1),
)
def test_any_text_round_trips_property(contents: list[str], system: str, title: str) -> None:
    conv = Conversation(id="prop", title=title, system_prompt=system)
    for i, text in enumerate(contents):
        conv.append("user" if i % 2 == 0 else "assistant", text)
    back = codec.loads(codec.dumps(conv))
    assert [m.content for m in back.messages] == contents
    assert back.system_prompt == system
    assert back.title == title
    assert back.head == conv.head


def test_file_is_readable_toml_with_metadata(store: SessionStore) -> None:
    conv = store.new(model={"source": "org/model", "revision": "abc", "dtype": "bf16"})
    conv.append("user", "line one\nline two")
    conv.append(
        "assistant",
        "reply",
        model="org/model",
        prompt_tokens=12,
        new_tokens=3,
        time_to_first_token=0.25,
        tokens_per_second=30.5,
        stop_reason="eos",
    )
    path = store.save(conv)
    text = path.read_text()
    assert text.startswith("schema_version = 2\n")
    assert '"""\nline one\nline two"""' in text  # multi-line text stays readable
    loaded = store.load(conv.id)
    reply = loaded.transcript[-1]
    assert (reply.prompt_tokens, reply.new_tokens, reply.stop_reason) == (12, 3, "eos")
    assert reply.time_to_first_token == 0.25 and reply.tokens_per_second == 30.5
    assert loaded.model == {"source": "org/model", "revision": "abc", "dtype": "bf16"}


def test_permissions(store: SessionStore) -> None:
    path = make(store, "hi").id
    file = store.path_for(path)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700


def test_branches_keep_old_replies_reachable() -> None:
    conv = Conversation(id="b")
    q = conv.append("user", "question")
    first = conv.append("assistant", "first answer")
    second = conv.branch_from(first.id, "assistant", "second answer")
    assert [m.content for m in conv.transcript] == ["question", "second answer"]
    assert {m.id for m in conv.siblings(second.id)} == {first.id, second.id}
    edited = conv.branch_from(q.id, "user", "edited question")
    assert [m.content for m in conv.transcript] == ["edited question"]
    conv.switch_to(first.id)
    assert [m.content for m in conv.transcript] == ["question", "first answer"]
    back = codec.loads(codec.dumps(conv))
    assert len(back.messages) == 4 and back.head == first.id
    assert edited.id in {m.id for m in back.messages}


def test_old_schema_is_migrated(store: SessionStore) -> None:
    store._ready()
    path = store.folder / "legacy.toml"
    path.write_text(
        'schema_version = 1\nid = "legacy"\ntitle = "Old"\n'
        '[[messages]]\nrole = "user"\ncontent = "hello"\n'
        '[[messages]]\nrole = "assistant"\ncontent = "hi there"\n'
    )
    conv = store.load("legacy")
    assert [m.content for m in conv.transcript] == ["hello", "hi there"]
    conv.append("user", "more")
    store.save(conv)
    assert "schema_version = 2" in path.read_text()
    assert [m.content for m in store.load("legacy").transcript] == ["hello", "hi there", "more"]


def test_newer_schema_is_refused_and_left_alone(store: SessionStore) -> None:
    conv = make(store, "keep me")
    path = store.path_for(conv.id)
    future = path.read_text().replace("schema_version = 2", "schema_version = 99")
    path.write_text(future)
    before = path.read_bytes()
    with pytest.raises(UnsupportedSchemaError, match="newer"):
        store.load(conv.id)
    _infos, problems = store.scan()
    assert [p.path for p in problems] == [str(path)] and "newer" in problems[0].reason
    with pytest.raises(CorruptSessionError):
        store.save(conv)  # never overwrite what we cannot read
    assert path.read_bytes() == before


CORRUPT = {
    "bad_toml": "title = \n",
    "not_utf8": b"\xff\xfe\x00garbage",
    "no_messages_list": 'schema_version = 2\nid = "x"\nmessages = "nope"\n',
    "bad_role": 'schema_version = 2\nid = "x"\n[[messages]]\nid = "a"\nrole = "robot"\ncontent = "hi"\n',
    "no_version": 'id = "x"\n',
    "dangling_parent": (
        'schema_version = 2\nid = "x"\n[[messages]]\nid = "a"\nparent = "zz"\n'
        'role = "user"\ncontent = "hi"\n'
    ),
    "empty": "",
}


def test_corrupt_files_are_reported_by_name_and_left_unchanged(store: SessionStore) -> None:
    good = make(store, "good conversation")
    originals = {}
    for name, body in CORRUPT.items():
        path = store.folder / f"{name}.toml"
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
        originals[path] = path.read_bytes()
    infos, problems = store.scan()
    assert [i.id for i in infos] == [good.id]
    assert {Path(p.path).name for p in problems} == {f"{n}.toml" for n in CORRUPT}
    assert all(p.reason for p in problems)
    for _ in range(2):  # cached in the index: still reported, still unchanged
        infos, problems = store.scan()
        assert len(problems) == len(CORRUPT)
    for path, body in originals.items():
        assert path.read_bytes() == body


def test_a_stale_write_merges_instead_of_refusing(tmp_path: Path) -> None:
    a, b = SessionStore(tmp_path), SessionStore(tmp_path)
    conv = make(a, "start")
    mine, theirs = a.load(conv.id), b.load(conv.id)
    mine.append("assistant", "from process A")
    a.save(mine)
    assert mine.last_merge is None
    theirs.append("assistant", "from process B")
    b.save(theirs)  # no StaleWriteError: both replies are kept, as sibling branches
    assert theirs.last_merge is not None and theirs.last_merge.count == 1
    on_disk = a.load(conv.id)
    assert [m.content for m in on_disk.transcript] == ["start", "from process B"]
    replies = on_disk.siblings(on_disk.head)
    assert sorted(m.content for m in replies) == ["from process A", "from process B"]


WORKER = r"""
import sys
from tui.store import SessionStore
store = SessionStore(sys.argv[1])
for done in range(int(sys.argv[3])):
    conv = store.load("shared")
    conv.append("user", f"{sys.argv[2]}-{done}")
    store.save(conv)
"""


def test_two_processes_never_lose_each_others_messages(store: SessionStore) -> None:
    conv = store.new()
    conv.id = "shared"
    store.save(conv)
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(store.root), tag, "25"], cwd=ROOT)
        for tag in ("A", "B")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    contents = [m.content for m in store.load(conv.id).messages]
    assert sorted(contents) == sorted([f"{t}-{i}" for t in "AB" for i in range(25)])


def test_index_avoids_parsing_unchanged_files(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    convs = [make(store, f"conversation {i}") for i in range(5)]
    store.rebuild_index()
    calls: list[str] = []
    real = codec.loads
    monkeypatch.setattr(
        codec, "loads", lambda text, source="": calls.append(source) or real(text, source)
    )
    assert len(store.list()) == 5
    assert calls == []
    # another process edits one file: only that one is parsed again
    other = SessionStore(store.root)
    changed = other.load(convs[2].id)
    changed.title = "renamed elsewhere"
    changed.append("assistant", "x" * 50)
    codec_dumps = codec.dumps(changed)
    store.path_for(changed.id).write_text(codec_dumps)
    calls.clear()
    infos = {i.id: i for i in store.list()}
    assert infos[changed.id].title == "renamed elsewhere"
    assert calls == [str(store.path_for(changed.id))]


def test_broken_index_is_rebuilt(store: SessionStore) -> None:
    make(store, "one")
    make(store, "two")
    (store.folder / ".index.json").write_text("{broken")
    assert {i.title for i in store.list()} == {"one", "two"}
    assert json.loads((store.folder / ".index.json").read_text())["version"] == INDEX_VERSION


def test_within_one_second_the_file_written_last_is_listed_first(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Times are kept to the second; two conversations saved in one second are still
    listed newest first (by when their files were written), not in directory order."""
    from datetime import UTC, datetime

    from tui.store import model

    monkeypatch.setattr(model, "now", lambda: datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC))
    first, second = make(store, "first"), make(store, "second")
    assert first.updated == second.updated
    base = 1_800_000_000_000_000_000
    paths = {i.id: i.path for i in store.list()}

    def written(conv, offset_ms: int) -> None:
        stamp = base + offset_ms * 1_000_000
        os.utime(paths[conv.id], ns=(stamp, stamp))

    written(first, 1)
    written(second, 2)
    assert [i.id for i in store.list()] == [second.id, first.id]
    written(first, 3)
    assert [i.id for i in store.list()] == [first.id, second.id]


def test_deleted_file_leaves_the_listing(store: SessionStore) -> None:
    a, b = make(store, "one"), make(store, "two")
    assert len(store.list()) == 2
    trashed = store.delete(a.id)
    assert trashed.exists()  # moved to the trash, not destroyed
    assert [i.id for i in store.list()] == [b.id]


def test_search(store: SessionStore) -> None:
    make(store, "The capital of France is Paris", "Oui")
    make(store, 'He said "hello" to me', "ok")
    make(store, "nothing here", "no")
    hits = store.search("paris")
    assert len(hits) == 1 and "Paris" in hits[0].snippets[0]
    quoted = store.search('"hello"')
    assert len(quoted) == 1
    assert store.search("absent words") == []


def test_find_and_open_or_create(store: SessionStore) -> None:
    conv, created = store.open_or_create("my chat")
    assert created and conv.name == "my chat"
    conv.append("user", "hi")
    store.save(conv)
    again, created = store.open_or_create("my chat")
    assert not created and again.id == conv.id and again.transcript[0].content == "hi"


def test_export_markdown_and_json_round_trip(store: SessionStore, tmp_path: Path) -> None:
    conv = make(store, "What is 2+2?", "4", name="math")
    conv.system_prompt = "Be terse."
    md = exporter.to_markdown(conv)
    assert "## User\n\nWhat is 2+2?" in md and "## Assistant\n\n4" in md
    data = json.loads(exporter.to_json(conv))
    assert data["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    file = tmp_path / "export.json"
    file.write_text(exporter.to_json(conv))
    imported = store.import_conversation(exporter.import_file(file))
    assert imported.id != conv.id
    assert imported.chat_messages() == conv.chat_messages()
    assert store.load(imported.id).system_prompt == "Be terse."


def test_import_transformers_chat_history(store: SessionStore, tmp_path: Path) -> None:
    file = tmp_path / "chat_2025-01-01_10-00-00.json"
    file.write_text(
        json.dumps(
            {
                "settings": {
                    "model_id": "Qwen/Qwen2.5-0.5B-Instruct",
                    "config": {"temperature": 0.5},
                },
                "chat_history": [
                    {"role": "system", "content": "sys"},
                    {"role": "user", "content": "hello"},
                    {"role": "assistant", "content": "hi!"},
                ],
            }
        )
    )
    conv = store.import_conversation(exporter.import_file(file))
    loaded = store.load(conv.id)
    assert loaded.system_prompt == "sys"
    assert loaded.chat_messages() == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi!"},
    ]
    assert loaded.model == {"source": "Qwen/Qwen2.5-0.5B-Instruct"}
    assert loaded.settings == {"temperature": 0.5}


def test_import_rejects_unknown_json(tmp_path: Path) -> None:
    file = tmp_path / "x.json"
    file.write_text('{"foo": 1}')
    with pytest.raises(Exception, match="neither a chat-tui export"):
        exporter.import_file(file)


def test_data_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAT_TUI_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert SessionStore().folder == tmp_path / "xdg" / "chat-tui" / "sessions"
    assert SessionStore(tmp_path / "flag").folder == tmp_path / "flag" / "sessions"
    assert os.environ["XDG_DATA_HOME"] == str(tmp_path / "xdg")
