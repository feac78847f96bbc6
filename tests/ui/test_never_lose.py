"""The app never loses a word: two writers merge, disk faults keep the text in the
window (marked) and retry, and closing or quitting with unsaved messages asks first."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

from tui.screens.dialogs import ChoiceScreen
from tui.store.atomic import fault_hook
from tui.widgets.message_view import MessageView

SIZE = (120, 40)
ROOT = Path(__file__).resolve().parents[2]


def texts(pane) -> list[str]:
    return [v.message.content for v in pane.query(MessageView)]


def no_space(operation: str, path: Path) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def status(pane) -> str:
    return str(pane.query_one(".status").render())


async def test_another_writer_is_merged_not_refused(make_app, dirs, ui):
    """The app holds a conversation; another writer appends to it; the user sends in
    the app: both exchanges end up in the file, as branches of the tree."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "first question")
        pane = app.main_screen.active_pane
        conv_id = pane.conversation.id
        other = dirs.store().load(conv_id)  # a second chat-tui (or a one-shot run)
        other.append("user", "from elsewhere")
        other.append("assistant", "elsewhere's answer")
        dirs.store().save(other)
        await ui.send(pilot, "second question")
        assert ui.notes(app, "error") == []
        assert any("merged" in n.message for n in ui.notes(app))
        assert texts(pane)[-2:] == ["second question", "Echo: second question"]
    saved = dirs.store().load(conv_id)
    contents = {m.content for m in saved.messages}
    assert {"from elsewhere", "elsewhere's answer", "second question"} <= contents
    ours = next(m for m in saved.messages if m.content == "second question")
    theirs = next(m for m in saved.messages if m.content == "from elsewhere")
    assert ours.parent == theirs.parent  # siblings: a branch where both appended
    assert saved.transcript[-1].content == "Echo: second question"


async def test_the_app_and_a_one_shot_run_on_one_conversation(
    make_app, dirs, ui, test_env, tiny_llama_dir
):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.paste(pilot, "/save shared")
        await pilot.press("enter")
        await ui.send(pilot, "from the app")
        done = subprocess.run(
            [
                sys.executable, "-m", "tui.cli", "--model", str(tiny_llama_dir),
                "--data-dir", str(dirs.data), "--session", "shared",
                "--prompt", "from the one-shot", "do_sample=false", "max_new_tokens=4",
            ],
            cwd=ROOT, env=dict(test_env, CHAT_TUI_CONFIG_DIR=str(dirs.config)),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        await ui.send(pilot, "app again")
        assert ui.notes(app, "error") == []
        conv_id = app.main_screen.active_pane.conversation.id
        await pilot.press("ctrl+q")
    contents = [m.content for m in dirs.store().load(conv_id).messages]
    for text in ("from the app", "from the one-shot", "app again", "Echo: app again"):
        assert text in contents


async def test_a_full_disk_keeps_the_reply_marked_and_the_next_save_retries(make_app, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "saved fine")
        pane = app.main_screen.active_pane
        with fault_hook(no_space):
            await ui.send(pilot, "the disk is full now")
            errors = ui.notes(app, "error")
            assert errors and "no space left on device" in errors[-1].message.lower()
            assert pane.unsaved and "NOT SAVED" in status(pane)
            assert texts(pane)[-1] == "Echo: the disk is full now"
        await ui.send(pilot, "space again")
        assert not pane.unsaved and "NOT SAVED" not in status(pane)
        conv_id = pane.conversation.id
    saved = [m.content for m in dirs.store().load(conv_id).transcript]
    assert saved[-4:] == [
        "the disk is full now",
        "Echo: the disk is full now",
        "space again",
        "Echo: space again",
    ]


async def test_quitting_with_unsaved_messages_asks_first(make_app, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "one")
        pane = app.main_screen.active_pane
        with fault_hook(no_space):
            await ui.send(pilot, "two")
            await ui.press(pilot, "ctrl+q")
            await ui.wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen), "question")
            assert "no space left" in str(app.screen.query_one("Label").content).lower()
            await ui.press(pilot, "escape")  # cancel: stay
            assert app.is_running and app.screen is app.main_screen
        await ui.press(pilot, "ctrl+q")  # the disk has room again: saved, no question
        await ui.wait_until(pilot, lambda: not app.is_running, "the app to quit")
        conv_id = pane.conversation.id
    assert [m.content for m in dirs.store().load(conv_id).transcript][-2:] == ["two", "Echo: two"]


async def test_closing_a_tab_with_unsaved_messages_asks_and_can_discard(make_app, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "kept")
        await pilot.press("ctrl+n")
        await ui.send(pilot, "on a full disk")
        doomed = app.main_screen.active_pane
        with fault_hook(no_space):
            await ui.send(pilot, "still full")
            await ui.press(pilot, "ctrl+w")
            await ui.wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen), "question")
            await ui.press(pilot, "d")
        await ui.wait_until(pilot, lambda: doomed not in app.main_screen.panes(), "tab closed")
        assert len(app.main_screen.panes()) == 1


async def test_a_conversation_deleted_elsewhere_can_be_saved_as_new(make_app, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "before")
        pane = app.main_screen.active_pane
        old_id = pane.conversation.id
        dirs.store().delete(old_id)  # another chat-tui deleted it
        await ui.paste(pilot, "after")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen), "question")
        assert "deleted" in str(app.screen.query_one("Label").content)
        await ui.press(pilot, "s")
        await ui.settle(pilot)
        new_id = pane.conversation.id
        assert new_id != old_id and not pane.unsaved
    contents = [m.content for m in dirs.store().load(new_id).transcript]
    assert contents == ["before", "Echo: before", "after", "Echo: after"]
