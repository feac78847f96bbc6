"""Modal screens: the model picker (ctrl+l) and the session browser (ctrl+o)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from textual.widgets import DataTable, Input, Label, OptionList, Static

from tui.engine.errors import MissingFilesError
from tui.engine.spec import ModelSpec
from tui.screens.dialogs import ConfirmScreen, TextPrompt
from tui.screens.model_picker import ModelPicker
from tui.screens.session_browser import SessionBrowser
from tui.widgets.message_view import MessageView

SIZE = (120, 40)


def texts(pane) -> list[str]:
    return [v.message.content for v in pane.query(MessageView)]


def options(screen: ModelPicker) -> dict[str, str]:
    found = screen.query_one(OptionList)
    return {
        found.get_option_at_index(i).id: str(found.get_option_at_index(i).prompt)
        for i in range(found.option_count)
    }


async def open_picker(pilot, ui) -> ModelPicker:
    await pilot.press("ctrl+l")
    await ui.wait_until(pilot, lambda: isinstance(pilot.app.screen, ModelPicker), "the picker")
    screen = pilot.app.screen
    await ui.workers_done(pilot)  # the Hugging Face cache scan
    await pilot.pause()
    return screen


# -- model picker ------------------------------------------------------------------------
async def test_model_picker_lists_the_bundled_default(make_app, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_picker(pilot, ui)
        listed = options(screen)
        assert "default" in listed
        assert "bundled" in listed["default"] and "(loaded)" in listed["default"]
        assert "0 model(s)" in str(screen.query_one("#picker-note", Static).content)
        assert app.focused is screen.query_one(Input)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ModelPicker)


async def test_model_picker_loads_a_typed_path(make_app, engine, tmp_path: Path, ui):
    folder = str(tmp_path / "my-model")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_picker(pilot, ui)
        await ui.paste(pilot, folder)
        assert f"[load] {folder}" in options(screen).values()
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: app.controller.spec.source == folder, "the load")
        assert [s.source for s in engine.loads] == [folder]
        assert engine.loaded.name == "my-model"
        assert any(n.message.startswith("Loaded my-model") for n in ui.notes(app))
        assert app.state.recent_models[0] == folder
        # the next time, it is offered as a recent model
        screen = await open_picker(pilot, ui)
        assert "(loaded)" in options(screen)[folder]


async def test_a_failing_load_reports_the_error_and_keeps_the_previous_model(
    make_app, engine, tmp_path: Path, ui
):
    folder = str(tmp_path / "broken-model")
    engine.load_error = MissingFilesError(
        f"{folder} has no config.json, so it is not a transformers model folder."
    )
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "before")
        previous = engine.loaded
        pane = app.main_screen.active_pane
        await open_picker(pilot, ui)
        await ui.paste(pilot, folder)
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: ui.notes(app, "error"), "the error")
        await ui.settle(pilot)
        (error,) = ui.notes(app, "error")
        assert "has no config.json" in error.message
        assert "Still using fake-model" in error.message
        assert engine.loaded is previous
        assert app.controller.spec == ModelSpec()
        assert app.controller.ready.is_set()
        assert app.query_one("#model-source", Input).value == "default"
        assert not app.query_one("#load-progress").display
        assert texts(pane) == ["before", "Echo: before"]
        await ui.send(pilot, "still there?")
        assert texts(pane)[-1] == "Echo: still there?"
        assert pane.conversation.transcript[-1].model == "fake-model"


# -- session browser ---------------------------------------------------------------------
def saved_conversations(dirs) -> list[str]:
    """Two saved conversations, the newest first."""
    store = dirs.store()
    ids = []
    for day, (title, lines) in enumerate(
        [("Apples", ["Tell me about apples", "They are fruit."]), ("Bananas", ["And bananas?"])]
    ):
        conv = store.new(model={"source": "default"})
        for i, line in enumerate(lines):
            conv.append("user" if i % 2 == 0 else "assistant", line)
        conv.title = title
        conv.updated = datetime(2026, 1, 1 + day, 12, 0, tzinfo=UTC)
        store.save(conv)
        ids.append(conv.id)
    return ids[::-1]


async def open_browser(pilot, ui) -> SessionBrowser:
    await pilot.press("ctrl+o")
    await ui.wait_until(pilot, lambda: isinstance(pilot.app.screen, SessionBrowser), "browser")
    await pilot.pause()
    return pilot.app.screen


def rows(screen: SessionBrowser) -> list[list[str]]:
    table = screen.query_one(DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_session_browser_lists_conversations_and_enter_opens_one(make_app, dirs, ui):
    _bananas, apples = saved_conversations(dirs)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_browser(pilot, ui)
        listed = rows(screen)
        assert [r[0] for r in listed] == ["Bananas", "Apples"]
        assert listed[1][2:] == ["2026-01-01 12:00", "2"]
        assert "2 conversation(s)" in str(screen.query_one("#browser-note", Static).content)
        await pilot.press("down", "enter")
        await ui.wait_until(
            pilot, lambda: len(app.main_screen.panes()) == 2, "the conversation's tab"
        )
        await pilot.pause()
        assert not isinstance(app.screen, SessionBrowser)
        pane = app.main_screen.active_pane
        assert pane.conversation.id == apples
        assert texts(pane) == ["Tell me about apples", "They are fruit."]
        # opening it again switches to its tab rather than opening a second one
        await pilot.press("ctrl+n")
        await pilot.pause()
        await open_browser(pilot, ui)
        await pilot.press("down", "enter")
        await pilot.pause()
        await pilot.pause()
        assert len(app.main_screen.panes()) == 3 and app.main_screen.active_pane is pane


async def test_session_browser_renames_with_r(make_app, dirs, ui):
    bananas, _apples = saved_conversations(dirs)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_browser(pilot, ui)
        await pilot.press("r")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, TextPrompt), "the title prompt")
        field = app.screen.query_one(Input)
        assert field.value == "Bananas"
        await pilot.press("ctrl+u")
        await ui.paste(pilot, "Plantains")
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen
        assert dirs.store().load(bananas).title == "Plantains"
        assert sorted(r[0] for r in rows(screen)) == ["Apples", "Plantains"]


async def test_session_browser_deletes_after_confirmation(make_app, dirs, ui):
    bananas, apples = saved_conversations(dirs)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_browser(pilot, ui)
        await pilot.press("d")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert "'Bananas'" in str(app.screen.query_one(Label).content)  # named by its title
        await pilot.press("n")  # no: nothing happens
        await pilot.pause()
        assert app.screen is screen and dirs.store().path_for(bananas).exists()
        await pilot.press("d")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await pilot.pause()
        assert app.screen is screen
        assert [r[0] for r in rows(screen)] == ["Apples"]
        store = dirs.store()
        assert not store.path_for(bananas).exists()
        assert len(list((store.folder / ".trash").glob(f"{bananas}-*.toml"))) == 1
        await pilot.press("escape")
        await pilot.pause()
        assert len(app.main_screen.panes()) == 1
    assert dirs.store().path_for(apples).exists()


async def test_deleting_the_conversation_of_the_active_tab_closes_that_tab(make_app, dirs, ui):
    bananas, _apples = saved_conversations(dirs)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot, ui)
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "the tab")
        assert app.main_screen.active_pane.conversation.id == bananas
        screen = await open_browser(pilot, ui)
        await pilot.press("d")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        # bounded: if the app crashes here, Pilot's wait for the key never returns
        await ui.press(pilot, "y")
        await ui.press(pilot, "escape")
        assert app.screen is not screen
        assert [p.conversation.id for p in app.main_screen.panes()] != []
        assert all(p.conversation.id != bananas for p in app.main_screen.panes())
    assert not dirs.store().path_for(bananas).exists()
