"""The store writes any Python str it is given, exactly; ids never collide; a
20k-message import round-trips."""

from __future__ import annotations

import itertools
import json
import time
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile import CORPUS, TERMINAL_CONTROLS
from tui.store import ChatMessage, Conversation, DuplicateIdError, SessionStore, codec
from tui.store import export as exporter
from tui.store import model as model_module

SURROGATES = ["\ud800", "\udfff", "a\ud83dz", "\udc80\udcff", "x\ud800\udc00y"]

# every code point, lone surrogates included
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


def test_a_reply_with_a_lone_surrogate_saves(store: SessionStore) -> None:
    conv = store.new()
    conv.append("user", "hi")
    reply = conv.append("assistant", "broken \ud800 reply", error="server said \udfff")
    store.save(conv)  # never UnicodeEncodeError
    loaded = store.load(conv.id)
    assert loaded.transcript[-1].content == "broken \ud800 reply"
    assert loaded.transcript[-1].error == "server said \udfff"
    assert loaded.get(reply.id) == reply


@pytest.mark.parametrize("text", SURROGATES)
def test_surrogates_round_trip_in_every_field(store: SessionStore, text: str) -> None:
    conv = store.new(
        name=f"name {text}",
        title=f"title {text}",
        system_prompt=f"system {text}",
        model={"source": f"org/m{text}", f"key{text}": "v"},
        settings={"stop_strings": [f"stop{text}", "plain"], f"x{text}": 1},
    )
    conv.append("user", text)
    conv.append("assistant", f"{text}\nline two", model=f"m{text}", stop_reason=f"s{text}")
    path = store.save(conv)
    loaded = store.load(conv.id)
    assert loaded == conv
    assert (loaded.name, loaded.title, loaded.system_prompt) == (
        conv.name,
        conv.title,
        conv.system_prompt,
    )
    assert loaded.model == conv.model and loaded.settings == conv.settings
    # the file stays readable TOML, with the text shown as U+FFFD where it cannot be held
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    assert "\ufffd" in document["title"]
    assert "escaped" in document and "escaped" in document["messages"][0]
    assert store.find(conv.name).id == conv.id


def test_nested_and_non_finite_settings_round_trip(store: SessionStore) -> None:
    settings = {
        "bad_words_ids": [[1, 2], [3]],
        "sequence_bias": {"[1, 2]": -1.5},
        "big": 2**70,
        "far": float("inf"),
        "temperature": 0.7,
    }
    conv = store.new(settings=settings)
    conv.append("user", "x")
    path = store.save(conv)
    assert store.load(conv.id).settings == settings
    visible = tomllib.loads(path.read_text())["settings"]
    assert visible["temperature"] == 0.7 and isinstance(visible["bad_words_ids"], str)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    contents=st.lists(ANY_TEXT, min_size=1, max_size=4),
    system=ANY_TEXT,
    title=ANY_TEXT,
    name=st.none() | ANY_TEXT,
    setting=ANY_TEXT,
)
def test_any_str_round_trips_property(
    contents: list[str], system: str, title: str, name: str | None, setting: str
) -> None:
    conv = Conversation(
        id="prop", title=title, name=name, system_prompt=system, settings={setting: setting}
    )
    for i, text in enumerate(contents):
        conv.append("user" if i % 2 == 0 else "assistant", text, error=text)
    text = codec.dumps(conv)
    text.encode("utf-8")  # always encodable
    back = codec.loads(text)
    assert back == conv
    assert back.settings == {setting: setting}


def test_files_carry_no_raw_controls(store: SessionStore) -> None:
    conv = store.new(title=CORPUS["osc title (BEL)"], system_prompt=CORPUS["8-bit csi"])
    for text in CORPUS.values():
        conv.append("user", text)
    conv.settings = {"stop_strings": [CORPUS["csi clear screen"], CORPUS["bidi override"]]}
    path = store.save(conv)
    raw = path.read_text(encoding="utf-8")
    assert not {c for c in raw if c in TERMINAL_CONTROLS and c != "\r"} - {"\n", "\t"}
    assert "\u202e" not in raw
    assert store.load(conv.id) == conv


# -- ids ------------------------------------------------------------------------------


def test_message_ids_are_long_and_checked_on_insert(monkeypatch: pytest.MonkeyPatch) -> None:
    conv = Conversation(id="c")
    first = conv.append("user", "a")
    assert len(first.id) == 16 and int(first.id, 16) >= 0
    # the random source repeats itself: the insert notices and draws again
    repeats = iter(["aa" * 8, "aa" * 8, "bb" * 8, "aa" * 8, "cc" * 8])
    monkeypatch.setattr(model_module.secrets, "token_hex", lambda n: next(repeats))
    a = conv.append("assistant", "b")
    b = conv.append("user", "c")
    c = conv.branch_from(b.id, "user", "c again")
    assert [a.id, b.id, c.id] == ["aa" * 8, "bb" * 8, "cc" * 8]
    with pytest.raises(DuplicateIdError):
        conv.add(ChatMessage("user", "dup", id=a.id))
    with pytest.raises(DuplicateIdError):
        conv.append("user", "dup", id=a.id)
    assert len({m.id for m in conv.messages}) == len(conv.messages)


def test_repeated_ids_written_by_an_older_version_are_renamed() -> None:
    """The birthday bug: a long 8-hex-id conversation with one id twice. Parents point
    to the nearest earlier message of that id; the file stays readable."""
    lines = ['schema_version = 2\nid = "old"\nhead = "dd"\n']
    chain = [("aa", None), ("bb", "aa"), ("aa", "bb"), ("cc", "aa"), ("dd", "cc")]
    for number, (mid, parent) in enumerate(chain):
        lines.append(f'[[messages]]\nid = "{mid}"\nrole = "user"\ncontent = "{number}"\n')
        if parent:
            lines.append(f'parent = "{parent}"\n')
    conv = codec.loads("".join(lines))
    assert [m.content for m in conv.transcript] == ["0", "1", "2", "3", "4"]
    assert len({m.id for m in conv.messages}) == 5


def test_an_import_whose_random_ids_repeat_draws_again(
    store: SessionStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import draws all its ids in one go; when the random source repeats itself (as
    a birthday collision would), every repeat is drawn again, and the file still loads."""
    monkeypatch.setattr(model_module.secrets, "token_bytes", lambda n: b"\xaa" * n)
    # the conversation's id, then the redraws (one of them a repeat too), then fresh ones
    drawn = ["c0" * 8, "aa" * 8, "01" * 8, "aa" * 8, "02" * 8, "03" * 8]
    redraws = itertools.chain(drawn, (f"{i:016x}" for i in itertools.count(1000)))
    monkeypatch.setattr(model_module.secrets, "token_hex", lambda n: next(redraws))
    chat = [{"role": "user" if i % 2 == 0 else "assistant", "content": str(i)} for i in range(4)]
    source = tmp_path / "chat.json"
    source.write_text(json.dumps({"messages": chat}))
    imported = store.import_conversation(exporter.import_file(source))
    assert [m.id for m in imported.messages] == ["aa" * 8, "01" * 8, "02" * 8, "03" * 8]
    assert store.load(imported.id).chat_messages() == chat


def test_conversation_ids_are_unique(store: SessionStore) -> None:
    ids = {store.new().id for _ in range(200)}
    assert len(ids) == 200
    first = store.new()
    first.append("user", "first")
    store.save(first)
    clash = store.new()
    clash.id = first.id  # as if two processes drew the same id
    clash.append("user", "second")
    store.save(clash)
    assert clash.id != first.id
    assert store.load(first.id).transcript[0].content == "first"
    assert store.load(clash.id).transcript[0].content == "second"


def test_a_20k_message_import_round_trips(store: SessionStore, tmp_path: Path) -> None:
    """A chain twenty times deeper than Python's recursion limit, with 20k ids that must
    all be distinct, through import, save, load, export and import again. The
    100k-message times are bench/store.py's (ids are 16 hex digits: no size the suite
    can reach makes a collision likely; forced ones are tested above)."""
    count = 20_000
    chat = [{"role": "system", "content": "be brief"}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} \u00e9"}
        for i in range(count)
    ]
    first = tmp_path / "big.json"
    first.write_text(json.dumps({"messages": chat}))
    started = time.perf_counter()
    imported = store.import_conversation(exporter.import_file(first))
    loaded = store.load(imported.id)
    assert len({m.id for m in loaded.messages}) == count
    assert loaded == imported
    second = tmp_path / "again.json"
    second.write_text(exporter.to_json(loaded), encoding="utf-8")
    again = exporter.import_file(second)
    assert again.messages == loaded.messages and again.head == loaded.head
    assert (again.title, again.system_prompt) == (loaded.title, loaded.system_prompt)
    reimported = store.import_conversation(again)
    assert reimported.id != imported.id
    assert [
        {"role": "system", "content": reimported.system_prompt}
    ] + reimported.chat_messages() == chat
    elapsed = time.perf_counter() - started
    print(f"20k-message import round trip: {elapsed:.1f} s")
