"""Comparing a turn and replaying a reply in the app, with the real engine on a tiny
random Llama: both replies side by side, both saved as labelled versions of the turn,
the loaded model (and its cache) active afterwards; stops and quits keep what was
shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.engine.local import LocalEngine
from tui.engine.spec import ModelSpec
from tui.screens.comparison import ComparisonScreen
from tui.widgets.message_view import MessageView


@pytest.fixture
def real_app(tiny_llama_dir: Path, make_app):
    return make_app(
        spec=ModelSpec(source=str(tiny_llama_dir), dtype="fp32"),
        engine=None,
        load_on_start=True,
    )


async def _first_reply(app, pilot, ui, settings: str = "do_sample=false max_new_tokens=12"):
    await ui.wait_until(pilot, app.controller.ready.is_set, "the model to load", timeout=120)
    assert isinstance(app.controller.engine, LocalEngine)
    await ui.send(pilot, f"/set {settings}")
    await ui.send(pilot, "Name three colours.")
    pane = app.main_screen.active_pane
    user, reply = pane.conversation.transcript
    assert reply.role == "assistant" and reply.content
    return pane, user, reply


async def _comparison(app, pilot, ui) -> ComparisonScreen:
    await ui.wait_until(
        pilot, lambda: isinstance(app.screen, ComparisonScreen), "the comparison screen"
    )
    return app.screen  # type: ignore[return-value]


async def _long_comparison_streaming(app, pilot, ui):
    """A first reply, then a comparison of long replies, once the first is streaming:
    (pane, the first reply, the comparison screen)."""
    pane, _user, reply = await _first_reply(app, pilot, ui)
    await ui.send(pilot, "/set max_new_tokens=4000 min_new_tokens=4000")  # long replies
    await ui.paste(pilot, "/compare @bf16")
    await pilot.press("enter")
    screen = await _comparison(app, pilot, ui)
    await ui.wait_until(pilot, lambda: len(screen.texts[0]) > 20, "the first reply to stream")
    return pane, reply, screen


async def test_compare_fp32_with_bf16_side_by_side(real_app, dirs, ui) -> None:
    app = real_app
    async with app.run_test(size=(120, 40)) as pilot:
        pane, user, reply = await _first_reply(app, pilot, ui)
        engine = app.controller.engine
        model_before = app.controller.model
        cache_before = app.controller.cache_bytes(pane.conversation.id)
        assert cache_before > 0

        await ui.send(pilot, "/compare @bf16")
        screen = await _comparison(app, pilot, ui)
        await ui.wait_until(pilot, lambda: screen.finished, "the comparison", timeout=120)
        await pilot.pause()
        shown = ui.screen_text(app)
        assert "Name three colours." in shown
        assert "@fp32 (loaded model)" in shown and "@bf16" in shown
        assert "greedy" in shown  # said on screen: a fair comparison
        for stat in ("weights:", "peak:", "TTFT:", "tok/s:", "new:", "stop:", "similarity:"):
            assert shown.count(stat) == 2, stat
        status = str(screen.query_one("#compare-status").render())
        assert "1 reply kept as a version of this turn" in status
        assert "1 already a version of this turn, not kept twice" in status
        comparison = screen.comparison
        assert comparison is not None and comparison.greedy
        ref, other = comparison.replies
        assert ref.text and other.text
        assert screen.texts == [ref.text, other.text]
        assert other.similarity is not None and 0.0 <= other.similarity <= 1.0

        await ui.press(pilot, "escape")
        assert not isinstance(app.screen, ComparisonScreen)

        # the original model, the same object, with this conversation's cache
        assert app.controller.engine is engine and app.controller.model is model_before
        assert app.controller.cache_bytes(pane.conversation.id) == cache_before
        # the active branch is unchanged; the greedy reply was the reference (the same
        # text), so only the new reply joins it as a version, once, however often compared
        assert pane.conversation.transcript == [user, reply]
        assert ref.text == reply.content
        await ui.send(pilot, "/compare @bf16")
        again = await _comparison(app, pilot, ui)
        await ui.wait_until(pilot, lambda: again.finished, "the second comparison", timeout=120)
        await ui.press(pilot, "escape")
        siblings = pane.conversation.siblings(reply.id)
        assert [m.label for m in siblings] == [None, "@bf16"]
        assert [m.content for m in siblings] == [ref.text, other.text]
        header = next(v for v in pane.query(MessageView) if v.message is reply)
        assert header.version == (1, 2)
        conv_id = pane.conversation.id

        # and the conversation goes on with the original model
        await ui.send(pilot, "And three animals?")
        assert pane.conversation.transcript[-1].content

    saved = dirs.store().load(conv_id)
    labelled = {m.label: m for m in saved.messages if m.label}
    assert set(labelled) == {"@bf16"}
    assert labelled["@bf16"].content == other.text
    assert labelled["@bf16"].provenance["dtype"] == "bf16"
    assert labelled["@bf16"].weights_bytes and labelled["@bf16"].peak_bytes
    assert len(saved.transcript) == 4  # the active branch went on as before


async def test_compare_with_8bit_one_after_the_other(real_app, dirs, ui) -> None:
    pytest.importorskip("bitsandbytes")
    app = real_app
    async with app.run_test(size=(120, 40)) as pilot:
        pane, _user, reply = await _first_reply(app, pilot, ui)
        model_before = app.controller.model
        await ui.send(pilot, "/compare @8bit load=sequential")
        screen = await _comparison(app, pilot, ui)
        await ui.wait_until(pilot, lambda: screen.finished, "the comparison", timeout=180)
        shown = ui.screen_text(app)
        assert "@8bit" in shown
        notes = screen.comparison.notes
        assert any("ran one after the other (as asked)" in note for note in notes)
        assert "ran one after the other" in " ".join(shown.split())
        ref, other = screen.comparison.replies
        assert other.error is None and other.text
        assert other.weights_bytes < ref.weights_bytes
        await ui.press(pilot, "escape")
        assert app.controller.model is model_before
        assert next(iter(model_before.model.parameters())).device.type == "cpu"
        labels = [m.label for m in pane.conversation.siblings(reply.id)]
        assert labels == [None, "@8bit"]  # the greedy reply was the reference's text


async def test_esc_stops_a_comparison_and_keeps_what_was_shown(real_app, dirs, ui) -> None:
    app = real_app
    async with app.run_test(size=(120, 40)) as pilot:
        pane, reply, screen = await _long_comparison_streaming(app, pilot, ui)
        await ui.press(pilot, "escape")
        await ui.wait_until(pilot, lambda: screen.finished, "the comparison to stop", timeout=60)
        shown_first = screen.texts[0]
        await ui.press(pilot, "escape")
        kept = [m for m in pane.conversation.siblings(reply.id) if m.label]
        assert kept and kept[0].label == "@fp32"
        assert kept[0].stop_reason == "stopped"
        assert kept[0].content == shown_first
        assert not pane.side_task
        conv_id = pane.conversation.id
    saved = [m for m in dirs.store().load(conv_id).messages if m.label]
    assert [m.content for m in saved] == [m.content for m in kept]


async def test_quitting_mid_comparison_saves_what_was_shown(real_app, dirs, ui) -> None:
    app = real_app
    async with app.run_test(size=(120, 40)) as pilot:
        pane, reply, screen = await _long_comparison_streaming(app, pilot, ui)
        conv_id = pane.conversation.id
        app.save_and_exit(15)  # as SIGTERM (or a closed terminal) does
        shown = pane.conversation.siblings(reply.id)[-1].content
    saved = [m for m in dirs.store().load(conv_id).messages if m.label]
    assert len(saved) == 1 and saved[0].label == "@fp32"
    assert saved[0].stop_reason == "interrupted"
    assert saved[0].content == shown and shown.startswith(screen.texts[0][:20])


async def test_replay_a_reply_by_key_and_by_command(real_app, ui) -> None:
    app = real_app
    async with app.run_test(size=(120, 40)) as pilot:
        pane, _user, reply = await _first_reply(
            app, pilot, ui, "do_sample=true temperature=0.9 max_new_tokens=12"
        )
        assert isinstance(reply.provenance["seed"], int) and reply.provenance["seed_drawn"]
        await ui.send(pilot, "/replay")
        await ui.wait_until(pilot, lambda: not pane.side_task, "the replay", timeout=60)
        assert [n.message for n in ui.notes(app) if n.title == "Replay"] == ["identical"]

        view = next(v for v in pane.query(MessageView) if v.message is reply)
        pane.focus_message(view)
        await ui.press(pilot, "enter")  # what to do with it
        await ui.press(pilot, "p")  # replay
        await ui.wait_until(
            pilot,
            lambda: len([n for n in ui.notes(app) if n.title == "Replay"]) == 2,
            "the second replay",
            timeout=60,
        )
        assert ui.notes(app)[-1].message == "identical"


async def test_what_cannot_be_compared_is_one_sentence(make_app, ui) -> None:
    app = make_app()  # the tests' stand-in engine: not a model on this machine
    async with app.run_test() as pilot:
        await ui.send(pilot, "/compare @bf16")
        assert ui.notes(app)[-1].message == "There is no reply to compare; send a message first."
        await ui.send(pilot, "Hello")
        pane = app.main_screen.active_pane
        before = [m.id for m in pane.conversation.messages]
        await ui.send(pilot, "/compare @fp8")
        assert not isinstance(app.screen, ComparisonScreen)
        error = ui.notes(app, "error")[-1]
        assert error.title == "Not compared" and error.message.count(".") >= 1
        assert "@fp8" in error.message and "\n" not in error.message
        await ui.send(pilot, "/compare @bf16")
        await ui.wait_until(pilot, lambda: not pane.side_task, "the comparison to end")
        assert "switch" in ui.notes(app, "error")[-1].message
        assert [m.id for m in pane.conversation.messages] == before
        if isinstance(app.screen, ComparisonScreen):
            await ui.press(pilot, "escape")
        await ui.send(pilot, "/replay")
        await ui.wait_until(pilot, lambda: not pane.side_task, "the replay to end")
        assert ui.notes(app, "error")[-1].title == "Not replayed"
        await ui.send(pilot, "Still here?")
        assert pane.conversation.transcript[-1].content
