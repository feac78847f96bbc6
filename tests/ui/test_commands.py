"""Slash commands typed in the prompt."""

from __future__ import annotations

from textual.widgets import Input, Markdown, TextArea

from tui.screens.dialogs import ChoiceScreen
from tui.screens.help import HelpScreen
from tui.slash_commands import COMMANDS
from tui.widgets.message_view import MessageView
from tui.widgets.prompt_input import PromptInput

SIZE = (120, 40)


def texts(pane) -> list[str]:
    return [v.message.content for v in pane.query(MessageView)]


async def command(pilot, ui, text: str) -> None:
    await ui.paste(pilot, text)
    await pilot.press("enter")
    await ui.settle(pilot)


async def test_help_opens_the_help_screen_listing_keys_and_commands(make_app, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, ui, "/help")
        assert isinstance(app.screen, HelpScreen)
        source = app.screen.query_one(Markdown).source
        for name in COMMANDS:
            assert f"/{name}" in source
        assert "ctrl+n" in source and "ctrl+j" in source
        await pilot.press("escape")
        await ui.wait_until(
            pilot,
            lambda: not isinstance(app.screen, HelpScreen),
            "not isinstance(app.screen, HelpScreen)",
        )
        assert not isinstance(app.screen, HelpScreen)
        assert app.main_screen.active_pane.prompt.text == ""


async def test_f1_opens_help_too(make_app, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await ui.wait_until(
            pilot, lambda: isinstance(app.screen, HelpScreen), "isinstance(app.screen, HelpScreen)"
        )
        assert isinstance(app.screen, HelpScreen)


async def test_new_opens_a_tab(make_app, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        first = app.main_screen.active_pane
        await command(pilot, ui, "/new")
        assert len(app.main_screen.panes()) == 2 and app.main_screen.active_pane is not first
        assert first.prompt.text == ""


async def test_clear_starts_over_and_keeps_the_old_messages_in_the_file(make_app, engine, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "before")
        pane = app.main_screen.active_pane
        conv_id = pane.conversation.id
        await command(pilot, ui, "/clear")
        assert texts(pane) == [] and pane.conversation.transcript == []
        assert engine.forgotten == [conv_id]
        saved = dirs.store().load(conv_id)
        assert saved.transcript == [] and len(saved.messages) == 2
        await ui.send(pilot, "after")
        assert engine.calls[-1].messages == [{"role": "user", "content": "after"}]
        assert texts(pane) == ["after", "Echo: after"]


async def test_save_with_a_name_names_the_conversation_and_its_tab(make_app, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "something worth keeping")
        pane = app.main_screen.active_pane
        await command(pilot, ui, "/save trip plans")
        assert pane.conversation.name == "trip plans"
        tab = app.main_screen.tabs.get_tab(pane.parent.id)
        assert str(tab.label) == "trip plans"
        saved = dirs.store().load(pane.conversation.id)
        assert (saved.name, saved.title) == ("trip plans", "trip plans")
        assert any(n.message.startswith("Saved to ") for n in ui.notes(app))


async def test_save_with_nothing_to_save_warns(make_app, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, ui, "/save")
        assert any("Nothing to save" in n.message for n in ui.notes(app, "warning"))
        assert not dirs.store().path_for(app.main_screen.active_pane.conversation.id).exists()


async def test_set_changes_the_conversation_settings_passed_to_the_engine(
    make_app, engine, dirs, ui
):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "hello")
        pane = app.main_screen.active_pane
        await command(pilot, ui, "/set temperature=0.7 max_new_tokens=32")
        assert pane.conversation.settings == {"temperature": 0.7, "max_new_tokens": 32}
        assert app.query_one("#gen-temperature", Input).value == "0.7"
        assert app.query_one("#gen-max_new_tokens", Input).value == "32"
        await ui.send(pilot, "again")
        assert engine.calls[-1].settings == {"temperature": 0.7, "max_new_tokens": 32}
        assert dirs.store().load(pane.conversation.id).settings == {
            "temperature": 0.7,
            "max_new_tokens": 32,
        }


async def test_set_with_a_bad_value_shows_an_error_and_changes_nothing(make_app, engine, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main_screen.active_pane
        await command(pilot, ui, "/set temperature=0.7")
        for bad in ("/set temperature=hot", "/set top_p=2", "/set temperature=0.2 top_k=-1"):
            await command(pilot, ui, bad)
            assert pane.conversation.settings == {"temperature": 0.7}, bad
        errors = [n.message for n in ui.notes(app, "error")]
        assert len(errors) == 3
        assert "temperature" in errors[0] and "hot" in errors[0]
        assert "top_p" in errors[1]
        assert "top_k" in errors[2]
        await ui.send(pilot, "hello")
        assert engine.calls[-1].settings == {"temperature": 0.7}


async def test_reset_forgets_the_settings(make_app, engine, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, ui, "/set temperature=0.7")
        await command(pilot, ui, "/reset")
        assert app.main_screen.active_pane.conversation.settings == {}
        assert app.query_one("#gen-temperature", Input).value == ""
        await ui.send(pilot, "hello")
        assert engine.calls[-1].settings == {}


async def test_system_sets_the_system_prompt_given_to_the_engine(make_app, engine, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, ui, "/system You are a terse pirate.")
        pane = app.main_screen.active_pane
        assert pane.conversation.system_prompt == "You are a terse pirate."
        assert app.query_one("#system-prompt", TextArea).text == "You are a terse pirate."
        await ui.send(pilot, "hello")
        assert engine.calls[-1].system_prompt == "You are a terse pirate."
        assert engine.calls[-1].messages == [{"role": "user", "content": "hello"}]
        assert dirs.store().load(pane.conversation.id).system_prompt == "You are a terse pirate."
        await command(pilot, ui, "/system")
        await ui.send(pilot, "again")
        assert engine.calls[-1].system_prompt is None


async def test_model_loads_the_named_model(make_app, engine, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "hello")
        await command(pilot, ui, "/model org/tiny-model")
        await ui.wait_until(
            pilot, lambda: app.controller.spec.source == "org/tiny-model", "the load"
        )
        assert [s.source for s in engine.loads] == ["org/tiny-model"]
        assert engine.loaded.spec.source == "org/tiny-model"
        assert "tiny-model" in app.main_screen.sub_title
        assert app.query_one("#model-source", Input).value == "org/tiny-model"
        assert any(n.message.startswith("Loaded tiny-model") for n in ui.notes(app))
        await ui.send(pilot, "and now?")
        reply = app.main_screen.active_pane.conversation.transcript[-1]
        assert reply.model == "tiny-model"
    # remembered as state; the user's config is not written
    assert "org/tiny-model" in dirs.state_file.read_text()
    assert not dirs.config_file.exists()


async def test_stats_shows_the_last_reply_and_the_model(make_app, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "hello there")
        await command(pilot, ui, "/stats")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen), "the stats")
        stats = app.screen.question  # a dialog that stays until closed, not a toast
        assert stats.startswith("Stats")
        assert "last reply: 2 prompt + 3 new tokens" in stats
        assert "first token 250 ms, 40.0 tok/s, stop: eos" in stats
        assert "model: fake-model" in stats
        assert "process RAM" in stats
        await ui.press(pilot, "enter")
        await ui.wait_until(pilot, lambda: app.screen is app.main_screen, "the stats closed")
        assert isinstance(app.focused, PromptInput)


async def test_exit_saves_and_quits(make_app, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "bye")
        conv_id = app.main_screen.active_pane.conversation.id
        assert app.return_code is None
        await ui.paste(pilot, "/exit")
        await pilot.press("enter")
        await pilot.pause()
    assert app.return_code == 0
    assert [m.content for m in dirs.store().load(conv_id).transcript] == ["bye", "Echo: bye"]


async def test_an_unknown_command_lists_the_commands_and_clears_the_prompt(make_app, engine, ui):
    """The next command is not typed after it (``/foo/copy``); Up brings it back."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, ui, "/frobnicate now")
        (note,) = ui.notes(app, "warning")
        assert "Unknown command /frobnicate" in note.message
        for name in COMMANDS:
            assert f"/{name}" in note.message
        prompt = app.main_screen.active_pane.prompt
        assert prompt.text == ""
        assert engine.calls == []
        await pilot.press("up")
        assert prompt.text == "/frobnicate now"


async def test_a_double_slash_sends_a_literal_slash(make_app, engine, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "//etc/hosts is a file")
        assert engine.calls[-1].messages[-1]["content"] == "/etc/hosts is a file"
        assert texts(app.main_screen.active_pane)[0] == "/etc/hosts is a file"
