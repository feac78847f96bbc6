"""The app with its real engine, loading a tiny random Llama through the user's path."""

from __future__ import annotations

from pathlib import Path

from tui.engine.local import LocalEngine
from tui.engine.spec import ModelSpec
from tui.widgets.message_view import MessageView


async def test_chat_with_a_real_tiny_model(tiny_llama_dir: Path, make_app, dirs, ui) -> None:
    app = make_app(  # no fake: the app builds its own LocalEngine and loads the folder
        spec=ModelSpec(source=str(tiny_llama_dir), dtype="fp32"),
        engine=None,
        load_on_start=True,
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.wait_until(pilot, app.controller.ready.is_set, "the model to load", timeout=120)
        await ui.wait_until(
            pilot,
            lambda: isinstance(app.controller.engine, LocalEngine),
            "isinstance(app.controller.engine, LocalEngine)",
        )
        assert isinstance(app.controller.engine, LocalEngine)
        assert app.controller.engine.loaded.spec.source == str(tiny_llama_dir)
        # the bar hides once the UI thread has handled the load's end
        await ui.wait_until(
            pilot, lambda: not app.query_one("#load-progress").display, "the progress bar to hide"
        )
        await ui.paste(pilot, "/set do_sample=false max_new_tokens=8")
        await pilot.press("enter")
        await ui.settle(pilot)
        pane = app.main_screen.active_pane
        assert pane.conversation.settings == {"do_sample": False, "max_new_tokens": 8}
        await ui.paste(pilot, "Hello, who are you?")
        await pilot.press("enter")
        await ui.settle(pilot)
        user, reply = pane.conversation.transcript
        assert user.content == "Hello, who are you?"
        assert reply.role == "assistant" and reply.content.strip()
        assert 1 <= reply.new_tokens <= 8
        assert reply.stop_reason in ("eos", "length")
        assert reply.prompt_tokens and reply.prompt_tokens > 5  # the chat template was applied
        assert [v.message.content for v in pane.query(MessageView)][-1] == reply.content
        conv_id = pane.conversation.id

    saved = dirs.store().load(conv_id).transcript[-1]
    assert saved.content == reply.content
    assert saved.new_tokens == reply.new_tokens
    assert saved.stop_reason == reply.stop_reason
    assert saved.tokens_per_second and saved.tokens_per_second > 0


async def test_regenerate_3_with_a_real_tiny_model(tiny_llama_dir: Path, make_app, ui) -> None:
    """Three replies to one turn, made together by the real engine (its batch), each
    with its own seed, kept as versions of the turn."""
    app = make_app(
        spec=ModelSpec(source=str(tiny_llama_dir), dtype="fp32"), engine=None, load_on_start=True
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.wait_until(pilot, app.controller.ready.is_set, "the model to load", timeout=120)
        await ui.send(pilot, "/set do_sample=true seed=5 max_new_tokens=12")
        await ui.send(pilot, "Hello, who are you?")
        pane = app.main_screen.active_pane
        first = pane.conversation.transcript[-1]
        await ui.send(pilot, "/regenerate 3")
        versions = pane.conversation.siblings(first.id)
        assert len(versions) == 4
        made = [v for v in versions if v is not first]
        assert sorted(v.provenance["seed"] for v in made) == [5, 6, 7]
        assert all(v.content and v.stop_reason in ("eos", "length") for v in made)
        assert pane.conversation.transcript[-1].provenance["seed"] == 5
        assert not [n for n in ui.notes(app, "error")]
