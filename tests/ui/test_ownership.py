"""Who owns what: one object per open conversation (renames and deletes from the
browser reach the open tab), the user's config left alone, and state kept per data dir."""

from __future__ import annotations

from textual.widgets import Input

from tui.screens.dialogs import ConfirmScreen, TextPrompt
from tui.screens.session_browser import SessionBrowser
from tui.widgets.message_view import MessageView

SIZE = (120, 40)


def texts(pane) -> list[str]:
    return [v.message.content for v in pane.query(MessageView)]


def tab_label(app, pane) -> str:
    return str(app.main_screen.tabs.get_tab(pane.parent.id).label)


async def open_browser(pilot, ui) -> SessionBrowser:
    await pilot.press("ctrl+o")
    await ui.wait_until(pilot, lambda: isinstance(pilot.app.screen, SessionBrowser), "browser")
    return pilot.app.screen


async def test_rename_an_open_conversation_in_the_browser_then_send_in_its_tab(make_app, dirs, ui):
    """The flow that lost messages: ctrl+n, send, ctrl+o, r, new title, Enter, Esc, send."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n")
        await ui.send(pilot, "Say yes.")
        pane = app.main_screen.active_pane
        conv_id = pane.conversation.id
        await open_browser(pilot, ui)
        await ui.wait_until(pilot, lambda: app.screen.loaded, "the list")
        await ui.press(pilot, "ctrl+r")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, TextPrompt), "the title prompt")
        app.screen.query_one(Input).value = ""
        await ui.paste(pilot, "Yes and no")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, SessionBrowser), "browser")
        await pilot.press("escape")
        await ui.wait_until(pilot, lambda: app.screen is app.main_screen, "the main screen")
        assert tab_label(app, pane) == "Yes and no"  # the label follows at once
        await ui.send(pilot, "Say no.")
        assert ui.notes(app, "error") == []
        assert pane.conversation.title == "Yes and no"
        assert texts(pane) == ["Say yes.", "Echo: Say yes.", "Say no.", "Echo: Say no."]
        await pilot.press("ctrl+q")
    saved = dirs.store().load(conv_id)
    assert saved.title == "Yes and no"
    assert [m.content for m in saved.transcript] == [
        "Say yes.",
        "Echo: Say yes.",
        "Say no.",
        "Echo: Say no.",
    ]


async def test_rename_from_the_tab_itself_relabels_it_and_saves(make_app, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "first")
        pane = app.main_screen.active_pane
        await ui.paste(pilot, "/rename Plans for Lisbon")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: tab_label(app, pane) == "Plans for Lisbon", "label")
        await ui.send(pilot, "second")
        conv_id = pane.conversation.id
    saved = dirs.store().load(conv_id)
    assert saved.title == "Plans for Lisbon" and len(saved.transcript) == 4


async def test_delete_an_open_conversation_in_the_browser_then_send(make_app, dirs, ui):
    """Deleting closes its tab (asked first, naming it); the other tab keeps working and
    saving; the deleted conversation is in the trash, not resurrected."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "keep this one")
        keep = app.main_screen.active_pane
        await pilot.press("ctrl+n")
        await ui.send(pilot, "delete this one")
        doomed = app.main_screen.active_pane
        doomed_id = doomed.conversation.id
        await open_browser(pilot, ui)
        await ui.wait_until(pilot, lambda: app.screen.loaded, "the list")
        await ui.press(pilot, "ctrl+d")  # the newest (the active tab's) is first
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "question")
        question = str(app.screen.query_one("Label").content)
        assert "'delete this one'" in question and "open in a tab" in question
        await ui.press(pilot, "y")  # bounded: a crash here would hang Pilot's wait
        await ui.wait_until(pilot, lambda: isinstance(app.screen, SessionBrowser), "browser")
        await ui.press(pilot, "escape")
        await ui.wait_until(pilot, lambda: doomed not in app.main_screen.panes(), "tab closed")
        assert app.main_screen.active_pane is keep
        await ui.send(pilot, "still here")
        assert ui.notes(app, "error") == []
        keep_id = keep.conversation.id
        await pilot.press("ctrl+q")
    store = dirs.store()
    assert [m.content for m in store.load(keep_id).transcript][-2:] == [
        "still here",
        "Echo: still here",
    ]
    assert not store.path_for(doomed_id).exists()
    assert len(list((store.folder / ".trash").glob(f"{doomed_id}-*.toml"))) == 1
    assert doomed_id not in dirs.open_tabs()


CONFIG = """\
# my chat-tui settings: keep my comments!
theme = "chat-tui-dark"   # dark is easier on the eyes

[model]
source = "default"   # the bundled one

[keymap]
new_tab = "ctrl+t"   # like a browser

[experimental]
something = [1, 2, 3]
"""


async def test_the_users_config_survives_a_session_byte_for_byte(make_app, dirs, ui):
    dirs.config.mkdir(parents=True, exist_ok=True)
    dirs.config_file.write_text(CONFIG)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "hello")
        await pilot.press("ctrl+t")  # the remapped new tab
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "a new tab")
        await ui.send(pilot, "in tab two")
        await pilot.press("ctrl+pageup")
        await pilot.press("ctrl+b")
        await ui.send(pilot, "back in one")
        await pilot.press("ctrl+q")
    assert app.return_code == 0
    assert dirs.config_file.read_text() == CONFIG


async def test_choosing_a_theme_in_the_palette_changes_only_the_theme_line(make_app, dirs, ui):
    dirs.config.mkdir(parents=True, exist_ok=True)
    dirs.config_file.write_text(CONFIG)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.ready(pilot)
        await ui.choose_theme(pilot, "chat-tui-light", "chat-tui-light")
        await ui.wait_until(
            pilot, lambda: "chat-tui-light" in dirs.config_file.read_text(), "the config write"
        )
    expected = CONFIG.replace(
        'theme = "chat-tui-dark"   # dark', 'theme = "chat-tui-light"   # dark'
    )
    assert dirs.config_file.read_text() == expected


async def test_two_data_dirs_keep_their_own_open_tabs(make_app, dirs, tmp_path, ui):
    first_dir, second_dir = tmp_path / "one", tmp_path / "two"
    ids: dict[str, list[str]] = {}
    for folder, words in ((first_dir, ["apples", "pears"]), (second_dir, ["cars"])):
        app = make_app(data_dir=str(folder))
        async with app.run_test(size=SIZE) as pilot:
            for index, word in enumerate(words):
                if index:
                    await pilot.press("ctrl+n")
                await ui.send(pilot, word)
            ids[str(folder)] = [p.conversation.id for p in app.main_screen.panes()]
            await pilot.press("ctrl+q")
    for folder, words in ((first_dir, ["apples", "pears"]), (second_dir, ["cars"])):
        app = make_app(data_dir=str(folder))
        async with app.run_test(size=SIZE) as pilot:
            await ui.ready(pilot)
            panes = app.main_screen.panes()
            assert [p.conversation.id for p in panes] == ids[str(folder)]
            assert [texts(p)[0] for p in panes] == words
            assert ui.notes(app, "warning") == []  # no "No conversation … in …" from the other
    fresh = make_app(data_dir=str(tmp_path / "three"))
    async with fresh.run_test(size=SIZE) as pilot:
        await ui.ready(pilot)
        assert len(fresh.main_screen.panes()) == 1
        assert texts(fresh.main_screen.active_pane) == []
        assert ui.notes(fresh, "warning") == []


async def test_two_apps_on_one_data_dir_keep_each_others_tabs(make_app, dirs, ui):
    """Two apps running at once add to the open tabs instead of overwriting them."""
    first, second = make_app(), make_app()
    async with first.run_test(size=SIZE) as one, second.run_test(size=SIZE) as two:
        await ui.send(one, "from the first app")
        await ui.send(two, "from the second app")
        a = first.main_screen.active_pane.conversation.id
        b = second.main_screen.active_pane.conversation.id
        await one.press("ctrl+q")
        await two.press("ctrl+q")
    assert set(dirs.open_tabs()) == {a, b}
