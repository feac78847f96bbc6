"""Several tabs generating at once: the tab bar marks the tabs that are making a reply,
the status line counts the replies streaming, Esc stops only its own tab, a reply that
waits says for what, and ``/regenerate 3`` makes three versions of the last reply."""

from __future__ import annotations

from tui.screens.main import GENERATING_MARK, UNSEEN_MARK


def _labels(app) -> list[str]:
    from textual.widgets._tabbed_content import ContentTab

    return [str(t.label) for t in app.main_screen.tabs.query(ContentTab)]


def _status(pane) -> str:
    from tui.widgets.status_line import StatusLine

    return str(pane.query_one(StatusLine).render())


async def _two_tabs_streaming(app, pilot, ui, engine):
    """Tab 1 and tab 2 both streaming (each held after its first chunk)."""
    engine.hold_after = 1
    await ui.paste(pilot, "first question")
    await pilot.press("enter")
    await ui.wait_until(pilot, lambda: engine.held == 1, "tab 1 to stream")
    await pilot.press("ctrl+n")
    await ui.wait_until(pilot, lambda: len(app.main_screen.panes()) == 2, "a second tab")
    await ui.paste(pilot, "second question")
    await pilot.press("enter")
    await ui.wait_until(pilot, lambda: engine.held == 2, "tab 2 to stream")
    return app.main_screen.panes()


async def test_two_tabs_stream_at_once_and_esc_stops_only_its_own(make_app, engine, ui) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        first, second = await _two_tabs_streaming(app, pilot, ui, engine)
        assert first.generating and second.generating
        await ui.wait_until(
            pilot,
            lambda: all(label.startswith(GENERATING_MARK) for label in _labels(app)),
            "both tabs marked as generating",
        )
        await ui.wait_until(
            pilot, lambda: "2 replies streaming" in _status(second), "the count of streams"
        )
        assert "2 replies streaming" in _status(first)

        await pilot.press("escape")  # in tab 2, the active one
        await ui.wait_until(pilot, lambda: not second.generating, "tab 2 to stop")
        assert first.generating  # tab 1 still streams
        await ui.wait_until(
            pilot, lambda: not _labels(app)[1].startswith(GENERATING_MARK), "tab 2's mark gone"
        )
        assert _labels(app)[0].startswith(GENERATING_MARK)
        await ui.wait_until(
            pilot, lambda: "replies streaming" not in _status(second), "the count updated"
        )
        assert second.conversation.transcript[-1].stop_reason == "stopped"

        engine.release.set()  # tab 1 ends in the background: marked until visited
        await ui.settle(pilot)
        await ui.wait_until(
            pilot, lambda: _labels(app)[0].startswith(UNSEEN_MARK), "tab 1 marked unseen"
        )
        assert first.conversation.transcript[-1].content == "Echo: first question"
        await pilot.press("alt+1")
        await ui.wait_until(
            pilot, lambda: not _labels(app)[0].startswith(UNSEEN_MARK), "the mark cleared"
        )


async def test_each_reply_runs_in_a_thread_that_ends_with_it(make_app, engine, ui):
    """A live thread that once ran torch keeps an OpenMP team, which slows the batch's
    products by half (tui.engine.threads): so the app's workers must not run on threads
    that outlive them, as the event loop's default executor's do."""
    import threading

    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await _two_tabs_streaming(app, pilot, ui, engine)
        engine.release.set()
        await ui.wait_until(
            pilot, lambda: not any(p.generating for p in app.main_screen.panes()), "replies"
        )
        assert len(set(engine.threads)) == 2  # the two replies
        assert threading.main_thread() not in engine.threads
        await ui.wait_until(
            pilot, lambda: not any(t.is_alive() for t in engine.threads), "their threads to end"
        )


async def test_a_reply_that_waits_says_for_what(make_app, engine, ui) -> None:
    engine.waiting_for = "a comparison to finish"
    app = make_app()
    async with app.run_test(size=(140, 30)) as pilot:
        pane = app.main_screen.active_pane
        await ui.paste(pilot, "hello")
        await pilot.press("enter")
        await ui.wait_until(
            pilot,
            lambda: "waiting for a comparison to finish… (esc stops)" in _status(pane),
            "the waiting line",
        )
        assert _labels(app)[0].startswith(GENERATING_MARK)
        assert "replies streaming" not in _status(pane)  # waiting is not streaming
        engine.proceed.set()
        await ui.settle(pilot)
        assert "waiting for" not in _status(pane)
        assert pane.conversation.transcript[-1].content == "Echo: hello"


async def test_regenerate_3_makes_three_versions_at_once(make_app, engine, ui) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        pane = app.main_screen.active_pane
        await ui.send(pilot, "/set do_sample=true seed=5")
        await ui.send(pilot, "tell me a story")
        first_reply = pane.conversation.transcript[-1]
        engine.calls.clear()
        engine.replies = [["one"], ["two"], ["three"]]
        await ui.send(pilot, "/regenerate 3")
        assert len(engine.calls) == 3
        # the reply shown keeps the conversation's cache and seed; the others only read
        # the cache and sample with seeds of their own
        assert sorted(c.settings["seed"] for c in engine.calls) == [5, 6, 7]
        keeper = next(c for c in engine.calls if c.keep_cache)
        assert keeper.settings["seed"] == 5
        assert sum(1 for c in engine.calls if not c.keep_cache) == 2
        assert all(c.conversation_id == pane.conversation.id for c in engine.calls)
        versions = pane.conversation.siblings(first_reply.id)
        assert len(versions) == 4
        assert {v.content for v in versions} == {first_reply.content, "one", "two", "three"}
        head = pane.conversation.transcript[-1]
        assert head.content in {"one", "two", "three"} and head is not first_reply
        assert any("4 versions of this reply" in n.message for n in ui.notes(app))


async def test_regenerate_3_is_in_the_palette(make_app, engine, ui) -> None:
    from textual.command import CommandPalette

    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        pane = app.main_screen.active_pane
        await ui.send(pilot, "hello")
        engine.calls.clear()

        await pilot.press("ctrl+p")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "palette")
        await pilot.press(*"regenerate 3")
        await ui.wait_until(
            pilot, lambda: "/regenerate 3" in ui.palette_highlighted(app), "the entry"
        )
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: len(engine.calls) == 3, "three replies")
        await ui.settle(pilot)
        assert len(pane.conversation.siblings(pane.conversation.transcript[-1].id)) == 4


async def test_regenerate_refuses_a_bad_count_and_greedy_alternatives(make_app, engine, ui):
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await ui.send(pilot, "hello")
        engine.calls.clear()
        await ui.send(pilot, "/regenerate lots")
        assert any("1 to 8" in n.message for n in ui.notes(app, "warning"))
        await ui.send(pilot, "/set do_sample=false")
        await ui.send(pilot, "/regenerate 3")
        assert any("decodes greedily" in n.message for n in ui.notes(app, "warning"))
        assert engine.calls == []


async def test_regenerate_3_refuses_when_the_model_decodes_greedily(make_app, engine, ui):
    """The conversation sets nothing, and the model's own settings made the last reply
    greedily: three versions would be one, so it says so instead of making them."""
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        pane = app.main_screen.active_pane
        await ui.send(pilot, "hello")
        pane.conversation.transcript[-1].provenance = {"settings": {"do_sample": False}}
        engine.calls.clear()
        await ui.send(pilot, "/regenerate 3")
        assert any("decodes greedily" in n.message for n in ui.notes(app, "warning"))
        assert engine.calls == []
        await ui.send(pilot, "/set do_sample=true")  # the conversation's own word wins
        await ui.send(pilot, "/regenerate 3")
        assert len(engine.calls) == 3


async def test_the_memory_meter_counts_every_tabs_caches() -> None:
    """The meter shows this tab's KV cache and, when other tabs hold caches too (kept
    between turns, or in the batch while they stream), all of them."""
    from textual.app import App
    from textual.widgets import Static

    from tui.engine.memory import MemorySnapshot, MiB
    from tui.widgets.memory_meter import MemoryMeter
    from tui.worker_messages import MemorySample

    class Host(App):
        def compose(self):
            yield MemoryMeter()

    snapshot = MemorySnapshot(500 * MiB, 6000 * MiB, 8000 * MiB)
    async with Host().run_test() as pilot:
        meter = pilot.app.query_one(MemoryMeter)
        lines = meter.query_one(".memory-lines", Static)
        meter.show(MemorySample(snapshot, 50 * MiB, 3 * MiB, 3 * MiB))
        await pilot.pause()
        assert "KV cache 3.0 MiB (this tab)" in str(lines.content)
        assert "all tabs" not in str(lines.content)  # only this tab holds a cache
        meter.show(MemorySample(snapshot, 50 * MiB, 3 * MiB, 12 * MiB))
        await pilot.pause()
        assert str(lines.content).splitlines()[-2:] == [
            "KV cache 3.0 MiB (this tab)",
            "         12.0 MiB (all tabs)",
        ]
