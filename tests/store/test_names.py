"""Names map one-to-one: distinct ``--session`` names never share a file, any script
is allowed, and conversations saved under the old slug scheme are still found."""

from __future__ import annotations

import pytest

from tui.store import SessionStore, file_stem_for_name

PUNCTUATION = ["my chat", "my-chat", "my_chat", "my chat!", "my.chat", "My Chat", " my chat"]
SCRIPTS = [
    "日本語",
    "日本語の会話",
    "会话",
    "會話",
    "русский чат",
    "русский-чат",
    "عربى",
    "🙂",
    "🙃",
]
ODD = ["../../etc/passwd", "a/b", "\x1b]0;title\x07", "x\ud800", "-", ".", "..", "x" * 1000]


def create_each(store: SessionStore, names: list[str]) -> dict[str, str]:
    ids = {}
    for name in names:
        conv, created = store.open_or_create(name, system_prompt=f"prompt of {name}")
        assert created, name
        conv.append("user", f"I am {name}")
        store.save(conv)
        ids[name] = conv.id
    return ids


@pytest.mark.parametrize(
    "names", [PUNCTUATION, SCRIPTS, ODD], ids=["punctuation", "scripts", "odd"]
)
def test_distinct_names_stay_apart(store: SessionStore, names: list[str]) -> None:
    ids = create_each(store, names)
    assert len(set(ids.values())) == len(names)
    assert len(list(store.folder.glob("*.toml"))) == len(names)
    for name in names:
        conv, created = store.open_or_create(name)
        assert not created and conv.id == ids[name]
        assert conv.name == name and conv.system_prompt == f"prompt of {name}"
        assert [m.content for m in conv.transcript] == [f"I am {name}"]
        assert store.find(name).id == ids[name]


def test_file_names_are_readable_safe_and_short() -> None:
    assert file_stem_for_name("日本語の会話").startswith("日本語の会話-")
    assert file_stem_for_name("русский чат").startswith("русский-чат-")
    assert file_stem_for_name("my chat!").startswith("my-chat-")
    for name in PUNCTUATION + SCRIPTS + ODD:
        stem = file_stem_for_name(name)
        assert "/" not in stem and not stem.startswith(".") and "\x1b" not in stem
        assert len((stem + ".toml").encode()) < 200
        stem.encode("utf-8")  # no surrogates in file names
    assert file_stem_for_name("!!!").startswith("conversation-")


def test_old_slug_files_are_found_by_their_stored_name(store: SessionStore) -> None:
    """An older chat-tui named the file after a slug of the name ("my chat" ->
    my-chat.toml), so "my chat" and "my-chat" shared it."""
    store.folder.mkdir(parents=True)
    (store.folder / "my-chat.toml").write_text(
        'schema_version = 2\nid = "my-chat"\nname = "my chat"\ntitle = "old"\nhead = "a"\n'
        '[[messages]]\nid = "a"\nrole = "user"\ncontent = "from the old days"\n'
    )
    conv, created = store.open_or_create("my chat")
    assert not created and conv.id == "my-chat"
    assert conv.transcript[0].content == "from the old days"
    conv.append("user", "and today")
    store.save(conv)  # saved back to the same file
    assert sorted(p.name for p in store.folder.glob("*.toml")) == ["my-chat.toml"]
    # a different name whose slug is the old file's: a conversation of its own
    other, created = store.open_or_create("my-chat")
    assert created and other.id != "my-chat"
    assert store.find("my chat").id == "my-chat"


def test_an_imported_name_that_is_taken_gets_a_number(store: SessionStore) -> None:
    first, _ = store.open_or_create("zoo")
    first.append("user", "zebras")
    store.save(first)
    copy = store.load(first.id)
    copy.forget_saved()
    store.import_conversation(copy)
    assert copy.name == "zoo (2)" and copy.id != first.id
    assert store.find("zoo").id == first.id and store.find("zoo (2)").id == copy.id
