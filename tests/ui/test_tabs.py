"""Tabs: opening, closing, switching, streaming in the background, two replies at once,
and the open tabs coming back after a restart."""

from __future__ import annotations

from tui.widgets.message_view import MessageView

SIZE = (120, 40)


def texts(pane) -> list[str]:
    return [v.message.content for v in pane.query(MessageView)]


async def test_ctrl_n_opens_a_tab_and_the_tab_keys_switch(make_app, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        first = app.main_screen.active_pane
        await pilot.press("ctrl+n")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "a second tab")
        second = app.main_screen.active_pane
        assert second is not first
        assert app.focused is second.prompt
        await pilot.press("ctrl+pageup")
        await ui.wait_until(
            pilot,
            lambda: app.main_screen.active_pane is first and app.focused is first.prompt,
            "app.main_screen.active_pane is first and app.focused is f...",
        )
        assert app.main_screen.active_pane is first and app.focused is first.prompt
        await pilot.press("ctrl+pagedown")
        await ui.wait_until(
            pilot,
            lambda: app.main_screen.active_pane is second,
            "app.main_screen.active_pane is second",
        )
        assert app.main_screen.active_pane is second
        await pilot.press("ctrl+pagedown")  # wraps around
        await ui.wait_until(
            pilot,
            lambda: app.main_screen.active_pane is first,
            "app.main_screen.active_pane is first",
        )
        assert app.main_screen.active_pane is first
        await pilot.press("alt+left")
        await ui.wait_until(
            pilot,
            lambda: app.main_screen.active_pane is second,
            "app.main_screen.active_pane is second",
        )
        assert app.main_screen.active_pane is second
        await pilot.press("alt+right")
        await ui.wait_until(
            pilot,
            lambda: app.main_screen.active_pane is first,
            "app.main_screen.active_pane is first",
        )
        assert app.main_screen.active_pane is first


async def test_ctrl_w_closes_the_active_tab(make_app, ui):
    """The prompt has focus whenever a tab is shown, so ctrl+w must reach the app."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n")
        await ui.wait_until(
            pilot, lambda: len(app.main_screen.panes()) == 2, "len(app.main_screen.panes()) == 2"
        )
        assert len(app.main_screen.panes()) == 2
        assert app.focused is app.main_screen.active_pane.prompt
        await pilot.press("ctrl+w")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 1, "one tab")
        assert len(app.main_screen.panes()) == 1, (
            "ctrl+w did not close the tab (the focused prompt took the key)"
        )


async def test_closing_tabs_saves_them_and_never_leaves_none(make_app, engine, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "keep me")
        first = app.main_screen.active_pane
        conv_id = first.conversation.id
        await app.main_screen.run_action("close_tab")  # what ctrl+w is bound to
        await ui.wait_until(
            pilot,
            lambda: first not in app.main_screen.panes(),
            "first not in app.main_screen.panes()",
        )
        assert first not in app.main_screen.panes()
        assert len(app.main_screen.panes()) == 1  # a fresh tab replaces the last one
        assert app.main_screen.active_pane.conversation.id != conv_id
        assert texts(app.main_screen.active_pane) == []
        assert engine.forgotten == [conv_id]
        assert conv_id not in dirs.open_tabs()
    assert dirs.store().load(conv_id).transcript[0].content == "keep me"


async def test_a_reply_keeps_streaming_into_its_own_tab_after_switching(make_app, engine, dirs, ui):
    engine.replies = [["Background", " reply", " finished"]]
    engine.hold_after = 1
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        first = app.main_screen.active_pane
        await ui.paste(pilot, "long question")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: engine.held == 1, "the reply to start")
        await pilot.press("ctrl+n")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "a second tab")
        second = app.main_screen.active_pane
        assert second is not first and first.generating
        engine.release.set()
        await ui.settle(pilot)
        assert app.main_screen.active_pane is second
        assert texts(first) == ["long question", "Background reply finished"]
        assert first.conversation.transcript[-1].stop_reason == "eos"
        assert texts(second) == [] and second.conversation.messages == []
        conv_id = first.conversation.id
    assert dirs.store().load(conv_id).transcript[-1].content == "Background reply finished"


async def test_two_tabs_generate_at_once_and_each_reply_lands_in_its_tab(
    make_app, engine, dirs, ui
):
    engine.hold_after = 1  # echo replies: "Echo" ... ": <question>"
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        first = app.main_screen.active_pane
        await ui.paste(pilot, "alpha")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: engine.held == 1, "the first reply to start")
        await pilot.press("ctrl+n")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "a second tab")
        second = app.main_screen.active_pane
        await ui.paste(pilot, "beta")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: engine.held == 2, "the second reply to start")
        assert first.generating and second.generating
        engine.release.set()
        await ui.settle(pilot)
        assert texts(first) == ["alpha", "Echo: alpha"]
        assert texts(second) == ["beta", "Echo: beta"]
        ids = {c.conversation_id for c in engine.calls}
        assert ids == {first.conversation.id, second.conversation.id}
        first_id, second_id = first.conversation.id, second.conversation.id
    store = dirs.store()
    assert [m.content for m in store.load(first_id).transcript] == ["alpha", "Echo: alpha"]
    assert [m.content for m in store.load(second_id).transcript] == ["beta", "Echo: beta"]


async def test_open_tabs_come_back_after_a_restart(make_app, dirs, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "in tab one")
        await pilot.press("ctrl+n")
        await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "a second tab")
        await ui.send(pilot, "in tab two")
        ids = [p.conversation.id for p in app.main_screen.panes()]
        await pilot.press("ctrl+q")
    assert app.return_code == 0
    assert dirs.open_tabs() == ids

    again = make_app()
    async with again.run_test(size=SIZE) as pilot:
        await pilot.pause()
        panes = again.main_screen.panes()
        assert [p.conversation.id for p in panes] == ids
        assert texts(panes[0]) == ["in tab one", "Echo: in tab one"]
        assert texts(panes[1]) == ["in tab two", "Echo: in tab two"]


async def test_a_corrupted_session_named_in_open_tabs_does_not_stop_the_app(make_app, dirs, ui):
    store = dirs.store()
    good = store.new(model={"source": "default"})
    good.append("user", "still readable")
    store.save(good)
    broken = store.folder / "broken-conv.toml"
    broken.write_bytes(b'schema_version = 1\nid = "broken-conv"\nmessages = [[[ not toml\n')
    before = broken.read_bytes()
    dirs.set_open_tabs(["broken-conv", good.id])

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.wait_until(
            pilot,
            lambda: [p.conversation.id for p in app.main_screen.panes()] == [good.id],
            "[p.conversation.id for p in app.main_screen.panes()] == [...",
        )
        assert [p.conversation.id for p in app.main_screen.panes()] == [good.id]
        assert texts(app.main_screen.active_pane) == ["still readable"]
        warnings = ui.notes(app, "warning")
        assert any("broken-conv" in n.message for n in warnings)
        await ui.send(pilot, "and it still works")
    assert broken.read_bytes() == before


async def test_only_a_corrupted_session_still_gives_a_usable_tab(make_app, dirs, ui):
    store = dirs.store()
    store.folder.mkdir(parents=True, exist_ok=True)
    broken = store.folder / "only.toml"
    broken.write_bytes(b"\xff\xfe not text at all")
    dirs.set_open_tabs(["only"])
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.wait_until(
            pilot, lambda: len(app.main_screen.panes()) == 1, "len(app.main_screen.panes()) == 1"
        )
        assert len(app.main_screen.panes()) == 1
        assert any("only" in n.message for n in ui.notes(app, "warning"))
        await ui.send(pilot, "hello")
        assert texts(app.main_screen.active_pane) == ["hello", "Echo: hello"]
    assert broken.read_bytes() == b"\xff\xfe not text at all"
