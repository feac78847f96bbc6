"""A reply's snapshot (``provenance``), label and speculative/memory stats in the
conversation file: exact round trips for any value, older files still load, hostile
tables refuse only their own file with a reason, exports carry the snapshot, merges
and sibling replies keep it."""

from __future__ import annotations

import json
import math
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile import CORPUS
from tests.store.helpers import finishes
from tui.store import Conversation, CorruptSessionError, SessionStore, codec
from tui.store import export as exporter

SNAPSHOT = {
    "format": 1,
    "model": "SmolLM2-135M-Instruct (bundled)",
    "weights": "files:0123456789abcdef",
    "dtype": "fp32",
    "device": "cpu",
    "attn_implementation": "sdpa",
    "seed": 3141592653,
    "seed_drawn": True,
    "prompt_tokens": 31,
    "prompt_sha256": "dbb77fdda62a0de2",
    "spec": {"source": "default", "dtype": "auto", "quantization": "4bit"},
    "quantization": {"method": "4bit", "quant_type": "nf4", "double_quant": False},
    "settings": {
        "do_sample": True,
        "temperature": 0.9,
        "top_k": 50,
        "max_new_tokens": 64,
        "stop_strings": ["\nUser:", "###"],
    },
    "speculative": {"prompt_lookup": 3},
    "versions": {"torch": "2.13.0+cpu", "transformers": "5.24.0", "chat-tui": "0.1.0"},
}


def compared(conv: Conversation) -> Conversation:
    user = conv.append("user", "Why is the sky blue?")
    conv.add_child(
        user.id,
        "assistant",
        "Rayleigh scattering.",
        label="@fp32",
        provenance=SNAPSHOT,
        new_tokens=5,
        acceptance_rate=0.625,
        tokens_per_forward=2.5,
        weights_bytes=538_000_000,
        peak_bytes=560_000_000,
    )
    conv.add_child(
        user.id,
        "assistant",
        "Because of scattering.",
        make_head=False,
        label="@4bit",
        provenance=dict(SNAPSHOT, dtype="fp32", seed=7),
    )
    return conv


def test_a_snapshot_round_trips_and_reads_as_toml(store: SessionStore) -> None:
    conv = compared(store.new(name="compare"))
    path = store.save(conv)
    loaded = store.load(conv.id)
    assert loaded == conv
    first, second = loaded.siblings(loaded.head)
    assert first.provenance == SNAPSHOT and first.label == "@fp32"
    assert (first.acceptance_rate, first.tokens_per_forward) == (0.625, 2.5)
    assert (first.weights_bytes, first.peak_bytes) == (538_000_000, 560_000_000)
    assert second.label == "@4bit" and second.provenance["seed"] == 7
    assert loaded.head == first.id  # make_head=False kept the first reply active
    text = path.read_text(encoding="utf-8")
    assert "provenance.settings.temperature = 0.9" in text
    assert 'provenance.versions.chat-tui = "0.1.0"' in text
    assert "escaped" not in text  # plain values are written plainly
    document = tomllib.loads(text)
    assert document["messages"][1]["provenance"] == SNAPSHOT


def test_add_child_makes_siblings(store: SessionStore) -> None:
    conv = store.new()
    user = conv.append("user", "q")
    first = conv.append("assistant", "a")
    second = conv.add_child(user.id, "assistant", "b", make_head=False)
    assert [m.id for m in conv.siblings(first.id)] == [first.id, second.id]
    assert conv.head == first.id
    third = conv.add_child(user.id, "assistant", "c")
    assert conv.head == third.id and conv.sibling_position(third.id) == (3, 3)
    with pytest.raises(KeyError):
        conv.add_child("nope", "assistant", "x")


def test_an_older_file_without_snapshots_still_loads() -> None:
    text = (
        'schema_version = 2\nid = "old"\nhead = "b"\n'
        '[[messages]]\nid = "a"\nrole = "user"\ncontent = "hi"\n'
        '[[messages]]\nid = "b"\nparent = "a"\nrole = "assistant"\ncontent = "hello"\n'
        'stop_reason = "eos"\nnew_tokens = 2\n'
    )
    conv = codec.loads(text)
    reply = conv.get("b")
    assert reply.provenance is None and reply.label is None and reply.acceptance_rate is None
    assert codec.loads(codec.dumps(conv)) == conv


AWKWARD = [
    {"weird key": "spaces", "dotted.key": 1, 'quote"key': True, "é": "é"},
    {"settings": {"stop_strings": ["\x1b[2J", "\u202e", "\x00nul"]}},
    {"model": "m\ud800", "settings": {"k\udfff": "v"}},  # lone surrogates
    {"nested": {"deep": {"deeper": [1, [2, 3]]}}},  # deeper than TOML lines hold
    {"floats": {"nan": math.nan, "inf": math.inf}},
    {"list": [1, "two", 3.0, False], "empty_list": []},
    {"big": 2**62, "negative": -5},
]


@pytest.mark.parametrize("snapshot", AWKWARD, ids=range(len(AWKWARD)))
def test_awkward_snapshots_round_trip_exactly(store: SessionStore, snapshot: dict) -> None:
    conv = store.new()
    conv.append("user", "q")
    conv.append("assistant", "a", provenance=snapshot)
    store.save(conv)
    loaded = store.load(conv.id).transcript[-1].provenance
    assert json.dumps(loaded, sort_keys=True) == json.dumps(snapshot, sort_keys=True)


def test_unwritable_parts_of_a_snapshot_are_left_out(store: SessionStore) -> None:
    conv = store.new()
    conv.append("user", "q")
    snapshot = {"": 1, "k" * 500: 2, "none": None, "empty": {}, "ok": 1, 5: "int key"}
    conv.append("assistant", "a", provenance=snapshot)
    store.save(conv)  # never an unreadable file
    assert store.load(conv.id).transcript[-1].provenance == {"ok": 1}


SNAPSHOT_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(min_size=1, max_size=10), SNAPSHOT_VALUES, max_size=5))
def test_any_snapshot_saves_and_loads(snapshot: dict) -> None:
    conv = Conversation(id="c")
    conv.append("user", "q")
    conv.append("assistant", "a", provenance=snapshot)
    text = codec.dumps(conv)
    first = codec.loads(text).transcript[-1].provenance
    again = codec.loads(codec.dumps(codec.loads(text))).transcript[-1].provenance
    assert first == again  # stable after the first save
    assert first == (codec.clean_provenance(snapshot) or None)


MSG = '[[messages]]\nid = "a"\nrole = "assistant"\ncontent = "hi"\n'
HOSTILE = {
    "provenance_number": MSG + "provenance = 5\n",
    "provenance_text": MSG + 'provenance = "x"\n',
    "provenance_datetime": MSG + "provenance.time = 1979-05-27T07:32:00Z\n",
    "provenance_two_levels": MSG + "provenance.a.b.c = 1\n",
    "provenance_nested_list": MSG + "provenance.a = [[1]]\n",
    "provenance_table_list": MSG + "[[messages.provenance.x]]\na = 1\n",
    "provenance_long_key": MSG + f"provenance.{'k' * 300} = 1\n",
    "provenance_empty_key": MSG + 'provenance."" = 1\n',
    "escaped_provenance_bad_json": MSG + 'escaped.provenance = "{"\n',
    "escaped_provenance_list": MSG + 'escaped.provenance = "[1]"\n',
    "escaped_provenance_deep": MSG + 'escaped.provenance = "' + "[" * 100_000 + '"\n',
    "escaped_provenance_too_deep": MSG
    + 'escaped.provenance = "{\\"a\\": [[[[[[[[[[1]]]]]]]]]]}"\n',
    "escaped_provenance_number": MSG + "escaped.provenance = 5\n",
    "label_list": MSG + "label = [1]\n",
    "acceptance_text": MSG + 'acceptance_rate = "most"\n',
    "weights_negative": MSG + "weights_bytes = -1\n",
    "peak_bool": MSG + "peak_bytes = true\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_snapshots_refuse_only_their_file(name: str, store: SessionStore) -> None:
    body = 'schema_version = 2\nid = "x"\n' + HOSTILE[name]
    with pytest.raises(CorruptSessionError) as raised:
        finishes(lambda: codec.loads(body, f"{name}.toml"))
    assert raised.value.reason and len(raised.value.reason) < 300
    # beside a healthy conversation, the folder still works
    healthy = compared(store.new(name="healthy"))
    store.save(healthy)
    (store.folder / f"{name}.toml").write_text(body, encoding="utf-8")
    infos, problems = store.scan()
    assert [i.id for i in infos] == [healthy.id]
    assert [p.reason for p in problems] == [raised.value.reason]


def test_hostile_text_in_a_snapshot_never_reaches_an_export_raw(store: SessionStore) -> None:
    conv = store.new()
    conv.append("user", "q")
    evil = {
        "model": "m\x1b[2J",
        "device": "\x1b]0;owned\x07cpu",
        "settings": {"do_sample": False, "x": "</details><script>"},
        "versions": {"torch": "\u202e2.13"},
        "corpus": dict(CORPUS),
        **{f"top {name}": text for name, text in CORPUS.items()},
    }
    conv.append("assistant", "a", provenance=evil, label="@bf16\x1b[31m")
    markdown = exporter.to_markdown(conv)
    assert "\x1b" not in markdown and "\x07" not in markdown and "\u202e" not in markdown
    assert not any(c in markdown for c in "\x9b\x9d\x90\x00\x7f\r")
    store.save(conv)
    assert store.load(conv.id).transcript[-1].provenance == evil
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown
    document = json.loads(exporter.to_json(conv))
    assert document["chat_tui"]["messages"][-1]["provenance"]["device"] == evil["device"]
    assert "\x1b" not in exporter.to_json(conv)  # escaped as \u001b


def test_exports_carry_the_snapshot(store: SessionStore, tmp_path) -> None:
    conv = compared(store.new(name="compare"))
    conv.transcript[-1].provenance = dict(SNAPSHOT, nan=math.nan)
    markdown = exporter.to_markdown(conv)
    assert "## Assistant (@fp32)" in markdown
    assert "Made with: SmolLM2-135M-Instruct (bundled) · 4bit nf4 · cpu · sampling" in markdown
    assert "- settings.temperature: 0.9" in markdown
    assert "- versions.transformers: 5.24.0" in markdown
    text = exporter.to_json(conv)
    assert "NaN" not in text
    document = json.loads(text)
    messages = document["chat_tui"]["messages"]
    assert messages[1]["provenance"] == SNAPSHOT and messages[1]["label"] == "@fp32"
    assert messages[2]["label"] == "@4bit"
    path = tmp_path / "export.json"
    path.write_text(text, encoding="utf-8")
    imported = exporter.import_file(path)
    assert imported.messages[1].provenance == SNAPSHOT
    assert imported.messages[2].provenance["seed"] == 7


def test_a_merge_keeps_snapshots_and_sees_their_changes(store: SessionStore) -> None:
    conv = compared(store.new(name="compare"))
    store.save(conv)
    mine, theirs = store.load(conv.id), store.load(conv.id)
    reply = theirs.transcript[-1]
    reply.provenance = dict(reply.provenance, seed=99)  # another writer updates it
    store.save(theirs)
    mine.append("user", "and more")
    store.save(mine)  # merges: their edit to a message this side did not touch is taken
    final = store.load(conv.id)
    assert final.get(reply.id).provenance["seed"] == 99
    assert final.transcript[-1].content == "and more"
