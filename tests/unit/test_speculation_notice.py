"""Prompt lookup that cannot propose anything says so before the turn (issue 16,
item 8): sampling with a repetition penalty and top-p/top-k rejects every candidate."""

from __future__ import annotations

import threading

import pytest

from tui.engine.generation import lookup_blocked
from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatRequest
from tui.engine.settings import GenerationSettings
from tui.engine.spec import ModelSpec

BUNDLED_DEFAULTS = {"do_sample": True, "repetition_penalty": 1.1, "top_p": 0.9}


@pytest.mark.parametrize(
    ("kwargs", "blocked"),
    [
        (BUNDLED_DEFAULTS, True),
        ({**BUNDLED_DEFAULTS, "top_p": 1.0, "top_k": 50}, True),
        ({**BUNDLED_DEFAULTS, "do_sample": False}, False),  # greedy: no top-p cut
        ({**BUNDLED_DEFAULTS, "repetition_penalty": 1.0}, False),
        ({**BUNDLED_DEFAULTS, "top_p": 1.0}, False),
        ({}, False),
    ],
)
def test_which_settings_block_prompt_lookup(kwargs, blocked) -> None:
    said = lookup_blocked(kwargs)
    assert bool(said) is blocked
    if blocked:
        assert "repetition_penalty=1.1" in said and "set repetition_penalty=1 (" in said


def test_the_engine_says_it_before_the_turn_and_once(tiny_llama_dir) -> None:
    engine = LocalEngine(prompt_lookup=3)
    engine.load(ModelSpec(source=str(tiny_llama_dir), dtype="fp32"))
    started = []
    settings = GenerationSettings({**BUNDLED_DEFAULTS, "max_new_tokens": 4, "seed": 1})
    result = engine.chat(
        ChatRequest([{"role": "user", "content": "a b c a b c a b"}], settings=settings),
        stop_event=threading.Event(),
        on_start=started.append,
    )
    before = [n for n in started[0].notices if n.startswith("Prompt lookup")]
    assert len(before) == 1
    assert [n for n in result.notices if n.startswith("Prompt lookup")] == before
    greedy = GenerationSettings({**BUNDLED_DEFAULTS, "do_sample": False, "max_new_tokens": 4})
    quiet = engine.chat(ChatRequest([{"role": "user", "content": "a b c"}], settings=greedy))
    assert not [n for n in quiet.notices if n.startswith("Prompt lookup")]
