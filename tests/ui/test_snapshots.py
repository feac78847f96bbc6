"""Snapshot tests (pytest-textual-snapshot): the app's look at fixed sizes.

Deterministic by construction: the fake engine answers fixed text with fixed stats, the
``frozen`` fixture pins the memory meter and the memory estimate, notifications are
cleared, cursors do not blink, and saved conversations carry fixed times. Regenerate
with ``pytest tests/ui/test_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from textual.widgets import Input, TextArea

from tui.screens.help import HelpScreen
from tui.screens.model_picker import ModelPicker
from tui.screens.session_browser import SessionBrowser

pytestmark = pytest.mark.usefixtures("frozen")


@pytest.fixture
def make_app(make_app):
    """Apps without animations: the tab underline jumps instead of sliding, so a
    screenshot never catches it half way."""

    def make(**kwargs):
        app = make_app(**kwargs)
        app.animation_level = "none"
        return app

    return make


MARKDOWN_REPLY = [
    "## Reversing a list\n\n",
    "Use **slicing** or the `reversed` built-in:\n\n",
    "```python\ndef backwards(items):\n    return items[::-1]\n```\n\n",
    "- slicing makes a copy\n",
    "- `reversed()` is lazy\n",
]


async def steady(pilot, ui) -> None:
    """Let workers finish, pin the meter, drop toasts and stop cursors blinking."""
    app = pilot.app
    await ui.ready(pilot)
    app.main_screen.sample_memory()
    # a cancelled (replaced) memory sample must not raise here
    await asyncio.gather(*(w.wait() for w in list(app.workers)), return_exceptions=True)
    await pilot.pause()
    for screen in app.screen_stack:
        for widget in screen.query("TextArea, Input"):
            assert isinstance(widget, TextArea | Input)
            widget.cursor_blink = False
    app.clear_notifications()
    # Textual's Tab posts Relabelled before its new label is laid out, so the underline
    # of a renamed tab (first message -> title) sometimes keeps the old width. A resize
    # re-measures it; do one so the screenshot does not depend on that race.
    width, height = app.size
    await pilot.resize_terminal(width + 1, height)
    await pilot.pause()
    await pilot.resize_terminal(width, height)
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def converse(ui, *questions: str):
    async def run_before(pilot) -> None:
        for question in questions:
            await ui.send(pilot, question)
        await steady(pilot, ui)

    return run_before


def test_empty_app_120x40(snap_compare, make_app, ui):
    assert snap_compare(
        make_app(), terminal_size=(120, 40), run_before=lambda pilot: steady(pilot, ui)
    )


def test_conversation_with_markdown_and_code(snap_compare, make_app, engine, ui):
    engine.replies = [MARKDOWN_REPLY]
    run_before = converse(ui, "How do I reverse a list in Python?")
    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=run_before)


def test_stopped_reply(snap_compare, make_app, engine, ui):
    engine.replies = [["Counting: one,", " two,", " three,", " four"]]
    engine.hold_after = 2

    async def run_before(pilot) -> None:
        await ui.paste(pilot, "Count to four slowly.")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: engine.held == 1, "the reply to start")
        await pilot.press("escape")
        await ui.settle(pilot)
        await steady(pilot, ui)

    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=run_before)


def test_side_panel_hidden(snap_compare, make_app, engine, ui):
    engine.replies = [MARKDOWN_REPLY]
    chat = converse(ui, "How do I reverse a list in Python?")

    async def run_before(pilot) -> None:
        await chat(pilot)
        await pilot.press("ctrl+b")
        await steady(pilot, ui)

    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=run_before)


def test_layout_80x24(snap_compare, make_app, engine, ui):
    engine.replies = [MARKDOWN_REPLY]
    run_before = converse(ui, "How do I reverse a list in Python?")
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


def test_layout_200x50(snap_compare, make_app, engine, ui):
    engine.replies = [MARKDOWN_REPLY, ["Yes: `list.reverse()` reverses in place."]]
    run_before = converse(ui, "How do I reverse a list in Python?", "In place?")
    assert snap_compare(make_app(), terminal_size=(200, 50), run_before=run_before)


def test_light_theme(snap_compare, make_app, engine, dirs, ui):
    dirs.config.mkdir(parents=True, exist_ok=True)
    dirs.config_file.write_text('theme = "chat-tui-light"\n')
    engine.replies = [MARKDOWN_REPLY]
    run_before = converse(ui, "How do I reverse a list in Python?")
    app = make_app()
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
    assert app.theme == "chat-tui-light"


def test_model_picker_open(snap_compare, make_app, ui):
    async def run_before(pilot) -> None:
        await pilot.press("ctrl+l")
        await ui.wait_until(pilot, lambda: isinstance(pilot.app.screen, ModelPicker), "picker")
        await steady(pilot, ui)

    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=run_before)


def test_session_browser_open(snap_compare, make_app, dirs, ui):
    store = dirs.store()
    for day, (title, lines) in enumerate(
        [
            ("Reversing lists", ["How do I reverse a list?", "Use slicing."]),
            ("Trip to Lisbon", ["Plan three days in Lisbon", "Day one: Alfama.", "More?"]),
        ]
    ):
        conv = store.new(model={"source": "default"})
        for i, line in enumerate(lines):
            conv.append("user" if i % 2 == 0 else "assistant", line)
        conv.title = title
        conv.updated = datetime(2026, 3, 1 + day, 9, 30, tzinfo=UTC)
        store.save(conv)

    async def run_before(pilot) -> None:
        await pilot.press("ctrl+o")
        await ui.wait_until(pilot, lambda: isinstance(pilot.app.screen, SessionBrowser), "list")
        await ui.wait_until(pilot, lambda: pilot.app.screen.loaded, "the conversations")
        await steady(pilot, ui)

    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=run_before)


def test_help_screen(snap_compare, make_app, ui):
    async def run_before(pilot) -> None:
        await pilot.press("f1")
        await ui.wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), "help")
        await steady(pilot, ui)

    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=run_before)


def test_help_screen_80x24(snap_compare, make_app, ui):
    async def run_before(pilot) -> None:
        await pilot.press("f1")
        await ui.wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), "help")
        await steady(pilot, ui)

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


def test_session_browser_searching(snap_compare, make_app, dirs, ui):
    store = dirs.store()
    for day, (title, lines) in enumerate(
        [
            ("Reversing lists", ["How do I reverse a list?", "Use slicing: items[::-1]."]),
            (
                "German words",
                ["What is 'cat' in German?", "Katze. In German, nouns are capitalised."],
            ),
        ]
    ):
        conv = store.new(model={"source": "default"})
        for i, line in enumerate(lines):
            conv.append("user" if i % 2 == 0 else "assistant", line)
        conv.title = title
        conv.updated = datetime(2026, 3, 1 + day, 9, 30, tzinfo=UTC)
        store.save(conv)

    async def run_before(pilot) -> None:
        await pilot.press("ctrl+o")
        await ui.wait_until(pilot, lambda: isinstance(pilot.app.screen, SessionBrowser), "list")
        await ui.type(pilot, "german")
        await ui.wait_until(pilot, lambda: len(pilot.app.screen.rows) == 1, "the search")
        await steady(pilot, ui)

    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=run_before)
