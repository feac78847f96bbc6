"""Modal screens: the model picker (ctrl+l) and the session browser (ctrl+o)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.widgets import Input, Label, OptionList, Static

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
        assert "0 models in the" in str(screen.query_one("#picker-note", Static).content)
        # and drawn under the choices of precision and device (their row once grew to
        # fill the dialog, and the list was drawn at its foot, or beyond the screen)
        lines = ui.screen_text(app).splitlines()

        def row(text: str) -> int:
            return next(i for i, line in enumerate(lines) if text in line)

        choices = row("precision: as loaded")
        assert row("SmolLM2-135M-Instruct (bundled, offline) (loaded)") <= choices + 4
        assert row("0 models in the") <= choices + 6
        assert app.focused is screen.query_one(Input)
        await pilot.press("escape")
        await ui.wait_until(
            pilot,
            lambda: not isinstance(app.screen, ModelPicker),
            "not isinstance(app.screen, ModelPicker)",
        )
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
    await ui.wait_until(pilot, lambda: pilot.app.screen.loaded, "the list")
    return pilot.app.screen


def rows(screen: SessionBrowser) -> list[str]:
    """Each result as drawn: its title line (and snippet lines)."""
    found = screen.query_one(OptionList)
    return [str(found.get_option_at_index(i).prompt) for i in range(found.option_count)]


def titles(screen: SessionBrowser) -> list[str]:
    return [r.title for r in (row.info for row in screen.rows)]


async def test_session_browser_lists_conversations_and_enter_opens_one(make_app, dirs, ui):
    _bananas, apples = saved_conversations(dirs)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_browser(pilot, ui)
        assert titles(screen) == ["Bananas", "Apples"]
        assert "2026-01-01 12:00 · 2 messages" in rows(screen)[1]
        assert "2 conversations" in str(screen.query_one("#browser-note", Static).content)
        assert app.focused is screen.query_one(Input)  # typing goes to the search
        await pilot.press("down", "enter")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "its tab")
        pane = app.main_screen.active_pane
        assert pane.conversation.id == apples
        assert texts(pane) == ["Tell me about apples", "They are fruit."]
        # opening it again switches to its tab rather than opening a second one
        await pilot.press("ctrl+n")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 3, "a new tab")
        await open_browser(pilot, ui)
        await pilot.press("down", "enter")
        await ui.wait_until(pilot, lambda: app.main_screen.active_pane is pane, "its tab")
        assert len(app.main_screen.panes()) == 3


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_typing_in_the_browser_searches_and_never_triggers_an_action(
    make_app, dirs, ui, size
):
    """Every letter goes to the search box: "rename", "delete" and "export" typed there
    do nothing but search; the results show the matching snippet."""
    bananas, apples = saved_conversations(dirs)
    app = make_app()
    async with app.run_test(size=size) as pilot:
        screen = await open_browser(pilot, ui)
        for word in ("red", "export", "e r d"):
            await ui.type(pilot, word)
            await ui.wait_until(
                pilot, lambda w=word: screen.query_one(Input).value.endswith(w), "typed text"
            )
            await pilot.press("ctrl+u")
        assert isinstance(app.screen, SessionBrowser)
        assert not (dirs.data / "exports").exists()
        assert [c.title for c in map(dirs.store().load, (bananas, apples))] == [
            "Bananas",
            "Apples",
        ]
        await ui.type(pilot, "fruit")
        await ui.wait_until(pilot, lambda: titles(screen) == ["Apples"], "the search")
        (row,) = rows(screen)
        assert "assistant: They are fruit." in row
        option = screen.query_one(OptionList).get_option_at_index(0).prompt
        assert any("reverse" in str(span.style) for span in option.spans)  # highlighted
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "its tab")
        assert app.main_screen.active_pane.conversation.id == apples


async def test_session_browser_renames_with_ctrl_r(make_app, dirs, ui):
    bananas, _apples = saved_conversations(dirs)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_browser(pilot, ui)
        await pilot.press("ctrl+r")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, TextPrompt), "the title prompt")
        field = app.screen.query_one(Input)
        assert field.value == "Bananas"
        field.value = ""
        await ui.paste(pilot, "Plantains")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: app.screen is screen, "the browser again")
        assert dirs.store().load(bananas).title == "Plantains"
        await ui.wait_until(
            pilot, lambda: sorted(titles(screen)) == ["Apples", "Plantains"], "the new title"
        )


async def test_session_browser_deletes_after_confirmation_naming_the_title(make_app, dirs, ui):
    bananas, apples = saved_conversations(dirs)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_browser(pilot, ui)
        await ui.press(pilot, "ctrl+d")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert "'Bananas'" in str(app.screen.query_one(Label).content)  # named by its title
        await ui.press(pilot, "n")  # no: nothing happens
        await ui.wait_until(pilot, lambda: app.screen is screen, "the browser again")
        assert dirs.store().path_for(bananas).exists()
        await ui.press(pilot, "ctrl+d")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await ui.press(pilot, "y")
        await ui.wait_until(pilot, lambda: titles(screen) == ["Apples"], "the list without it")
        store = dirs.store()
        assert not store.path_for(bananas).exists()
        assert len(list((store.folder / ".trash").glob(f"{bananas}-*.toml"))) == 1
        await ui.press(pilot, "escape")
        assert len(app.main_screen.panes()) == 1
    assert dirs.store().path_for(apples).exists()


async def _export_to(pilot, ui, folder) -> None:
    """ctrl+e in the browser, then the folder typed over the default, Enter."""
    from textual.widgets import Input

    from tui.screens.export_dialog import ExportScreen

    await ui.press(pilot, "ctrl+e")
    await ui.wait_until(pilot, lambda: isinstance(pilot.app.screen, ExportScreen), "the dialog")
    field = pilot.app.screen.query_one("#export-folder", Input)
    assert pilot.app.focused is field and field.value == str(Path.cwd())
    field.value = str(folder)
    await ui.press(pilot, "enter")


async def test_session_browser_exports_with_ctrl_e(make_app, dirs, ui, tmp_path):
    _bananas, _apples = saved_conversations(dirs)
    folder = tmp_path / "my exports"
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_browser(pilot, ui)
        await _export_to(pilot, ui, folder)
        await ui.wait_until(pilot, lambda: folder.exists(), "the export")
        assert sorted(p.name for p in folder.iterdir()) == ["Bananas.json", "Bananas.md"]
        await _export_to(pilot, ui, folder)  # again: never over the first files
        await ui.wait_until(pilot, lambda: len(list(folder.iterdir())) == 4, "the second")
        assert "Bananas-2.md" in {p.name for p in folder.iterdir()}
        assert any(n.message.startswith("Exported to") for n in ui.notes(app))
        assert app.screen is screen and app.focused is screen.query_one(Input)
        assert not (dirs.data / "exports").exists()


async def test_exporting_where_the_disk_refuses_is_a_sentence(make_app, dirs, ui, tmp_path):
    saved_conversations(dirs)
    blocker = tmp_path / "exports"
    blocker.write_text("a file where the folder should be")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_browser(pilot, ui)
        await _export_to(pilot, ui, blocker)
        await ui.wait_until(pilot, lambda: ui.notes(app, "error"), "the error")
        (note,) = ui.notes(app, "error")
        assert "exports" in note.message and "Traceback" not in note.message
        assert app.screen is screen  # the app did not crash


async def test_deleted_conversations_are_restored_from_the_browser(make_app, dirs, ui):
    bananas, apples = saved_conversations(dirs)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_browser(pilot, ui)
        await ui.press(pilot, "ctrl+d")
        await ui.press(pilot, "y")
        await ui.wait_until(pilot, lambda: len(rows(screen)) == 1, "bananas deleted")
        await ui.press(pilot, "ctrl+t")
        await ui.wait_until(
            pilot, lambda: screen.showing_trash and len(rows(screen)) == 1, "the trash"
        )
        assert rows(screen)[0].startswith("Bananas") and "deleted" in rows(screen)[0]
        assert "Enter restores" in ui.screen_text(app)
        await ui.press(pilot, "enter")
        await ui.wait_until(pilot, lambda: rows(screen) == [], "the trash emptied")
        assert any(n.message == "Restored 'Bananas'." for n in ui.notes(app))
        await ui.press(pilot, "ctrl+t")
        await ui.wait_until(pilot, lambda: len(rows(screen)) == 2, "both listed again")
    restored = dirs.store().load(bananas)
    assert [m.content for m in restored.transcript] == ["And bananas?"]
    assert dirs.store().load(apples).title == "Apples"


async def test_deleting_the_conversation_of_the_active_tab_closes_that_tab(make_app, dirs, ui):
    bananas, _apples = saved_conversations(dirs)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot, ui)
        await ui.press(pilot, "enter")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "the tab")
        assert app.main_screen.active_pane.conversation.id == bananas
        screen = await open_browser(pilot, ui)
        await ui.press(pilot, "ctrl+d")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        # bounded: if the app crashes here, Pilot's wait for the key never returns
        await ui.press(pilot, "y")
        await ui.wait_until(pilot, lambda: app.screen is screen, "the browser again")
        await ui.press(pilot, "escape")
        await ui.wait_until(
            pilot,
            lambda: all(p.conversation.id != bananas for p in app.main_screen.panes()),
            "the tab to close",
        )
        assert app.main_screen.panes() != []
    assert not dirs.store().path_for(bananas).exists()
