"""An error nothing handled still costs no word: every tab is saved (a reply being
streamed kept, marked interrupted), the traceback goes to a log in the state folder and
the terminal gets one sentence naming it."""

from __future__ import annotations

import signal

import pytest

from tui import crash
from tui.app import ChatApp
from tui.screens.main import MainScreen

SIZE = (100, 30)


def explode(self) -> None:
    raise RuntimeError("an error nobody expected")


async def test_a_crash_saves_every_tab_and_logs_the_traceback(
    make_app, engine, dirs, ui, monkeypatch
):
    engine.replies = [["A finished ", "answer."], ["Half ", "a reply ", "never ends"]]
    engine.hold_after = 2  # the second reply stops after two chunks and waits
    app = make_app()
    with pytest.raises(RuntimeError, match="nobody expected"):
        async with app.run_test(size=SIZE) as pilot:
            await ui.send(pilot, "first tab's question")
            await pilot.press("ctrl+n")
            await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "a tab")
            await ui.type(pilot, "second tab's question")
            await pilot.press("enter")
            await ui.wait_until(pilot, lambda: engine.held == 1, "the reply half way")
            monkeypatch.setattr(MainScreen, "action_toggle_sidebar", explode)
            await pilot.press("ctrl+b")
            await ui.wait_until(pilot, lambda: app.crashed, "the crash")
    assert app.return_code == 1
    saved = {c.title: c for c in map(dirs.store().load, (i.id for i in dirs.store().list()))}
    contents = [[m.content for m in c.transcript] for c in saved.values()]
    assert ["first tab's question", "A finished answer."] in contents
    assert ["second tab's question", "Half a reply "] in contents
    half = next(c for c in saved.values() if c.transcript[0].content.startswith("second"))
    assert half.transcript[-1].stop_reason == "interrupted"
    assert app.crash_log is not None and app.crash_log.parent == dirs.state
    logged = app.crash_log.read_text(encoding="utf-8")
    assert "RuntimeError: an error nobody expected" in logged and "explode" in logged
    assert str(app.crash_log) in crash.sentence(app.crash_log)


def test_the_sentence_says_when_no_log_could_be_written():
    said = crash.sentence(None)
    assert "every conversation was saved" in said and "could not be written" in said
    assert "\n" not in said


async def test_a_hangup_while_the_tabs_are_read_ends_the_app_and_forgets_no_tab(
    make_app, dirs, ui, monkeypatch
):
    """An SSH drop (or a killed ``--serve`` server) in the first second, before the
    tabs are back: the app ends, and the next start reopens the same tabs."""
    store = dirs.store()
    kept = [store.new(model={"source": "default"}) for _ in range(2)]
    for number, conversation in enumerate(kept):
        conversation.append("user", f"tab {number}")
        store.save(conversation)
    dirs.set_open_tabs([c.id for c in kept])
    restore_tabs = MainScreen.restore_tabs

    async def hangup_while_reading(self) -> None:
        self.app.save_and_exit(signal.SIGHUP)
        await restore_tabs(self)

    monkeypatch.setattr(MainScreen, "restore_tabs", hangup_while_reading)
    app = make_app()
    # Textual's own run_test: make_app's waits for the tabs, which never come here
    async with ChatApp.run_test(app, size=SIZE) as pilot:
        await ui.wait_until(pilot, lambda: not app.is_running, "the app to end")
    assert app.return_code == 128 + signal.SIGHUP
    assert dirs.open_tabs() == [c.id for c in kept]
