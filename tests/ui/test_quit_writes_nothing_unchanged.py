"""Quitting saves what changed and nothing else: an open conversation that did not
change keeps its file byte for byte (revision, time and mode)."""

from __future__ import annotations

import os


async def test_quitting_leaves_unchanged_conversations_alone(make_app, dirs, ui) -> None:
    store = dirs.store()
    conv = store.new(name="read only today")
    conv.append("user", "hello")
    conv.append("assistant", "hi there")
    store.save(conv)
    path = store.path_for(conv.id)
    os.chmod(path, 0o644)
    before = (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_mode)
    dirs.set_open_tabs([conv.id])
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.main_screen.active_pane.conversation.id == conv.id
        await pilot.press("ctrl+n")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "a new tab")
        await ui.send(pilot, "a new one")  # this one changes, and is saved
        new_id = app.main_screen.active_pane.conversation.id
        await pilot.press("ctrl+q")
    assert (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_mode) == before
    assert dirs.store().load(new_id).transcript[-1].content == "Echo: a new one"
