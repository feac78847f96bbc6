"""One conversation tab: sending, streaming, stopping, the prompt's keys, regenerating,
editing, reply versions, worker failures and SIGTERM."""

from __future__ import annotations

import signal

import pytest
from textual.widgets import Static

from tui.widgets.message_view import MessageView

SIZE = (120, 40)


def views(pane) -> list[MessageView]:
    return list(pane.query(MessageView))


def texts(pane) -> list[str]:
    return [v.message.content for v in views(pane)]


def header_text(view: MessageView) -> str:
    """The header as drawn (markup applied), not the string it was given."""
    return str(view.query_one(".message-header", Static).render())


async def test_question_and_streamed_reply_are_shown_saved_and_timed(make_app, engine, dirs, ui):
    engine.replies = [["The answer", " is", " **42**", "."]]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "What is the answer?")
        pane = app.main_screen.active_pane
        shown = views(pane)
        assert [v.message.role for v in shown] == ["user", "assistant"]
        assert texts(pane) == ["What is the answer?", "The answer is **42**."]
        reply_view = shown[1]
        assert reply_view.body.source == "The answer is **42**."
        assert not reply_view.streaming
        assert header_text(reply_view) == (
            "Assistant · fake-model · 4 tokens · first token 250 ms · 40.0 tok/s"
        )
        status = str(pane.query_one(".status", Static).content)
        assert "40.0 tok/s" in status and "first token 250 ms" in status
        assert "fake-model" in status
        assert pane.prompt.text == ""
        # the model saw the question
        assert engine.calls[-1].messages == [{"role": "user", "content": "What is the answer?"}]
        conv_id = pane.conversation.id

    saved = dirs.store().load(conv_id)
    user, reply = saved.transcript
    assert (user.role, user.content) == ("user", "What is the answer?")
    assert reply.content == "The answer is **42**."
    assert reply.new_tokens == 4
    assert reply.stop_reason == "eos"
    assert reply.tokens_per_second == 40.0
    assert reply.model == "fake-model"
    assert saved.title == "What is the answer?"


async def test_escape_stops_the_stream_and_keeps_the_partial_reply(make_app, engine, dirs, ui):
    engine.replies = [["One", " two", " three", " four"]]
    engine.hold_after = 2
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main_screen.active_pane
        await ui.paste(pilot, "count to four")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: engine.held == 1, "the first two chunks")
        await ui.wait_until(pilot, lambda: pane.stream.partial.startswith("One"), "text on screen")
        assert pane.generating
        await pilot.press("escape")
        await ui.settle(pilot)
        reply = pane.conversation.transcript[-1]
        assert (reply.role, reply.content, reply.stop_reason) == ("assistant", "One two", "stopped")
        assert reply.new_tokens == 2
        assert views(pane)[-1].has_class("interrupted")
        assert any("partial reply is kept" in n.message for n in ui.notes(app))
        conv_id = pane.conversation.id

    saved = dirs.store().load(conv_id).transcript[-1]
    assert (saved.content, saved.stop_reason) == ("One two", "stopped")


@pytest.mark.parametrize("stop", ["escape", "sigterm"])
async def test_an_interrupted_reply_says_so_in_its_header(make_app, engine, ui, stop):
    """The header text (``message_view.describe``) ends in ``[stopped]`` /
    ``[interrupted]``; what is drawn on screen must show it too."""
    engine.replies = [["One", " two", " three"]]
    engine.hold_after = 1
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.paste(pilot, "count")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: engine.held == 1, "the reply to start")
        if stop == "escape":
            await pilot.press("escape")
            await ui.settle(pilot)
            assert header_text(views(app.main_screen.active_pane)[-1]).endswith("[stopped]")
            return
        app.save_and_exit(signal.SIGTERM)
        await pilot.pause()
    app = make_app()  # the interrupted reply, as shown when the tab is reopened
    async with app.run_test(size=SIZE) as pilot:
        await ui.wait_until(
            pilot,
            lambda: header_text(views(app.main_screen.active_pane)[-1]).endswith("[interrupted]"),
            "header_text(views(app.main_screen.active_pane)[-1]).endsw...",
        )
        assert header_text(views(app.main_screen.active_pane)[-1]).endswith("[interrupted]")


async def test_a_reopened_stopped_reply_keeps_its_stopped_style(make_app, engine, ui):
    """A stopped reply gets the ``interrupted`` class (its header in $chat-stopped) while
    the app runs; it must keep it when the conversation is shown again after a restart."""
    engine.replies = [["One", " two", " three"]]
    engine.hold_after = 1
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.paste(pilot, "count")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: engine.held == 1, "the reply to start")
        await pilot.press("escape")
        await ui.settle(pilot)
        assert views(app.main_screen.active_pane)[-1].has_class("interrupted")
        await pilot.press("ctrl+q")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.wait_until(pilot, lambda: views(app.main_screen.active_pane), "the messages")
        reply_view = views(app.main_screen.active_pane)[-1]
        assert reply_view.message.stop_reason == "stopped"
        assert reply_view.has_class("interrupted")


async def test_escape_with_nothing_streaming_does_nothing(make_app, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("escape")
        await ui.wait_until(pilot, lambda: ui.notes(app) == [], "ui.notes(app) == []")
        assert ui.notes(app) == []
        assert views(app.main_screen.active_pane) == []


async def test_up_and_down_recall_earlier_prompts(make_app, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "first question")
        await ui.send(pilot, "second question")
        prompt = app.main_screen.active_pane.prompt
        await ui.type(pilot, "draft")
        await pilot.press("up")
        assert prompt.text == "second question"
        await pilot.press("up")
        assert prompt.text == "first question"
        await pilot.press("up")  # the oldest stays
        assert prompt.text == "first question"
        await pilot.press("down")
        assert prompt.text == "second question"
        await pilot.press("down")  # back to what was being typed
        assert prompt.text == "draft"


async def test_history_of_a_reopened_conversation_is_recallable(make_app, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "remember me")
        await pilot.press("ctrl+q")
    again = make_app()
    async with again.run_test(size=SIZE) as pilot:
        await pilot.press("up")
        assert again.main_screen.active_pane.prompt.text == "remember me"


async def test_ctrl_j_inserts_a_newline_without_sending(make_app, engine, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main_screen.active_pane
        await ui.type(pilot, "line one")
        await pilot.press("ctrl+j")
        await ui.type(pilot, "line two")
        await ui.wait_until(
            pilot,
            lambda: pane.prompt.text == "line one\nline two",
            "pane.prompt.text == 'line one\nline two'",
        )
        assert pane.prompt.text == "line one\nline two"
        assert engine.calls == [] and views(pane) == []
        await pilot.press("enter")
        await ui.settle(pilot)
        assert pane.conversation.transcript[0].content == "line one\nline two"
        assert engine.calls[-1].messages[-1]["content"] == "line one\nline two"


async def test_enter_on_an_empty_prompt_sends_nothing(make_app, engine, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.type(pilot, "   ")
        await pilot.press("enter")
        await ui.settle(pilot)
        assert engine.calls == [] and views(app.main_screen.active_pane) == []


@pytest.mark.parametrize("how", ["ctrl+r", "/regenerate"])
async def test_regenerate_adds_a_sibling_reply_and_keeps_the_old_one(
    make_app, engine, dirs, ui, how
):
    engine.replies = [["First answer"], ["Second answer"]]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "question")
        pane = app.main_screen.active_pane
        if how.startswith("/"):
            await ui.send(pilot, how)
        else:
            await pilot.press(how)
            await ui.settle(pilot)
        conv = pane.conversation
        user = conv.transcript[0]
        replies = [m for m in conv.messages if m.role == "assistant"]
        assert [r.content for r in replies] == ["First answer", "Second answer"]
        assert all(r.parent == user.id for r in replies)
        assert [m.content for m in conv.transcript] == ["question", "Second answer"]
        assert texts(pane) == ["question", "Second answer"]
        # the model was asked the same question again, without the old reply
        assert engine.calls[1].messages == [{"role": "user", "content": "question"}]
        conv_id = conv.id

    saved = dirs.store().load(conv_id)
    assert sorted(m.content for m in saved.messages) == [
        "First answer",
        "Second answer",
        "question",
    ]
    assert saved.transcript[-1].content == "Second answer"


async def test_ctrl_t_cycles_between_reply_versions(make_app, engine, dirs, ui):
    engine.replies = [["First answer"], ["Second answer"]]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "question")
        await pilot.press("ctrl+r")
        await ui.settle(pilot)
        pane = app.main_screen.active_pane
        await pilot.press("ctrl+t")
        await ui.wait_until(pilot, lambda: texts(pane) == ["question", "First answer"], "v1")
        assert any(n.message == "Version 1 of 2." for n in ui.notes(app))
        assert dirs.store().load(pane.conversation.id).transcript[-1].content == "First answer"
        await pilot.press("ctrl+t")
        await ui.wait_until(pilot, lambda: texts(pane) == ["question", "Second answer"], "v2")
        assert any(n.message == "Version 2 of 2." for n in ui.notes(app))


async def test_ctrl_t_without_other_versions_says_so(make_app, ui):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "question")
        await pilot.press("ctrl+t")
        await ui.wait_until(
            pilot,
            lambda: any("no other versions" in n.message for n in ui.notes(app)),
            "any('no other versions' in n.message for n in ui.notes(app))",
        )
        assert any("no other versions" in n.message for n in ui.notes(app))


async def test_ctrl_e_puts_the_last_question_in_the_prompt(make_app, ui):
    """The prompt has focus whenever a tab is shown, so ctrl+e must reach the app."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "question one")
        assert app.focused is app.main_screen.active_pane.prompt
        await pilot.press("ctrl+e")
        await ui.wait_until(
            pilot, lambda: app.main_screen.active_pane.prompt.text == "question one", "edit"
        )
        assert app.main_screen.active_pane.prompt.text == "question one", (
            "ctrl+e did not start editing the last question (the focused prompt took the key)"
        )


async def test_edit_and_resend_creates_a_branch_and_keeps_the_old_question(
    make_app, engine, dirs, ui
):
    engine.replies = [["Answer one"], ["Answer two"]]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "question one")
        pane = app.main_screen.active_pane
        # what ctrl+e is bound to (the key itself is covered by the test above)
        await pane.run_action("edit_previous")
        await ui.wait_until(
            pilot, lambda: pane.prompt.text == "question one", "pane.prompt.text == 'question one'"
        )
        assert pane.prompt.text == "question one"
        assert any("Enter resends it as a new branch" in n.message for n in ui.notes(app))
        await pilot.press("end")
        await ui.send(pilot, ", edited")
        conv = pane.conversation
        assert [m.content for m in conv.transcript] == ["question one, edited", "Answer two"]
        users = [m for m in conv.messages if m.role == "user"]
        assert [u.content for u in users] == ["question one", "question one, edited"]
        assert users[0].parent == users[1].parent is None
        assert texts(pane) == ["question one, edited", "Answer two"]
        assert engine.calls[-1].messages == [{"role": "user", "content": "question one, edited"}]
        conv_id = conv.id

    saved = dirs.store().load(conv_id)
    assert {m.content for m in saved.messages} == {
        "question one",
        "Answer one",
        "question one, edited",
        "Answer two",
    }


async def test_ctrl_t_switches_back_to_the_exchange_before_an_edit(make_app, engine, ui):
    """An edit keeps the old question and its answer as a branch; ctrl+t gets back to
    it (and forward again)."""
    engine.replies = [["Answer one"], ["Answer two"]]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "question one")
        pane = app.main_screen.active_pane
        await pane.run_action("edit_previous")
        await pilot.press("end")
        await ui.send(pilot, ", edited")
        assert texts(pane) == ["question one, edited", "Answer two"]
        await pilot.press("ctrl+t")
        await ui.wait_until(pilot, lambda: texts(pane) == ["question one", "Answer one"], "v1")
        assert texts(pane) == ["question one", "Answer one"], (
            "after an edit, ctrl+t cannot reach the earlier version of the exchange"
        )
        await pilot.press("ctrl+t")
        await ui.wait_until(
            pilot, lambda: texts(pane) == ["question one, edited", "Answer two"], "v2"
        )


async def test_a_crash_inside_generation_is_reported_and_the_question_is_saved(
    make_app, engine, dirs, ui
):
    engine.chat_error = RuntimeError("the fake model fell over")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "will this work?")
        pane = app.main_screen.active_pane
        errors = ui.notes(app, "error")
        assert errors and any("the fake model fell over" in n.message for n in errors)
        assert not pane.generating
        conv_id = pane.conversation.id
        saved = dirs.store().load(conv_id)
        assert saved.transcript[0].content == "will this work?"
        assert saved.transcript[-1].stop_reason == "error"
        # the tab is still usable
        engine.chat_error = None
        await ui.send(pilot, "and now?")
        assert pane.conversation.transcript[-1].content == "Echo: and now?"


async def test_sigterm_while_streaming_saves_the_partial_reply_as_interrupted(
    make_app, engine, dirs, ui
):
    engine.replies = [["Partial", " answer", " never", " finished"]]
    engine.hold_after = 2
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main_screen.active_pane
        await ui.paste(pilot, "tell me everything")
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: engine.held == 1, "two chunks")
        await ui.wait_until(pilot, lambda: pane.stream.partial != "", "text on screen")
        shown = pane.stream.partial
        conv_id = pane.conversation.id
        app.save_and_exit(signal.SIGTERM)
        await pilot.pause()

    assert app.return_code == 128 + signal.SIGTERM
    saved = dirs.store().load(conv_id)
    reply = saved.transcript[-1]
    assert (reply.role, reply.stop_reason) == ("assistant", "interrupted")
    # what was on screen, plus tokens decoded but not yet drawn: everything streamed
    assert reply.content.startswith(shown)
    assert reply.content == "Partial answer"
    assert saved.transcript[0].content == "tell me everything"


async def test_a_long_reply_streams_to_completion(make_app, engine, dirs, ui):
    chunks = [f"word{i} " if i % 50 else f"\n\nParagraph {i}: " for i in range(4000)]
    engine.replies = [chunks]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "write a lot")
        pane = app.main_screen.active_pane
        reply = pane.conversation.transcript[-1]
        assert reply.content == "".join(chunks)
        assert reply.new_tokens == 4000
        assert views(pane)[-1].body.source == "".join(chunks)
        conv_id = pane.conversation.id
    assert dirs.store().load(conv_id).transcript[-1].content == "".join(chunks)
