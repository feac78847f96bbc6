"""The flows a new user trips on: help that reaches every key, versions that stay
reachable, the context limit said out loud, devices that exist, user themes, and the
small things (restored tabs at the latest reply, /continue on a key)."""

from __future__ import annotations

import re

import pytest
from textual.containers import VerticalScroll
from textual.widgets import Select

from tui.engine.spec import ModelSpec
from tui.screens.help import HelpScreen
from tui.widgets.message_view import MessageView, describe
from tui.widgets.settings_panel import SettingsPanel

SIZES = [(80, 24), (120, 40)]


def texts(pane) -> list[str]:
    return [v.message.content for v in pane.query(MessageView)]


def headers(pane) -> list[str]:
    return [describe(v.message, v.version) for v in pane.query(MessageView)]


@pytest.mark.parametrize("size", SIZES)
async def test_help_reaches_the_last_key_and_command_by_keyboard(make_app, dirs, ui, size):
    dirs.config.mkdir(parents=True, exist_ok=True)
    dirs.config_file.write_text('[keymap]\nnew_tab = "f2"\n')
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await ui.type(pilot, "?")  # on an empty prompt: help, not a question mark
        await ui.wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        assert app.main_screen.active_pane.prompt.text == ""
        body = app.screen.query_one("#help-body", VerticalScroll)
        assert app.focused is body
        screen_text = ui.screen_text(app)
        assert "f2" in screen_text  # the remapped key, from the live keymap
        for _ in range(60):
            if body.scroll_y >= body.max_scroll_y:
                break
            await ui.press(pilot, "pagedown")
        assert body.max_scroll_y > 0 or size == (120, 40)
        assert body.scroll_y >= body.max_scroll_y
        shown = re.sub(r"[\s│▏▎▊█▌▐]+", " ", ui.screen_text(app))
        assert "every complete version" in shown  # the very end
        await ui.press(pilot, "home")
        await ui.wait_until(pilot, lambda: body.scroll_y == 0, "the top")
        source = app.screen.query_one("Markdown").source
        for needle in ("ctrl+t", "ctrl+q", "ctrl+g", "/continue", "/rename", "/exit", "f2"):
            assert needle in source, needle
        await ui.press(pilot, "escape")
        assert app.screen is app.main_screen


@pytest.mark.parametrize("size", SIZES)
async def test_every_version_of_an_edited_and_regenerated_turn_is_reachable(
    make_app, engine, dirs, ui, size
):
    """Ask, stop, regenerate, edit the question and resend: three versions, all
    reachable with ctrl+t and with ←/→ on a focused message, each marked ‹i/n›."""
    engine.replies = [["First", " try", " never", " ends"], ["Second try"], ["Edited answer"]]
    engine.hold_after = 1
    app = make_app()
    async with app.run_test(size=size) as pilot:
        pane = app.main_screen.active_pane
        await ui.paste(pilot, "question")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: engine.held == 1, "the reply to start")
        await pilot.press("escape")
        await ui.settle(pilot)
        engine.hold_after = None
        engine.release.set()
        await pilot.press("ctrl+r")
        await ui.settle(pilot)
        assert texts(pane) == ["question", "Second try"]
        assert headers(pane)[1].startswith("Assistant ‹2/2›")
        await pilot.press("ctrl+e")
        await ui.wait_until(pilot, lambda: pane.prompt.text == "question", "editing")
        await pilot.press("end")
        await ui.send(pilot, ", edited")
        assert texts(pane) == ["question, edited", "Edited answer"]
        assert headers(pane)[0].startswith("You ‹2/2›")
        seen = {tuple(texts(pane))}
        for _ in range(3):
            await pilot.press("ctrl+t")
            await ui.wait_until(pilot, lambda: tuple(texts(pane)) not in seen or len(seen) == 3,
                                "another version")  # fmt: skip
            seen.add(tuple(texts(pane)))
        assert seen == {
            ("question", "First"),
            ("question", "Second try"),
            ("question, edited", "Edited answer"),
        }
        # ←/→ on a focused message: back to the first question, then its replies
        while texts(pane)[0] != "question, edited":
            await pilot.press("ctrl+t")
            await ui.settle(pilot)
        await pilot.press("ctrl+up")  # from the prompt to the last message
        await pilot.press("up")  # and to the question above it
        first = next(iter(pane.query(MessageView)))
        await ui.wait_until(pilot, lambda: app.focused is first, "the question focused")
        await ui.press(pilot, "left")
        await ui.wait_until(pilot, lambda: texts(pane)[0] == "question", "the other question")
        await ui.press(pilot, "down")  # the focus stayed on the question; now its reply
        reply = list(pane.query(MessageView))[1]
        await ui.wait_until(pilot, lambda: app.focused is reply, "the reply focused")
        before = texts(pane)[1]
        await ui.press(pilot, "right")
        await ui.wait_until(pilot, lambda: texts(pane)[1] != before, "the other reply")
        assert {texts(pane)[1], before} == {"First", "Second try"}
        conv_id = pane.conversation.id
    assert len(dirs.store().load(conv_id).messages) == 5


async def test_a_conversation_longer_than_the_context_says_so_and_generates(
    short_context_dir, make_app, dirs, ui
):
    """887 tokens of history on a 512-token model: the oldest messages are dimmed and
    marked, the status and a notice say how many, and the reply comes."""
    store = dirs.store()
    conv = store.new(model={"source": str(short_context_dir)})
    filler = "The valley had farms, mills and small towns along the river. " * 3
    for turn in range(12):
        conv.append("user", f"Question {turn}: tell me about the valley.")
        conv.append("assistant", f"Answer {turn}. {filler}")
    conv.settings = {"do_sample": False, "max_new_tokens": 8}
    store.save(conv)
    dirs.set_open_tabs([conv.id])
    app = make_app(
        spec=ModelSpec(source=str(short_context_dir), dtype="fp32"),
        engine=None,
        load_on_start=True,
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.wait_until(pilot, app.controller.ready.is_set, "the model", timeout=120)
        pane = app.main_screen.active_pane
        await ui.send(pilot, "Go on.")
        dropped = pane.outside_context
        assert dropped > 0
        views = list(pane.query(MessageView))
        assert all(v.has_class("-outside-context") for v in views[:dropped])
        assert not views[dropped].has_class("-outside-context")
        assert any("outside the model's context" in n.message for n in ui.notes(app))
        assert "outside the context" in str(pane.query_one(".status").render())
        reply = pane.conversation.transcript[-1]
        assert reply.role == "assistant" and reply.new_tokens
        assert reply.prompt_tokens <= 512


@pytest.mark.parametrize("size", SIZES)
async def test_the_device_list_offers_only_devices_that_exist(make_app, ui, size):
    app = make_app()
    async with app.run_test(size=size) as pilot:
        panel = app.main_screen.query_one(SettingsPanel)
        device = panel.query_one("#device", Select)
        assert [value for _label, value in device._options] == ["auto", "cpu"]
        panel.probe_hardware("cpu")
        await ui.workers_done(pilot)
        await pilot.pause()
        import torch

        expected = ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        assert [value for _label, value in device._options][: len(expected)] == expected
        if not torch.cuda.is_available():
            assert not any("cuda" in str(v) for _l, v in device._options)


USER_THEME = """\
name = "solarised-mine"
dark = true
primary = "#268bd2"
background = "#002b36"
surface = "#073642"
[variables]
chat-user = "#073642"
"""


@pytest.mark.parametrize("size", SIZES)
async def test_a_user_theme_file_appears_in_the_palette(make_app, dirs, ui, size):
    folder = dirs.config / "themes"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text(USER_THEME)
    (folder / "broken.toml").write_text('primray = "#fff"\n')
    app = make_app()
    async with app.run_test(size=size) as pilot:
        assert "solarised-mine" in app.available_themes
        (warning,) = [n for n in ui.notes(app, "warning") if "broken.toml" in n.message]
        assert "primray" in warning.message
        app.clear_notifications()  # a toast must not cover the palette's list
        await ui.choose_theme(pilot, "solarised", "solarised-mine")
    assert 'theme = "solarised-mine"' in dirs.config_file.read_text()


async def test_restored_tabs_show_the_latest_reply(make_app, engine, dirs, ui):
    engine.replies = [[f"line {i}\n" for i in range(80)]]
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ui.send(pilot, "a long one")
        await pilot.press("ctrl+q")
    again = make_app()
    async with again.run_test(size=(80, 24)) as pilot:
        view = again.main_screen.active_pane.messages_view
        await ui.wait_until(pilot, lambda: view.max_scroll_y > 0, "the layout")
        await ui.wait_until(pilot, lambda: view.scroll_y >= view.max_scroll_y - 1, "the end")


async def test_continue_has_a_key(make_app, engine, ui):
    engine.replies = [["Once upon", " a time", " there"], [" was a cat."]]
    engine.hold_after = 1
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.main_screen.active_pane
        await ui.paste(pilot, "story")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: engine.held == 1, "the reply to start")
        await pilot.press("escape")
        await ui.settle(pilot)
        engine.hold_after = None
        await pilot.press("ctrl+g")
        await ui.settle(pilot)
        assert engine.calls[-1].continue_final
        assert pane.conversation.transcript[-1].content == "Once upon was a cat."


async def test_settings_from_the_command_line_apply_to_new_conversations(make_app, engine, ui):
    """`chat-tui max_new_tokens=60` must bound the replies of the app's conversations."""
    app = make_app(settings_args=["max_new_tokens=60", "temperature=0.5"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.send(pilot, "hello")
        assert engine.calls[-1].settings == {"max_new_tokens": 60, "temperature": 0.5}
        await pilot.press("ctrl+n")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "a new tab")
        await ui.send(pilot, "again")
        assert engine.calls[-1].settings == {"max_new_tokens": 60, "temperature": 0.5}
