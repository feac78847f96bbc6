"""Hostile text reaches the app's every sink as plain, neutralized text: the message
view, the tab label, the status line, the header, notifications and the session
browser. What is drawn (the screen's rendered segments) carries no control character,
nothing is read as markup, and the conversation still stores the text as received."""

from __future__ import annotations

from tests.hostile import CORPUS, controls_in
from tui.screens.session_browser import SessionBrowser
from tui.widgets.message_view import MessageView

SIZE = (120, 40)
ALL = "\n\n".join(f"{name}: {text}" for name, text in CORPUS.items() if len(text) < 5000)


def drawn(app) -> str:
    """Every character on screen, from the compositor's segments (what the driver would
    write, before any SVG or test escaping)."""
    strips = app.screen._compositor.render_strips()
    return "".join(segment.text for strip in strips for segment in strip)


def assert_clean(app) -> None:
    text = drawn(app)
    assert controls_in(text) == set(), sorted(controls_in(text))
    text.encode("utf-8")  # no lone surrogate


async def test_a_hostile_reply_title_model_and_error_are_drawn_harmlessly(
    make_app, engine, dirs, ui
):
    engine.loaded.name = "evil\x1b]0;pwned\x07-model [bold]x[/bold]"
    engine.replies = [[ALL[: len(ALL) // 2], ALL[len(ALL) // 2 :]]]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        title = "\x1b[2J\x1b]0;title\x07[/bold] \ud800 tab"
        await ui.send(pilot, title)
        pane = app.main_screen.active_pane
        assert pane.conversation.transcript[-1].content == ALL  # stored as received
        assert pane.conversation.transcript[0].content == title
        await ui.wait_until(pilot, lambda: "␛" in drawn(app), "the reply on screen")
        assert_clean(app)
        assert "[/bold]" in drawn(app)  # shown literally, never taken as markup
        # a server error that looks like markup, in a notification
        engine.chat_error = RuntimeError("[/bold] \x1b[31mfailed\x1b[0m \x9b2J")
        await ui.send(pilot, "again")
        await ui.wait_until(pilot, lambda: ui.notes(app, "error"), "the error")
        assert_clean(app)
        conv_id = pane.conversation.id
    saved = dirs.store().load(conv_id)
    assert saved.transcript[0].content == title and saved.transcript[1].content == ALL


async def test_hostile_titles_and_models_in_the_session_browser(make_app, dirs, ui):
    store = dirs.store()
    for name, text in list(CORPUS.items())[:20]:
        conv = store.new(model={"source": f"m {text[:40]}"})
        conv.append("user", text)
        conv.title = f"{name}: {text[:60]}"
        store.save(conv)
    (store.folder / "[x=1=2]bad\x1b]0;t\x07.toml").write_text("not = [toml")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.ready(pilot)
        await pilot.press("ctrl+o")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, SessionBrowser), "browser")
        await ui.wait_until(pilot, lambda: "unreadable" in drawn(app), "the list")
        assert_clean(app)
        assert "[x=1=2]bad" in drawn(app)


async def test_hostile_titles_models_and_queries_in_the_palette(make_app, dirs, ui):
    """bench/monkey.py seed 273429663: a query typed in the palette (a pasted escape
    sequence, then `/set … max_new_tokens=20`) was read as markup by Textual and a
    MarkupError ended the app. A title from a file went the same way: a conversation
    titled ``[x=1=2]…`` could never be found (its search raised). Every hit is plain
    text now. A pasted escape sequence was drawn raw by Textual's inputs (the prompt
    and the palette's query): it is kept in the prompt as pasted, drawn harmless."""
    from textual.command import CommandPalette

    store = dirs.store()
    conv = store.new(model={"source": "[b x=20 [link=https://example.com]m[/link]"})
    conv.append("user", "hello")
    conv.title = "[x=1=2]open me \x1b]0;t\x07 [reverse]"
    store.save(conv)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.ready(pilot)
        hostile = "x\x1b[2J\x1b]52;c;cHduZWQ=\x07y"  # clear the screen, set the clipboard
        await ui.paste(pilot, hostile)  # into the prompt: kept as pasted, drawn harmless
        prompt = app.main_screen.active_pane.prompt
        assert prompt.text == hostile
        assert_clean(app)
        prompt.clear()
        await pilot.press("ctrl+p")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "palette")
        await ui.paste(pilot, "conversation open me")
        await ui.wait_until(pilot, lambda: "[x=1=2]open me" in drawn(app), "the hostile title")
        assert "[b x=20 [link=https://example.com]m[/link]" in drawn(app)  # its help line
        assert_clean(app)
        await pilot.press(*["backspace"] * len("conversation open me"))
        await ui.paste(pilot, "\x1b[31mred [b /set temperature=0.7 max_new_tokens=20")
        typed = "Load model: ␛[31mred [b /set temperature=0.7 max_new_tokens=20"
        await ui.wait_until(pilot, lambda: typed in drawn(app), "the typed query's hit")
        assert app.is_running
        assert_clean(app)


HOSTILE_FILES = {
    "deep.toml": b"a = " + b"[" * 100_000 + b"]" * 100_000,
    "bytes.toml": bytes(range(256)) * 4,
    "head-list.toml": b'schema_version = 2\nid = "head-list"\nhead = ["a"]\nmessages = []\n',
    "old-five.toml": b'schema_version = 1\nid = "old-five"\nmessages = 5\n',
    "cycle.toml": (
        b'schema_version = 2\nid = "cycle"\nhead = "a"\n'
        b'[[messages]]\nid = "a"\nparent = "b"\nrole = "user"\ncontent = "x"\n'
        b'[[messages]]\nid = "b"\nparent = "a"\nrole = "assistant"\ncontent = "y"\n'
    ),
    "escape\x1b]0;t\x07.toml": b"\x1b]0;pwned\x07 = 1\n",
}


async def test_hostile_files_beside_a_healthy_conversation(make_app, dirs, ui):
    """The healthy conversation opens and is listed; every hostile file is listed as
    unreadable with its reason, and not one byte of them changes."""
    store = dirs.store()
    good = store.new(model={"source": "default"})
    good.append("user", "the healthy one")
    store.save(good)
    for name, data in HOSTILE_FILES.items():
        (store.folder / name).write_bytes(data)
    (store.folder / ".index.json").write_text('{"version": 2, "files": {"x": [1, 2]}}')
    dirs.set_open_tabs([good.id, "cycle", "deep"])
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        assert [p.conversation.id for p in app.main_screen.panes()] == [good.id]
        await ui.send(pilot, "still answering")
        await pilot.press("ctrl+o")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, SessionBrowser), "browser")
        await ui.wait_until(pilot, lambda: app.screen.loaded, "the list")
        assert [r.info.id for r in app.screen.rows] == [good.id]
        note = str(app.screen.query_one("#browser-note").render())
        assert note.count("unreadable") == 1 and "cycle" in note
        assert_clean(app)
    for name, data in HOSTILE_FILES.items():
        assert (store.folder / name).read_bytes() == data, name


async def test_long_replies_are_drawn_in_part_and_saved_even_past_the_file_limit(
    make_app, engine, dirs, ui, monkeypatch
):
    """Item 10: a 2 MiB reply froze the window for half a minute (Markdown redrawn on
    every chunk), and once a conversation's replies passed the file's limit every later
    message stayed NOT SAVED. A window draws the first 50,000 characters and says how
    much more there is; the save cuts the longest texts to fit, says so, and goes on."""
    from tui import safe_text
    from tui.store import store as store_module

    # the same bounds, smaller (50,000 characters drawn, 16 MiB a file)
    monkeypatch.setattr(safe_text, "DRAWN_CHARS", 5_000)
    monkeypatch.setattr(store_module, "MAX_FILE_BYTES", 240_000)
    long = "word " * 20_000  # 100,000 characters
    engine.replies = [[long[i : i + 4_000] for i in range(0, len(long), 4_000)]] * 3
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main_screen.active_pane
        await ui.send(pilot, "one")
        view = list(pane.query(MessageView))[-1]
        source = view.body.source
        assert len(source) < 5_000 + 300 and "95,000 more characters" in source
        assert not ui.notes(app, "warning")
        await ui.send(pilot, "two")
        await ui.send(pilot, "three")
        await ui.wait_until(pilot, lambda: ui.notes(app, "warning"), "the notice of cuts")
        assert "reached its file's limit" in ui.notes(app, "warning")[0].message
        assert not pane.unsaved
        await ui.send(pilot, "and after them?")
        assert not pane.unsaved
    back = app.sessions.store.load(pane.conversation.id)
    assert [m.content for m in back.transcript][-2:] == ["and after them?", "Echo: and after them?"]
    assert len(back.transcript) == 8 and back.transcript[1].content.startswith(long[:16_000])
    assert any("were cut here" in m.content for m in back.transcript)
