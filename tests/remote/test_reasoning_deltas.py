"""A server's reasoning: ``reasoning_content`` (vLLM, llama.cpp, transformers serve) or
``reasoning`` (newer vLLM, Ollama) deltas come back as the reply's reasoning, apart from
its answer, under the same bound as the answer; hostile ones are made safe where they
meet the terminal; ``chat_template_kwargs`` and the history's reasoning go out."""

from __future__ import annotations

import json

import pytest

from tests.hostile import ESC, TERMINAL_CONTROLS
from tests.remote.conftest import HOSTILE_THOUGHT
from tests.support import run_cli
from tui.engine.reasoning import Reasoning
from tui.engine.remote import MIN_REPLY, Endpoint, stream_chat
from tui.engine.settings import GenerationSettings
from tui.store import SessionStore
from tui.store.export import to_json, to_markdown


def ask(url: str, settings: dict | None = None, messages: list | None = None):
    pieces: list[str] = []
    result = stream_chat(
        Endpoint(url),
        "fake-model",
        messages or [{"role": "user", "content": "x"}],
        GenerationSettings(settings or {"max_new_tokens": 64}),
        on_text=pieces.append,
    )
    return result, pieces


@pytest.mark.parametrize("mode", ["thinking", "reasoning"])
def test_reasoning_deltas_are_the_replys_reasoning(misbehaving, mode) -> None:
    result, pieces = ask(f"{misbehaving}/{mode}")
    assert result.stats.stop_reason == "eos" and result.stats.error is None
    assert result.reasoning == "Let me think it over."
    assert result.text == "Paris it is."  # after reasoning, the answer's blank lines go
    assert [p for p in pieces if isinstance(p, Reasoning)] == ["Let me", " think", " it over."]
    assert "".join(p for p in pieces if not isinstance(p, Reasoning)) == "Paris it is."
    stats = result.stats
    assert (stats.reasoning_tokens, stats.new_tokens, stats.answer_tokens) == (6, 9, 3)
    assert stats.reasoning_seconds is not None


def test_endless_reasoning_is_cut_at_what_was_asked(misbehaving) -> None:
    result, pieces = ask(f"{misbehaving}/endlessthinking", {"max_new_tokens": 12})
    assert result.stats.stop_reason == "error"
    assert "sent more than was asked for" in result.stats.error
    assert result.text == "" and result.reasoning.startswith("pondering")
    assert MIN_REPLY < len(result.reasoning.encode()) <= MIN_REPLY + 1024
    assert all(isinstance(p, Reasoning) for p in pieces)


def test_hostile_reasoning_is_kept_whole_and_shown_safe(misbehaving, tmp_path) -> None:
    result, _ = ask(f"{misbehaving}/hostilethinking")
    # kept as sent, but for the lone surrogate (U+FFFD: it cannot be written to a file)
    assert result.reasoning == HOSTILE_THOUGHT + "x\ufffdy"
    assert result.text == "Fine."
    done = run_cli(
        "--endpoint",
        f"{misbehaving}/hostilethinking/v1",
        "--model",
        "fake-model",
        "--data-dir",
        str(tmp_path),
        "--session",
        "hostile",
        "--show-thinking",
        "--prompt",
        "x",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Fine.\n"  # the answer alone
    assert not set(done.stderr) & TERMINAL_CONTROLS
    assert "[bold red]loud[/]" in done.stderr  # markup is plain text on stderr
    assert "x\ufffdy" in done.stderr
    store = SessionStore(tmp_path)
    conv = store.load(store.find("hostile").id)
    assert conv.transcript[1].reasoning == HOSTILE_THOUGHT + "x\ufffdy"  # lossless
    assert ESC not in to_markdown(conv) and "\\u001b]0;pwned" in to_json(conv)


def test_template_kwargs_and_the_historys_reasoning_go_out(misbehaving, seen_bodies) -> None:
    history = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "Paris.", "reasoning_content": "so France"},
        {"role": "user", "content": "y"},
    ]
    settings = {"max_new_tokens": 64, "enable_thinking": False, "template.budget": 3}
    ask(f"{misbehaving}/thinking", settings, history)
    body = json.loads(seen_bodies[-1])
    assert body["chat_template_kwargs"] == {"enable_thinking": False, "budget": 3}
    assert body["messages"][1]["reasoning_content"] == "so France"
    assert "enable_thinking" not in body and "template.budget" not in body
    ask(f"{misbehaving}/thinking", {"max_new_tokens": 64})
    assert "chat_template_kwargs" not in json.loads(seen_bodies[-1])


def test_one_shot_prints_the_answer_and_counts_both(misbehaving, tmp_path) -> None:
    done = run_cli(
        "--endpoint",
        f"{misbehaving}/thinking/v1",
        "--model",
        "fake-model",
        "--data-dir",
        str(tmp_path),
        "--stats",
        "--prompt",
        "x",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Paris it is.\n"
    assert "Let me" not in done.stderr  # not asked for
    assert "9 new (6 reasoning, 3 answer)" in done.stderr
