"""A reply's reasoning is a field of its own: stored losslessly (hostile text and lone
surrogates included), typed like every field, exported apart from the answer, and
handed to a chat template as ``reasoning_content``."""

from __future__ import annotations

import json

import pytest

from tests.hostile import CORPUS, ESC
from tui.store import SessionStore
from tui.store.errors import CorruptSessionError
from tui.store.export import to_json, to_markdown

HOSTILE = "\n".join(CORPUS.values())


def test_the_reasoning_round_trips_losslessly(tmp_path) -> None:
    store = SessionStore(tmp_path)
    conv = store.new()
    conv.append("user", "q")
    conv.append("assistant", "a", reasoning=HOSTILE, reasoning_tokens=3, reasoning_seconds=1.5)
    store.save(conv)
    (path,) = tmp_path.rglob("*.toml")
    assert ESC.encode() not in path.read_bytes()  # written escaped, read back whole
    reply = store.load(conv.id).transcript[1]
    assert (reply.reasoning, reply.reasoning_tokens, reply.reasoning_seconds) == (HOSTILE, 3, 1.5)
    assert reply.as_chat() == {"role": "assistant", "content": "a", "reasoning_content": HOSTILE}
    assert conv.transcript[0].as_chat() == {"role": "user", "content": "q"}


def test_a_reply_without_reasoning_is_as_before(tmp_path) -> None:
    store = SessionStore(tmp_path)
    conv = store.new()
    conv.append("user", "q")
    conv.append("assistant", "a")
    store.save(conv)
    (path,) = tmp_path.rglob("*.toml")
    assert "reasoning" not in path.read_text()
    assert store.load(conv.id).chat_messages()[1] == {"role": "assistant", "content": "a"}


@pytest.mark.parametrize(
    ("line", "field"),
    [("reasoning = 5", "reasoning"), ('reasoning_tokens = "many"', "reasoning_tokens")],
)
def test_a_mistyped_reasoning_field_is_a_reason(tmp_path, line, field) -> None:
    store = SessionStore(tmp_path)
    conv = store.new()
    conv.append("user", "q")
    conv.append("assistant", "a", reasoning="r")
    store.save(conv)
    (path,) = tmp_path.rglob("*.toml")
    text = path.read_text()
    path.write_text(text.replace('reasoning = "r"', line))
    with pytest.raises(CorruptSessionError, match=field):
        store.load(conv.id)


def test_exports_keep_the_reasoning_apart(tmp_path) -> None:
    conv = SessionStore(tmp_path).new()
    conv.append("user", "q")
    conv.append("assistant", "The answer.", reasoning="</details>\x1b[2J<b>x</b>")
    markdown = to_markdown(conv)
    # folded, escaped so it cannot close the block early, and free of escape sequences
    assert "<details><summary>Thought</summary>" in markdown
    assert "&lt;/details&gt;" in markdown and "&lt;b&gt;x&lt;/b&gt;" in markdown
    assert ESC not in markdown and markdown.index("Thought") < markdown.index("The answer.")
    data = json.loads(to_json(conv))
    assert data["messages"][1]["reasoning_content"] == "</details>\x1b[2J<b>x</b>"
    assert data["messages"][1]["content"] == "The answer."
