"""The tab bar by keyboard: the active tab always shows, alt+1…9 jump, a new tab
opens after the active one, and a tab whose reply finished while another was shown is
marked until visited."""

from __future__ import annotations

import asyncio

import pytest

from tui.screens.main import UNSEEN_MARK


def _labels(app) -> list[str]:
    from textual.widgets._tabbed_content import ContentTab

    return [str(t.label) for t in app.main_screen.tabs.query(ContentTab)]


def _active_title(app) -> str:
    return app.main_screen.active_pane.conversation.title


async def _tabs(app, pilot, ui, count: int) -> None:
    for n in range(count):
        if n:
            await pilot.press("ctrl+n")
            await ui.wait_until(pilot, lambda n=n: len(app.main_screen.panes()) == n + 1, "tab")
        await ui.send(pilot, f"topic{n:02d} words")


@pytest.mark.animated  # the bar's own scroll animation once undid the reveal
@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_the_active_tab_is_always_in_view(make_app, ui, size) -> None:
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await _tabs(app, pilot, ui, 9)
        await pilot.pause()
        assert _active_title(app) == "topic08 words"
        await ui.wait_until(
            pilot, lambda: "topic08" in ui.screen_text(app).splitlines()[1], "tab 9 in view"
        )
        await pilot.press("alt+1")
        await ui.wait_until(pilot, lambda: _active_title(app) == "topic00 words", "tab 1")
        await ui.wait_until(
            pilot, lambda: "topic00" in ui.screen_text(app).splitlines()[1], "tab 1 in view"
        )
        await pilot.press("alt+5")
        await ui.wait_until(pilot, lambda: _active_title(app) == "topic04 words", "tab 5")
        await pilot.press("alt+9")
        await ui.wait_until(pilot, lambda: _active_title(app) == "topic08 words", "the last")
        assert app.focused is app.main_screen.active_pane.prompt


async def test_a_new_tab_opens_after_the_active_one(make_app, ui) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await _tabs(app, pilot, ui, 3)
        await pilot.press("alt+1")
        await ui.wait_until(pilot, lambda: _active_title(app) == "topic00 words", "tab 1")
        await pilot.press("ctrl+n")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 4, "a new tab")
        assert _labels(app) == ["topic00 words", "new", "topic01 words", "topic02 words"]
        assert app.main_screen.panes()[1] is app.main_screen.active_pane
        await pilot.press("ctrl+pagedown")  # the next tab is the one after it in the bar
        await ui.wait_until(pilot, lambda: _active_title(app) == "topic01 words", "next")


async def test_a_reply_finished_in_the_background_marks_its_tab(make_app, engine, ui) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await ui.send(pilot, "first tab")
        engine.hold_after = 1
        await ui.paste(pilot, "a long answer please")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: engine.held == 1, "the reply to stream")
        await pilot.press("ctrl+n")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "a new tab")
        engine.release.set()
        await ui.wait_until(
            pilot, lambda: _labels(app)[0].startswith(UNSEEN_MARK), "the mark on tab 1"
        )
        assert not _labels(app)[1].startswith(UNSEEN_MARK)
        await pilot.press("alt+1")
        await ui.wait_until(
            pilot, lambda: not _labels(app)[0].startswith(UNSEEN_MARK), "the mark cleared"
        )


async def test_a_tab_being_closed_is_never_drawn_in(make_app, ui) -> None:
    """Found by bench/monkey.py: a tab switch (alt+N, or the bar picking the next tab)
    reached a tab whose widgets were being taken down, and drawing its status line
    raised. Here the switch lands at that moment, and so does a streamed chunk, and
    the relabelling of a reply that ended (seed 846623477: ctrl+r, then ctrl+w)."""
    from tui.widgets.message_view import MessageView
    from tui.widgets.status_line import StatusLine

    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await _tabs(app, pilot, ui, 2)
        main = app.main_screen
        pane = main.active_pane
        view = pane.query(MessageView).last()
        closing = asyncio.create_task(main._remove_pane(pane))
        await ui.wait_until(pilot, lambda: not pane.query(StatusLine), "its widgets going")
        if main.active_pane is pane:
            main.tab_activated(None)
        pane.update_status()
        main.relabel(pane)  # its reply, stopped by the close, reports that it ended
        await view.write("a chunk for a view being taken down")
        await view.set_text("and its final text")
        await closing
        await ui.settle(pilot)
        assert app.is_running and not app.crashed
        assert len(main.panes()) == 1
