"""A conversation tab: messages, the prompt, a status line, and the generation worker.

Generation runs in a thread worker owned by this pane (so closing the tab cancels it).
The thread only posts :mod:`tui.messages`; all widget changes happen here, on the UI
thread. Every completed reply, stop, edit and command that changes the conversation is
saved at once.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from .. import chat_commands
from ..messages import GenerationFinished, GenerationStarted, TokenChunk
from ..store.model import Conversation, Message
from .message_view import MessageView
from .prompt_input import PromptInput

if TYPE_CHECKING:
    from ..app import ChatApp


class _ChunkBuffer:
    """Coalesce streamed text into a few UI updates a second.

    Re-rendering the growing Markdown costs the UI thread CPU that the model needs (on
    two cores, per-token updates cut generation speed by a quarter), and the cost grows
    with the reply, so the interval grows with it: 10 updates/s at first, 2/s for a
    reply of 8,000 characters or more."""

    def __init__(self, post: Any) -> None:
        self.post = post
        self.parts: list[str] = []
        self.last = 0.0
        self.total = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.total += len(text)
        now = time.monotonic()
        if now - self.last >= min(0.5, 0.1 + self.total / 20000):
            self.flush()
            self.last = now

    def flush(self) -> None:
        if self.parts:
            self.post("".join(self.parts))
            self.parts.clear()


class ChatPane(Vertical):
    """One conversation. ``generating`` toggles the ``-generating`` CSS class."""

    generating: reactive[bool] = reactive(False)

    def __init__(self, conversation: Conversation, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conversation = conversation
        self.stop_event = threading.Event()
        self.reply_view: MessageView | None = None
        self.partial = ""
        self.continuing: Message | None = None
        self.edit_target: Message | None = None
        self.last_stats: Any = None
        self.waiting = False

    @property
    def chat_app(self) -> ChatApp:
        return self.app  # type: ignore[return-value]

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="messages"):
            for message in self.conversation.transcript:
                yield MessageView(message)
        yield Static("", classes="status")
        history = [m.content for m in self.conversation.messages if m.role == "user"]
        yield PromptInput(history=history[-200:], classes="prompt")

    def on_mount(self) -> None:
        self.update_status()
        self.messages_view.scroll_end(animate=False)

    @property
    def messages_view(self) -> VerticalScroll:
        return self.query_one(".messages", VerticalScroll)

    @property
    def prompt(self) -> PromptInput:
        return self.query_one(PromptInput)

    def focus_prompt(self) -> None:
        self.prompt.focus()

    def watch_generating(self, generating: bool) -> None:
        self.set_class(generating, "-generating")
        self.update_status()

    def update_status(self) -> None:
        if not self.is_mounted:
            return
        engine = self.chat_app.engine
        loaded = engine.loaded if engine else None
        parts: list[str] = []
        if loaded is not None:
            parts += [loaded.name, loaded.spec.precision_label + f"/{loaded.dtype}", loaded.device]
            limit = loaded.context_limit
            used = 0
            last = next(
                (
                    m
                    for m in reversed(self.conversation.transcript)
                    if m.role == "assistant" and m.prompt_tokens
                ),
                None,
            )
            if last is not None:
                used = (last.prompt_tokens or 0) + (last.new_tokens or 0)
            parts.append(f"ctx {used:,}/{limit:,}" if limit else f"ctx {used:,}")
        else:
            parts.append(self.chat_app.load_status or "no model")
        stats = self.last_stats
        if stats is None:
            last = self.last_reply()
            if last is not None and last.time_to_first_token:
                parts.append(f"first token {last.time_to_first_token * 1000:.0f} ms")
                if last.tokens_per_second:
                    parts.append(f"{last.tokens_per_second:.1f} tok/s")
        else:
            if stats.time_to_first_token:
                parts.append(f"first token {stats.time_to_first_token * 1000:.0f} ms")
            if stats.tokens_per_second:
                parts.append(f"{stats.tokens_per_second:.1f} tok/s")
        if self.waiting:
            parts.append("waiting for the model…")
        elif self.generating:
            parts.append("generating… (esc stops)")
        self.query_one(".status", Static).update(" · ".join(parts))

    # -- saving --------------------------------------------------------------------------
    def save(self) -> bool:
        return self.chat_app.save_conversation(self.conversation)

    # -- input ----------------------------------------------------------------------------
    @on(PromptInput.Submitted)
    async def submitted(self, event: PromptInput.Submitted) -> None:
        event.stop()
        text = event.text
        try:
            command = chat_commands.parse(text)
        except chat_commands.UnknownCommand as exc:
            self.app.notify(str(exc), severity="warning", timeout=8)
            return
        event.input.clear()
        if command is not None:
            await self.chat_app.run_chat_command(self, command)
            return
        await self.send(chat_commands.literal(text))

    async def send(self, text: str) -> None:
        if self.generating:
            self.app.notify("Still answering; press Esc to stop it first.", severity="warning")
            self.prompt.load_text(text)
            return
        if self.edit_target is not None:
            message = self.conversation.branch_from(self.edit_target.id, "user", text)
            self.edit_target = None
            await self.rebuild()
        else:
            message = self.conversation.append("user", text)
            await self.messages_view.mount(MessageView(message))
        self.save()
        self.chat_app.refresh_tab_title(self)
        await self.start_generation()

    # -- generation ----------------------------------------------------------------------
    async def start_generation(self, continue_last: bool = False) -> None:
        conv = self.conversation
        if continue_last:
            last = conv.transcript[-1] if conv.transcript else None
            if last is None or last.role != "assistant":
                self.app.notify("There is no reply to continue.", severity="warning")
                return
            self.continuing = last
            self.reply_view = self._view_for(last)
        else:
            self.continuing = None
            placeholder = Message(role="assistant", content="", parent=conv.head)
            self.reply_view = MessageView(placeholder)
            await self.messages_view.mount(self.reply_view)
        self.reply_view.streaming = True
        self.partial = ""
        self.stop_event = threading.Event()
        self.generating = True
        self.waiting = True
        self.messages_view.scroll_end(animate=False)
        self._generate(
            conv.chat_messages(),
            conv.system_prompt or None,
            dict(conv.settings),
            conv.id,
            self.stop_event,
            continue_last,
        )

    def _view_for(self, message: Message) -> MessageView | None:
        for view in self.query(MessageView):
            if view.message is message:
                return view
        return None

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def _generate(
        self,
        messages: list[dict[str, str]],
        system_prompt: str | None,
        settings: dict[str, Any],
        conversation_id: str,
        stop: threading.Event,
        continue_last: bool,
    ) -> None:
        from ..engine.generation import STOP_STOPPED, GenerationResult, GenerationStats
        from ..engine.settings import GenerationSettings

        app = self.chat_app
        while not app.model_ready.wait(0.1):  # the model may still be loading
            if stop.is_set():
                result = GenerationResult("", GenerationStats(stop_reason=STOP_STOPPED))
                self.post_message(GenerationFinished(result, continue_last))
                return
        buffer = _ChunkBuffer(lambda text: self.post_message(TokenChunk(text)))
        self._buffer = buffer  # read by interrupt_and_save for text not yet shown
        try:
            result = app.engine.chat(
                messages,
                system_prompt=system_prompt,
                conversation_id=conversation_id,
                settings=GenerationSettings(dict(settings)),
                stop_event=stop,
                on_text=buffer.add,
                on_start=lambda: self.post_message(GenerationStarted()),
                continue_final=continue_last,
            )
        finally:
            buffer.flush()
        self.post_message(GenerationFinished(result, continue_last))

    def on_generation_started(self, message: GenerationStarted) -> None:
        message.stop()
        self.waiting = False
        self.update_status()

    async def on_token_chunk(self, message: TokenChunk) -> None:
        message.stop()
        if self.reply_view is None:
            return
        self.partial += message.text
        at_bottom = self.messages_view.scroll_y >= self.messages_view.max_scroll_y - 2
        await self.reply_view.write(message.text)
        if at_bottom:
            self.messages_view.scroll_end(animate=False)

    async def on_generation_finished(self, message: GenerationFinished) -> None:
        message.stop()
        await self._finish(message.result.text, message.result.stats, message.result.notices)

    async def _finish(self, text: str, stats: Any, notices: list[str] | None = None) -> None:
        if not self.generating:
            return
        conv = self.conversation
        loaded = self.chat_app.engine.loaded if self.chat_app.engine else None
        meta = {
            "model": loaded.name if loaded else None,
            "prompt_tokens": stats.prompt_tokens if stats else None,
            "new_tokens": stats.new_tokens if stats else None,
            "time_to_first_token": stats.time_to_first_token if stats else None,
            "tokens_per_second": stats.tokens_per_second if stats else None,
            "stop_reason": stats.stop_reason if stats else "error",
            "error": stats.error if stats else None,
        }
        view = self.reply_view
        if self.continuing is not None:
            reply = self.continuing
            reply.content += text
            reply.new_tokens = (reply.new_tokens or 0) + (meta["new_tokens"] or 0)
            reply.stop_reason, reply.error = meta["stop_reason"], meta["error"]
            conv.touch()
        elif text or meta["stop_reason"] != "stopped":
            reply = conv.append("assistant", text, **meta)
        else:  # stopped before the first token: nothing to keep
            reply = None
            if view is not None:
                await view.remove()
            view = None
        if view is not None and reply is not None:
            view.message = reply
            await view.finish()
            if self.continuing is None and text != self.partial:
                await view.set_text(text)
        self.reply_view = None
        self.continuing = None
        self.partial = ""
        self.last_stats = stats
        self.generating = False
        self.waiting = False
        self.save()
        self.chat_app.sample_memory()
        for notice in notices or []:
            self.app.notify(notice, timeout=6)
        if stats is not None and stats.error:
            self.app.notify(stats.error, title="Generation failed", severity="error", timeout=10)

    @on(Worker.StateChanged)
    async def worker_ended(self, event: Worker.StateChanged) -> None:
        """A crash in the worker keeps what was streamed, marked as an error."""
        if event.worker.group == "generate" and event.state in (
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            from ..engine.generation import GenerationStats

            stats = GenerationStats(
                stop_reason="error", error=str(event.worker.error or "cancelled")
            )
            await self._finish(self.partial, stats)

    def stop(self) -> bool:
        if self.generating:
            self.stop_event.set()
            return True
        return False

    def interrupt_and_save(self) -> None:
        """For SIGTERM/SIGHUP: keep the reply being streamed, marked interrupted."""
        if self.generating:
            self.stop_event.set()
            conv = self.conversation
            buffer = getattr(self, "_buffer", None)
            if buffer is not None:  # tokens decoded but not yet drawn are kept too
                self.partial += "".join(list(buffer.parts))
                buffer.parts.clear()
            if self.continuing is not None:
                reply = self.continuing
                reply.content += self.partial
                reply.stop_reason = "interrupted"
            else:
                reply = conv.append("assistant", self.partial, stop_reason="interrupted")
            if self.reply_view is not None:
                self.reply_view.message = reply
                self.reply_view.refresh_header()
            self.generating = False
        self.save()

    # -- editing ---------------------------------------------------------------------------
    async def rebuild(self) -> None:
        """Re-render the active branch (after an edit, a branch switch or /clear)."""
        view = self.messages_view
        await view.remove_children()
        await view.mount_all([MessageView(m) for m in self.conversation.transcript])
        view.scroll_end(animate=False)
        self.update_status()

    async def regenerate(self) -> None:
        if self.generating:
            return
        transcript = self.conversation.transcript
        if not transcript or transcript[-1].role != "assistant":
            self.app.notify("There is no reply to regenerate.", severity="warning")
            return
        last = transcript[-1]
        self.conversation.head = last.parent  # the new reply becomes a sibling of the old
        await self.rebuild()
        await self.start_generation()

    def edit_previous(self) -> None:
        """Put an earlier user message in the prompt; sending it starts a new branch.
        Pressing again steps further back."""
        users = [m for m in self.conversation.transcript if m.role == "user"]
        if not users:
            return
        if self.edit_target in users:
            index = max(0, users.index(self.edit_target) - 1)
        else:
            index = len(users) - 1
        self.edit_target = users[index]
        self.prompt.load_text(self.edit_target.content)
        self.prompt.focus()
        self.app.notify(
            f"Editing message {index + 1} of {len(users)}; Enter resends it as a new branch.",
            timeout=4,
        )

    async def cycle_branch(self, step: int = 1) -> None:
        """Switch to the next version of the latest turn that has several (regenerated
        replies, or an edited question and its answers)."""
        transcript = self.conversation.transcript
        if not transcript or self.generating:
            return
        for message in reversed(transcript):
            siblings = self.conversation.siblings(message.id)
            if len(siblings) > 1:
                break
        else:
            self.app.notify("This reply has no other versions.", timeout=3)
            return
        index = (siblings.index(message) + step) % len(siblings)
        self.conversation.switch_to(siblings[index].id)
        self.save()
        await self.rebuild()
        self.app.notify(f"Version {index + 1} of {len(siblings)}.", timeout=3)

    def last_reply(self) -> Message | None:
        return next(
            (m for m in reversed(self.conversation.transcript) if m.role == "assistant"), None
        )
