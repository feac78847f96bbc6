"""A real (tiny, forced-output) Qwen3-style reasoning model in the app, through the
real tokenizer, template and transformers' parser: the reasoning folded above a clean
answer, the next turn, the side panel's thinking switch, a comparison whose columns
show the reasoning folded; and hostile reasoning drawn harmlessly when unfolded."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Button, Select

from tests.hostile import controls_in
from tui.engine.reasoning import Reasoning
from tui.engine.spec import ModelSpec
from tui.screens.comparison import ComparisonScreen
from tui.widgets.message_view import MessageView


@pytest.fixture
def thinking_app(qwen3_thinking_dir: Path, make_app):
    return make_app(
        spec=ModelSpec(source=str(qwen3_thinking_dir), dtype="fp32"),
        engine=None,
        load_on_start=True,
    )


async def ready(app, pilot, ui) -> None:
    await ui.wait_until(pilot, app.controller.ready.is_set, "the model to load", timeout=120)
    await ui.send(pilot, "/set do_sample=false max_new_tokens=20")


def drawn(app) -> str:
    """Every character on screen, from the compositor's segments."""
    strips = app.screen._compositor.render_strips()
    return "".join(segment.text for strip in strips for segment in strip)


def replies(app) -> list[MessageView]:
    pane = app.main_screen.active_pane
    return [v for v in pane.query(MessageView) if v.message.role == "assistant"]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_reasoning_is_folded_and_the_answer_clean(thinking_app, dirs, ui, size):
    app = thinking_app
    async with app.run_test(size=size) as pilot:
        await ready(app, pilot, ui)
        await ui.send(pilot, "What is the capital of France?")
        screen = ui.screen_text(app)
        assert "▸ Thought for" in screen and "· 4 tokens" in screen
        assert "Paris." in screen
        assert "so France" not in screen and "think>" not in screen
        await ui.send(pilot, "Sure?")
        pane = app.main_screen.active_pane
        first, second = (m for m in pane.conversation.transcript if m.role == "assistant")
        assert (first.content, first.reasoning, first.reasoning_tokens) == (
            "Paris.",
            "so France",
            4,
        )
        assert second.content == "Paris." and second.reasoning == "so France"
        # the template dropped the first reply's reasoning from the second prompt: as
        # long as the same history without any reasoning
        plain = [{"role": m.role, "content": m.content} for m in pane.conversation.transcript]
        expected = app.controller.engine.build_prompt(plain[:3])
        assert second.prompt_tokens == len(expected.ids)
        assert "so France" not in expected.text
        conv_id = pane.conversation.id
    saved = dirs.store().load(conv_id)
    assert [m.reasoning for m in saved.transcript if m.role == "assistant"] == ["so France"] * 2


async def test_the_panels_thinking_switch_turns_it_off(thinking_app, ui):
    app = thinking_app
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot, ui)
        thinking = app.query_one("#thinking", Select)
        thinking.value = "false"
        app.query_one("#apply", Button).focus()
        await pilot.pause()
        await ui.press(pilot, "enter")
        pane = app.main_screen.active_pane
        await ui.wait_until(
            pilot, lambda: pane.conversation.settings.get("enable_thinking") is False, "applied"
        )
        pane.focus_prompt()
        await ui.send(pilot, "What is the capital of France?")
        (view,) = replies(app)
        assert view.message.content == "Paris." and view.message.reasoning is None
        assert not view.thought.display and "Thought" not in ui.screen_text(app)
        assert view.message.provenance["settings"]["enable_thinking"] is False


async def test_a_comparison_shows_each_reasoning_folded(thinking_app, dirs, ui):
    app = thinking_app
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot, ui)
        await ui.send(pilot, "What is the capital of France?")
        await ui.send(pilot, "/compare @bf16")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ComparisonScreen), "compare")
        screen = app.screen
        await ui.wait_until(pilot, lambda: screen.finished, "the comparison", timeout=120)
        await pilot.pause()
        shown = ui.screen_text(app)
        assert shown.count("▸ Thought") == 2 and "so France" not in shown
        assert screen.texts == ["Paris.", "Paris."]  # the answers, compared
        assert shown.count("similarity: 1.00") == 2  # of the answers, not the reasoning
        await ui.press(pilot, "escape")
        pane = app.main_screen.active_pane
        siblings = pane.conversation.siblings(pane.conversation.transcript[1].id)
        # the reference said what the reply said: kept once; the bf16 reply beside it
        assert [(m.label, m.reasoning) for m in siblings] == [
            (None, "so France"),
            ("@bf16", "so France"),
        ]


async def test_hostile_reasoning_unfolds_harmlessly(make_app, engine, ui):
    hostile = "\x1b]0;pwned\x07[bold red]loud[/] \x1b[2J\x9b2J [@click=app.quit]q[/] \ud800"
    engine.replies = [[Reasoning(hostile), "Fine."]]
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.send(pilot, "x")
        (view,) = replies(app)
        assert view.message.reasoning == hostile  # kept as received
        await pilot.click(view.thought)
        await ui.wait_until(pilot, lambda: "[bold red]loud[/]" in drawn(app), "unfolded")
        text = drawn(app)
        assert controls_in(text) == set()
        text.encode("utf-8")  # no lone surrogate reached the screen
        assert app.is_running  # the [@click] was not an action
