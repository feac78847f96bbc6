"""Two writers merge instead of refusing: both sides' messages end up in the tree
(branches where both appended), scalar fields merge 3-way, and only a deleted or an
unreadable file makes a save refuse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.store.helpers import add_healthy
from tui.store import ConversationGoneError, CorruptSessionError, SessionStore

ROOT = Path(__file__).resolve().parents[2]


def two_copies(store: SessionStore):
    conv = add_healthy(store)
    return conv, store.load(conv.id), SessionStore(store.root).load(conv.id)


def test_both_exchanges_are_kept_as_branches(store: SessionStore) -> None:
    conv, mine, theirs = two_copies(store)
    fork = conv.head
    theirs.append("user", "question from the one-shot run")
    theirs.append("assistant", "answer from the one-shot run")
    store.save(theirs)
    mine.append("user", "question in the app")
    mine.append("assistant", "answer in the app")
    store.save(mine)
    report = mine.last_merge
    assert report is not None and report.count == 2
    assert report.describe() == "2 messages from another chat-tui were merged."
    on_disk = store.load(conv.id)
    assert on_disk == mine
    assert [m.content for m in on_disk.transcript][-2:] == [
        "question in the app",
        "answer in the app",
    ]
    questions = [m for m in on_disk.messages if m.parent == fork]
    assert sorted(m.content for m in questions) == [
        "question from the one-shot run",
        "question in the app",
    ]
    other = next(m for m in questions if "one-shot" in m.content)
    assert [m.content for m in on_disk.path(on_disk.leaf_of(other.id))][-2:] == [
        "question from the one-shot run",
        "answer from the one-shot run",
    ]
    assert on_disk.revision > max(conv.revision, theirs.revision)
    # saving again without news from elsewhere merges nothing
    mine.append("user", "more")
    store.save(mine)
    assert mine.last_merge is None


def test_scalar_fields_merge_three_ways(store: SessionStore) -> None:
    conv, mine, theirs = two_copies(store)
    theirs.title = "renamed elsewhere"
    theirs.settings = {"temperature": 0.2}
    theirs.system_prompt = "their prompt"
    store.save(theirs)
    mine.system_prompt = "my prompt"  # both changed it: this side's value wins
    mine.model = {"source": "org/other"}
    store.save(mine)
    on_disk = store.load(conv.id)
    assert on_disk.title == "renamed elsewhere"
    assert on_disk.settings == {"temperature": 0.2}
    assert on_disk.system_prompt == "my prompt"
    assert on_disk.model == {"source": "org/other"}
    assert mine.last_merge.fields == ["title", "settings"]
    assert mine.last_merge.kept == ["system_prompt"]
    assert mine.title == "renamed elsewhere"  # the open copy shows it too


def test_a_message_finished_elsewhere_is_taken(store: SessionStore) -> None:
    conv, mine, theirs = two_copies(store)
    reply = theirs.transcript[-1]
    reply.content += " (continued elsewhere)"
    reply.stop_reason = "eos"
    store.save(theirs)
    mine.title = "mine"
    store.save(mine)
    assert mine.transcript[-1].content == "general kenobi (continued elsewhere)"
    assert mine.last_merge.updated == [reply.id]
    # both edited the same message: this side's edit is kept
    a, b = store.load(conv.id), SessionStore(store.root).load(conv.id)
    a.transcript[-1].content = "edit A"
    b.transcript[-1].content = "edit B"
    store.save(a)
    store.save(b)
    assert store.load(conv.id).transcript[-1].content == "edit B"


def test_a_deleted_conversation_is_not_silently_recreated(store: SessionStore) -> None:
    conv, mine, _theirs = two_copies(store)
    store.delete(conv.id)
    mine.append("user", "typed after someone deleted it")
    with pytest.raises(ConversationGoneError, match=r"deleted .* save it as a new conversation"):
        store.save(mine)
    assert not store.path_for(conv.id).exists()
    path = store.save_as_new(mine)  # the caller's choice: saved again, under its name
    assert path.exists() and mine.on_disk and mine.name == "healthy chat"
    assert store.load(mine.id).transcript[-1].content == "typed after someone deleted it"


def test_a_corrupted_file_is_never_overwritten(store: SessionStore) -> None:
    conv, mine, _theirs = two_copies(store)
    path = store.path_for(conv.id)
    path.write_text("schema_version = 2\nhead = [\n")
    before = path.read_bytes()
    mine.append("user", "x")
    with pytest.raises(CorruptSessionError, match="not valid TOML"):
        store.save(mine)
    assert path.read_bytes() == before


def test_the_same_name_created_twice_at_once_is_one_conversation(store: SessionStore) -> None:
    first, created_a = store.open_or_create("shared name")
    second, created_b = SessionStore(store.root).open_or_create("shared name")
    assert created_a and created_b and first.id == second.id
    first.append("user", "from A")
    store.save(first)
    second.append("user", "from B")
    store.save(second)
    assert second.id == first.id and second.last_merge.count == 1
    (info,) = store.list()
    contents = sorted(m.content for m in store.load(info.id).messages)
    assert contents == ["from A", "from B"]


def test_a_new_unnamed_conversation_never_takes_over_an_existing_file(store: SessionStore) -> None:
    conv = add_healthy(store, name="someone")
    other = store.new()
    other.id = conv.id
    other.append("user", "mine")
    store.save(other)
    assert other.id != conv.id
    assert store.load(conv.id).transcript[0].content == "hello there, zebra"


WRITER = r"""
import sys
from tui.store import SessionStore
store = SessionStore(sys.argv[1])
conv = store.load(sys.argv[2])  # one copy, held for the whole run like an open tab
merged = 0
for number in range(int(sys.argv[4])):
    conv.append("user", f"{sys.argv[3]}-{number}")
    store.save(conv)
    merged += bool(conv.last_merge)
print(merged)
"""


def test_two_processes_appending_concurrently_lose_nothing(store: SessionStore) -> None:
    conv = add_healthy(store)
    count = 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(store.root), conv.id, tag, str(count)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in ("A", "B")
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    on_disk = store.load(conv.id)
    contents = [m.content for m in on_disk.messages]
    expected = [f"{tag}-{n}" for tag in "AB" for n in range(count)]
    assert sorted(c for c in contents if c[:2] in ("A-", "B-")) == sorted(expected)
    assert len(contents) == len(set(m.id for m in on_disk.messages)) == 2 + 2 * count
    # each process's own messages stay in order along its own branch
    for tag in "AB":
        mine = [m for m in on_disk.messages if m.content.startswith(f"{tag}-")]
        path = [m.content for m in on_disk.path(mine[-1].id) if m.content.startswith(tag)]
        assert path == [f"{tag}-{n}" for n in range(count)]
    print("merges per process:", [int(o) for o in outputs])
