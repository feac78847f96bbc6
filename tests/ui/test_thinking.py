"""A reasoning model in the app: its thinking streams into a folded, dimmed block
above the answer, unfolds from the focused reply's menu (Enter, t) or by a click, is kept (stopped
too) and goes back to the engine with the reply; ctrl+y copies the answer alone."""

from __future__ import annotations

import re
import signal

import pytest

from tui.engine.reasoning import Reasoning
from tui.screens.dialogs import ChoiceScreen
from tui.widgets.chat_pane import ChatPane
from tui.widgets.message_view import MessageView

THOUGHT = [Reasoning("Let me think about"), Reasoning(" France.")]
ANSWER = ["Paris", " is the capital."]


def last_reply(app) -> MessageView:
    pane = app.main_screen.active_pane
    return list(pane.query(MessageView))[-1]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_reasoning_is_folded_above_the_answer_and_unfolds(
    make_app, engine, ui, size
) -> None:
    engine.replies = [THOUGHT + ANSWER]
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await ui.send(pilot, "What is the capital of France?")
        screen = ui.screen_text(app)
        assert "▸ Thought for 12 s · 2 tokens" in screen
        assert "Paris is the capital." in screen
        assert "Let me think" not in screen  # folded
        view = last_reply(app)
        assert view.message.content == "Paris is the capital."
        assert view.message.reasoning == "Let me think about France."

        await ui.press(pilot, "ctrl+up")  # the reply takes the focus; Enter: its menu
        await ui.wait_until(pilot, lambda: app.focused is view, "the reply focused")
        await ui.press(pilot, "enter")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen), "the menu")
        menu = ui.screen_text(app)
        assert "Unfold its reasoning (t)" in menu and "Back (escape)" in menu
        await ui.press(pilot, "t")  # unfolds the reasoning
        await ui.wait_until(pilot, lambda: view.thought.expanded, "the reasoning unfolded")
        await ui.wait_until(
            pilot, lambda: "Let me think about France." in ui.screen_text(app), "the reasoning"
        )
        assert "▾ Thought" in ui.screen_text(app)

        await pilot.click(view.thought)  # a click folds it again
        await ui.wait_until(pilot, lambda: not view.thought.expanded, "the reasoning folded")
        assert "Let me think" not in ui.screen_text(app)

        await ui.press(pilot, "ctrl+y")  # the answer only
        assert app.clipboard == "Paris is the capital."
        pane = app.main_screen.active_pane
        await pane.run_action("copy_reply('thinking')")
        assert app.clipboard == "Let me think about France."


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_esc_while_thinking_keeps_the_thought_marked_stopped(
    make_app, engine, dirs, ui, size
) -> None:
    engine.replies = [[Reasoning("Thinking hard"), Reasoning(" about it"), *ANSWER]]
    engine.hold_after = 2
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await ui.paste(pilot, "Think first")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: engine.held == 1, "the model thinking")
        await ui.wait_until(
            pilot, lambda: "▸ Thinking…" in ui.screen_text(app), "the folded thinking line"
        )
        await ui.press(pilot, "escape")
        await ui.settle(pilot)
        view = last_reply(app)
        assert view.message.reasoning == "Thinking hard about it"
        assert view.message.content == ""
        assert view.message.stop_reason == "stopped"
        assert "Thought for 12 s · 2 tokens · stopped" in ui.screen_text(app)
        conv_id = app.main_screen.active_pane.conversation.id
    saved = dirs.store().load(conv_id)
    assert saved.messages[-1].reasoning == "Thinking hard about it"


async def test_the_next_turn_hands_the_reasoning_back_with_the_reply(make_app, engine, ui) -> None:
    engine.replies = [THOUGHT + ANSWER, ["Yes."]]
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ui.send(pilot, "What is the capital of France?")
        await ui.send(pilot, "Sure?")
        history = engine.calls[1].messages
        assert history[1] == {
            "role": "assistant",
            "content": "Paris is the capital.",
            "reasoning_content": "Let me think about France.",
        }
        latest = list(app.query(ChatPane).first().query(MessageView))[-1]
        assert latest.message.content == "Yes." and not latest.thought.display  # none


async def test_enable_thinking_reaches_the_engine_from_set(make_app, engine, ui) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ui.send(pilot, "/set enable_thinking=false")
        await ui.send(pilot, "Hi")
        assert engine.calls[-1].settings["enable_thinking"] is False


async def test_a_quit_while_thinking_keeps_the_thought_and_shows_it_again(
    make_app, engine, dirs, ui
) -> None:
    engine.replies = [[Reasoning("Weighing"), Reasoning(" the options"), *ANSWER]]
    engine.hold_after = 2
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ui.paste(pilot, "Think first")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: engine.held == 1, "the model thinking")
        await ui.wait_until(
            pilot, lambda: "Thinking…" in ui.screen_text(app), "the thinking line drawn"
        )
        app.save_and_exit(signal.SIGTERM)
        await pilot.pause()
    app = make_app()  # the reply as kept, when the tab is reopened
    async with app.run_test(size=(80, 24)) as pilot:
        await ui.wait_until(pilot, lambda: "Thought" in ui.screen_text(app), "the reply")
        view = last_reply(app)
        assert view.message.reasoning == "Weighing the options"
        assert (view.message.content, view.message.stop_reason) == ("", "interrupted")
        assert re.search(r"▸ Thought for \d+ s · interrupted", ui.screen_text(app))
