"""The side panel (Apply, hide/show), the memory meter, themes and the keymap."""

from __future__ import annotations

import tomllib

from textual.widgets import Button, Input, Select, Static, TextArea

import themes
from tui.config import AppConfig
from tui.engine.spec import ModelSpec

SIZE = (120, 40)


async def apply(pilot) -> None:
    """Focus Apply and press Enter, as a keyboard user does."""
    button = pilot.app.query_one("#apply", Button)
    button.focus()
    await pilot.pause()
    await pilot.press("enter")
    await pilot.pause()


async def fill(pilot, ui, selector: str, text: str) -> None:
    pilot.app.query_one(selector).focus()
    await pilot.pause()
    await ui.paste(pilot, text)


async def test_ctrl_b_hides_and_shows_the_side_panel_and_remembers(make_app, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        sidebar = app.query_one("#sidebar")
        assert sidebar.display
        chat_width = app.query_one("#chat-area").size.width
        await pilot.press("ctrl+b")
        await ui.wait_until(pilot, lambda: not sidebar.display, "not sidebar.display")
        assert not sidebar.display
        assert app.query_one("#chat-area").size.width > chat_width
        assert not dirs.config_file.exists()  # remembered as state, not in the config
        assert tomllib.loads(dirs.state_file.read_text())["show_sidebar"] is False
        await pilot.press("ctrl+b")
        await ui.wait_until(pilot, lambda: sidebar.display, "sidebar.display")
        assert sidebar.display
        await pilot.press("ctrl+b")
        await pilot.pause()
    again = make_app()
    async with again.run_test(size=SIZE) as pilot:
        await ui.wait_until(
            pilot,
            lambda: not again.query_one("#sidebar").display,
            "not again.query_one('#sidebar').display",
        )
        assert not again.query_one("#sidebar").display


async def test_apply_with_a_new_precision_reloads_the_model(make_app, engine, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        precision = app.query_one("#precision", Select)
        precision.focus()
        await pilot.press("enter")  # open the list: auto, bf16, fp16 ...
        await pilot.press("down", "enter")
        await ui.wait_until(pilot, lambda: precision.value == "bf16", "precision.value == 'bf16'")
        assert precision.value == "bf16"
        await apply(pilot)
        await ui.wait_until(pilot, lambda: app.controller.spec.dtype == "bf16", "the reload")
        assert engine.loads == [ModelSpec(dtype="bf16")]
        assert engine.loaded.spec == ModelSpec(dtype="bf16")
        assert "bf16" in app.main_screen.sub_title


async def test_apply_with_generation_fields_stores_them_in_the_conversation(
    make_app, engine, dirs, ui
):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "hello")
        pane = app.main_screen.active_pane
        await fill(pilot, ui, "#gen-temperature", "0.5")
        await fill(pilot, ui, "#gen-max_new_tokens", "64")
        await fill(pilot, ui, "#system-prompt", "Be brief.")
        await apply(pilot)
        assert pane.conversation.settings == {"temperature": 0.5, "max_new_tokens": 64}
        assert pane.conversation.system_prompt == "Be brief."
        assert engine.loads == []  # same model: nothing reloaded
        assert any(n.message == "Settings applied." for n in ui.notes(app))
        saved = dirs.store().load(pane.conversation.id)
        assert saved.settings == {"temperature": 0.5, "max_new_tokens": 64}
        assert saved.system_prompt == "Be brief."
        pane.focus_prompt()
        await ui.send(pilot, "again")
        call = engine.calls[-1]
        assert call.settings == {"temperature": 0.5, "max_new_tokens": 64}
        assert call.system_prompt == "Be brief."
        # clearing a field unsets it
        app.query_one("#gen-temperature", Input).value = ""
        await apply(pilot)
        assert pane.conversation.settings == {"max_new_tokens": 64}


async def test_apply_with_a_bad_field_shows_an_error_and_changes_nothing(make_app, engine, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main_screen.active_pane
        await fill(pilot, ui, "#gen-top_k", "many")
        await apply(pilot)
        (error,) = ui.notes(app, "error")
        assert "top_k" in error.message
        assert pane.conversation.settings == {}
        assert engine.loads == []


async def test_the_panel_follows_the_active_tab(make_app, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.paste(pilot, "/set temperature=0.3")
        await pilot.press("enter")
        await ui.settle(pilot)
        await ui.paste(pilot, "/system first tab")
        await pilot.press("enter")
        await ui.settle(pilot)
        await pilot.press("ctrl+n")
        await ui.wait_until(
            pilot,
            lambda: app.query_one("#gen-temperature", Input).value == "",
            "app.query_one('#gen-temperature', Input).value == ''",
        )
        assert app.query_one("#gen-temperature", Input).value == ""
        assert app.query_one("#system-prompt", TextArea).text == ""
        await pilot.press("ctrl+pageup")
        await ui.wait_until(
            pilot,
            lambda: app.query_one("#gen-temperature", Input).value == "0.3",
            "app.query_one('#gen-temperature', Input).value == '0.3'",
        )
        assert app.query_one("#gen-temperature", Input).value == "0.3"
        assert app.query_one("#system-prompt", TextArea).text == "first tab"


async def test_memory_meter_shows_process_ram_after_a_sample(make_app, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        lines = app.query_one("#memory .memory-lines", Static)
        await ui.wait_until(
            pilot, lambda: str(lines.content).startswith("RAM app"), "a memory sample"
        )
        text = str(lines.content)
        assert "MiB" in text.splitlines()[0] or "GiB" in text.splitlines()[0]
        assert "weights  50.0 MiB" in text  # the fake model's footprint
        assert "KV cache" in text


async def test_the_three_themes_are_registered_and_the_choice_is_remembered(make_app, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        assert set(themes.THEMES) <= set(app.available_themes)
        assert app.theme == themes.DEFAULT_THEME
        assert app.has_class("theme-chat-tui-dark")
        app.theme = "chat-tui-light"
        await ui.wait_until(
            pilot,
            lambda: (
                app.has_class("theme-chat-tui-light") and not app.has_class("theme-chat-tui-dark")
            ),
            "app.has_class('theme-chat-tui-light') and not app.has_cla...",
        )
        assert app.has_class("theme-chat-tui-light") and not app.has_class("theme-chat-tui-dark")
        assert AppConfig.load().theme == "chat-tui-light"
        assert tomllib.loads(dirs.config_file.read_text())["theme"] == "chat-tui-light"
    again = make_app()
    async with again.run_test(size=SIZE) as pilot:
        await ui.wait_until(
            pilot, lambda: again.theme == "chat-tui-light", "again.theme == 'chat-tui-light'"
        )
        assert again.theme == "chat-tui-light"
        assert ui.notes(again, "warning") == []


async def test_an_unknown_theme_falls_back_with_a_notification(make_app, dirs, ui):
    dirs.config.mkdir(parents=True, exist_ok=True)
    dirs.config_file.write_text('theme = "no-such-theme"\n')
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.wait_until(
            pilot, lambda: app.theme == "chat-tui-dark", "app.theme == 'chat-tui-dark'"
        )
        assert app.theme == "chat-tui-dark"
        (warning,) = ui.notes(app, "warning")
        assert "no-such-theme" in warning.message and "chat-tui-dark" in warning.message


async def test_a_keymap_entry_remaps_a_binding(make_app, dirs, ui):
    dirs.config.mkdir(parents=True, exist_ok=True)
    dirs.config_file.write_text('[keymap]\nnew_tab = "ctrl+t"\n')
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+t")
        await ui.wait_until(
            pilot, lambda: len(app.main_screen.panes()) == 2, "len(app.main_screen.panes()) == 2"
        )
        assert len(app.main_screen.panes()) == 2
        await pilot.press("ctrl+n")  # no longer bound to a new tab
        await ui.wait_until(
            pilot, lambda: len(app.main_screen.panes()) == 2, "len(app.main_screen.panes()) == 2"
        )
        assert len(app.main_screen.panes()) == 2
    assert tomllib.loads(dirs.config_file.read_text())["keymap"] == {"new_tab": "ctrl+t"}


async def test_an_unreadable_config_is_reported_and_left_alone(make_app, dirs, ui):
    dirs.config.mkdir(parents=True, exist_ok=True)
    dirs.config_file.write_text("theme = [unclosed\n")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert any("could not be read" in n.message for n in ui.notes(app, "warning"))
        await ui.send(pilot, "hello")
        app.theme = "chat-tui-terminal"
        await pilot.pause()
    assert dirs.config_file.read_text() == "theme = [unclosed\n"


async def test_a_page_key_on_a_list_never_drawn_does_nothing(make_app, ui) -> None:
    """Found by bench/monkey.py: a Select opened and paged down in one burst of keys got
    the page key before its list was ever laid out, and Textual's OptionList raised."""
    from textual.widgets._select import SelectOverlay

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.ready(pilot)
        overlays = list(app.main_screen.query(SelectOverlay))
        assert overlays
        for overlay in overlays:  # folded: never laid out
            overlay.action_page_down()
            overlay.action_page_up()
        await pilot.pause()
        assert app.is_running
