"""Text with square brackets (user titles, labels) is drawn as written.

Textual parses ``str`` content of ``Static``, ``Tab`` labels, ``OptionList`` prompts and
``DataTable`` cells as markup, so ``[draft]`` in a title, or the ``[bundled]`` and
``[stopped]`` labels chat-tui writes itself, vanish unless escaped. These tests read what
is on the screen (the app's own screenshot), not the strings handed to the widgets.
"""

from __future__ import annotations

from pathlib import Path

from tui.screens.model_picker import ModelPicker
from tui.screens.session_browser import SessionBrowser

SIZE = (120, 40)


async def test_a_title_with_brackets_is_shown_in_its_tab(make_app, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "[x] buy milk")
        screen = ui.screen_text(app)
        assert "│ [x] buy milk" in screen  # the message itself (Markdown) is fine
        tab_row = screen.splitlines()[1]
        assert tab_row.split("▏")[0].strip() == "[x] buy milk"


async def test_a_title_with_brackets_is_shown_in_the_session_browser(make_app, dirs, ui):
    store = dirs.store()
    conv = store.new(model={"source": "default"})
    conv.append("user", "notes for later")
    conv.title = "[draft] notes"
    store.save(conv)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, SessionBrowser), "browser")
        await ui.wait_until(
            pilot,
            lambda: "[draft] notes" in ui.screen_text(app),
            "'[draft] notes' in ui.screen_text(app)",
        )
        assert "[draft] notes" in ui.screen_text(app)


async def test_the_model_picker_shows_each_choice_kind(make_app, tmp_path: Path, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+l")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ModelPicker), "the picker")
        await ui.workers_done(pilot)
        await ui.wait_until(
            pilot,
            lambda: "[bundled] SmolLM2-135M-Instruct" in ui.screen_text(app),
            "'[bundled] SmolLM2-135M-Instruct' in ui.screen_text(app)",
        )
        assert "[bundled] SmolLM2-135M-Instruct" in ui.screen_text(app)
        await ui.paste(pilot, "org/some-model")
        assert "[load] org/some-model" in ui.screen_text(app)
