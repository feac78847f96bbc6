"""A conversation tab: messages, the prompt, a status line, the generation worker, and
the actions on its conversation (stop, regenerate, edit, versions, copy, continue, and
the slash commands that act on one conversation).

The pane gets what it needs passed in (its conversation, the model controller, the
sessions service) and posts messages up (:class:`ChatPane.TitleChanged`,
:class:`ChatPane.ReplyFinished`, :class:`ChatPane.SettingsChanged`); it never reaches
into the app. Generation runs in a thread worker owned by this pane (closing the tab
cancels it); the thread only posts :mod:`tui.worker_messages`, and every widget change happens
here, on the UI thread. Every reply, stop, edit and command that changes the
conversation is saved at once through the sessions service.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from .. import clipboard, safe_text, slash_commands
from ..engine.protocol import ChatRequest
from ..engine.settings import GenerationSettings
from ..reasons import StopReason
from ..store.errors import ConversationGoneError, CorruptSessionError, StoreError
from ..store.model import ChatMessage, Conversation
from ..worker_messages import GenerationFinished, GenerationStarted, TokenChunk
from .message_view import MessageView
from .prompt_input import PromptInput

if TYPE_CHECKING:
    from ..engine.controller import ModelController
    from ..engine.generation import GenerationStats, TurnInfo
    from ..store.sessions import Sessions


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
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        with self._lock:
            self.parts.append(text)
            self.total += len(text)
            now = time.monotonic()
            due = now - self.last >= min(0.5, 0.1 + self.total / 20000)
            if due:
                self.last = now
        if due:
            self.flush()

    def take(self) -> str:
        """Everything not yet posted (for an interrupt: kept, never drawn)."""
        with self._lock:
            text = "".join(self.parts)
            self.parts.clear()
            return text

    def flush(self) -> None:
        text = self.take()
        if text:
            self.post(text)


def _stored_fields(reply: Any) -> dict[str, Any]:
    """A compared reply's stored fields, its stop reason as a :class:`StopReason`."""
    fields = reply.message_fields()
    fields["stop_reason"] = StopReason(fields.get("stop_reason") or "error")
    return fields


@dataclass
class _Comparing:
    """A comparison being made: where its replies go and what each has shown so far."""

    parent: str | None
    labels: list[str]
    texts: list[str]
    finished: dict[int, dict[str, Any]] = field(default_factory=dict)
    """The stored fields of each reply already measured, by index."""

    def partial_replies(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (label, text, dict(self.finished.get(index, {"stop_reason": StopReason.STOPPED})))
            for index, (label, text) in enumerate(zip(self.labels, self.texts, strict=True))
        ]


class ChatPane(Vertical):
    """One conversation. ``generating`` toggles the ``-generating`` CSS class."""

    BINDINGS = [
        # priority: the prompt's TextArea has its own ctrl+e / ctrl+y editing keys
        Binding(
            "ctrl+r", "regenerate", "Regenerate", show=False, id="regenerate", priority=True,
            tooltip="a new version of the last reply (the old one stays reachable)",
        ),
        Binding(
            "ctrl+e", "edit_previous", "Edit", show=False, id="edit_previous", priority=True,
            tooltip="edit your last question (again: the one before); Enter resends it",
        ),
        Binding(
            "ctrl+g", "continue_reply", "Continue", show=False, id="continue_reply",
            priority=True, tooltip="continue the last (stopped or cut-off) reply",
        ),
        Binding(
            "ctrl+y", "copy_reply", "Copy", show=False, id="copy_reply", priority=True,
            tooltip="copy the last reply (OSC 52: works over SSH and in tmux)",
        ),
        Binding(
            "ctrl+t", "cycle_branch", "Versions", show=False, id="cycle_branch", priority=True,
            tooltip="step through every version of the conversation",
        ),
    ]  # fmt: skip

    generating: reactive[bool] = reactive(False)

    @dataclass
    class TitleChanged(Message):
        pane: ChatPane

    @dataclass
    class SettingsChanged(Message):
        pane: ChatPane

    @dataclass
    class ReplyFinished(Message):
        pane: ChatPane

    @dataclass
    class _SideTaskEnded(Message):
        """A comparison or replay worker is done (posted from its thread)."""

        result: Any
        problem: str = ""

    @dataclass
    class _SideStatus(Message):
        text: str

    def __init__(
        self,
        conversation: Conversation,
        controller: ModelController,
        sessions: Sessions,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conversation = conversation
        self.controller = controller
        self.sessions = sessions
        self.stop_event = threading.Event()
        self.reply_view: MessageView | None = None
        self.partial = ""
        self.continuing: ChatMessage | None = None
        self.edit_target: ChatMessage | None = None
        self.last_stats: GenerationStats | None = None
        self.turn: TurnInfo | None = None
        self.waiting = False
        self.unsaved = False  # the last save failed: the next one retries
        self.unsaved_reason = ""
        self.cannot_merge = False  # the file was deleted or became unreadable elsewhere
        self._buffer: _ChunkBuffer | None = None
        self._show_merge = False  # another writer's messages arrived while streaming
        self.outside_context = 0  # oldest messages the model did not see last turn
        self.side_task: str | None = None  # "comparing" / "replaying" while one runs
        self.side_status = ""
        self._comparing: _Comparing | None = None
        self.last_compare = "@bf16"

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="messages"):
            yield from self._views()
        yield Static("", classes="status", markup=False)
        history = [m.content for m in self.conversation.messages if m.role == "user"]
        yield PromptInput(history=history[-200:], classes="prompt")

    def _view(self, message: ChatMessage) -> MessageView:
        return MessageView(message, self.conversation.sibling_position(message.id))

    def _views(self) -> list[MessageView]:
        return [self._view(m) for m in self.conversation.transcript]

    def on_mount(self) -> None:
        self.update_status()
        self.call_after_refresh(self.messages_view.scroll_end, animate=False)

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
        model = self.controller.model
        parts: list[str] = []
        if model is not None:
            label = model.spec.precision_label
            precision = label if label == model.dtype else f"{label}/{model.dtype}"
            parts += [model.name.removesuffix(" (bundled)"), precision, model.device]
            parts.append(self._context_text(model.context_limit))
        else:
            parts.append(self.controller.status or "no model")
        stats = self.last_stats
        if stats is not None:
            ttft, tps = stats.time_to_first_token, stats.tokens_per_second
        else:
            last = self.last_reply()
            ttft = last.time_to_first_token if last else None
            tps = last.tokens_per_second if last else None
        if ttft:
            parts.append(f"first token {ttft * 1000:.0f} ms")
        if tps:
            parts.append(f"{tps:.1f} tok/s")
        if self.outside_context:
            parts.append(f"{self.outside_context} earlier msgs outside the context")
        if self.unsaved:
            parts.append("NOT SAVED")
        if self.side_task:
            parts.append(f"{self.side_status or self.side_task + '…'} (esc stops)")
        elif self.waiting:
            parts.append("waiting for the model…")
        elif self.generating:
            parts.append("generating… (esc stops)")
        self.query_one(".status", Static).update(safe_text.one_line(" · ".join(parts)))

    def _context_text(self, limit: int | None) -> str:
        used = 0
        if self.generating and self.turn is not None and self.turn.prompt_tokens:
            used = self.turn.prompt_tokens + self._streamed_tokens()
        else:
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
        return f"ctx {used:,}/{limit:,}" if limit else f"ctx {used:,}"

    def _streamed_tokens(self) -> int:
        return max(1, len(self.partial) // 4) if self.partial else 0  # about 4 chars a token

    # -- saving --------------------------------------------------------------------------
    def save(self, quiet: bool = False) -> bool:
        """Save through the sessions service. What another chat-tui saved meanwhile is
        merged (and said). A failure is a notice; the text stays here marked NOT SAVED
        and the next save retries. When no merge is possible (the file was deleted or
        became unreadable elsewhere) the user is asked whether to save it as new."""
        try:
            self.sessions.save(self.conversation)
        except (ConversationGoneError, CorruptSessionError) as exc:
            first = not self.cannot_merge
            self._mark_unsaved(str(exc), cannot_merge=True, quiet=quiet or not first)
            if first and not quiet:
                self.ask_to_save_as_new()
            return False
        except StoreError as exc:
            self._mark_unsaved(str(exc), quiet=quiet)
            return False
        if self.unsaved:
            self.unsaved, self.unsaved_reason, self.cannot_merge = False, "", False
            self.update_status()
        report = self.conversation.last_merge
        if report and not quiet:
            self.conversation.last_merge = None
            self.notify(report.describe(), title="Merged", timeout=8)
            if report.merged:
                self._show_merge = True
                self.call_later(self._show_merged)
        return True

    async def _show_merged(self) -> None:
        """Re-render to show the other side's branch, once no reply is streaming."""
        if self._show_merge and not self.generating:
            self._show_merge = False
            await self.rebuild()

    def _mark_unsaved(self, reason: str, cannot_merge: bool = False, quiet: bool = False) -> None:
        self.unsaved, self.unsaved_reason = True, reason
        self.cannot_merge = self.cannot_merge or cannot_merge
        if not quiet:
            self.notify(
                reason + " Your messages are kept in this window.",
                title="Not saved",
                severity="error",
                timeout=15,
            )
        self.update_status()

    def save_as_new(self) -> bool:
        try:
            self.sessions.save_as_new(self.conversation)
        except StoreError as exc:
            self._mark_unsaved(str(exc))
            return False
        self.unsaved, self.unsaved_reason, self.cannot_merge = False, "", False
        self.update_status()
        self.notify(f"Saved as a new conversation: {self.conversation.title}.", timeout=6)
        self.post_message(self.TitleChanged(self))
        return True

    def ask_to_save_as_new(self) -> None:
        from ..screens.dialogs import ChoiceScreen

        def answered(answer: str | None) -> None:
            if answer == "new":
                self.save_as_new()

        self.app.push_screen(
            ChoiceScreen(
                self.unsaved_reason,
                {"new": ("s", "Save as a new conversation"), "later": ("escape", "Not now")},
            ),
            answered,
        )

    # -- input ----------------------------------------------------------------------------
    @on(PromptInput.Submitted)
    async def submitted(self, event: PromptInput.Submitted) -> None:
        event.stop()
        text = event.text
        event.input.clear()
        try:
            invocation = slash_commands.parse(text)
        except slash_commands.UnknownCommand as exc:
            self.notify(str(exc), severity="warning", timeout=8)
            return
        if invocation is not None:
            await self.run_action(invocation.action)
            return
        await self.send(slash_commands.literal(text))

    def busy(self) -> bool:
        """``True`` (and a notice) while a reply, comparison or replay is running."""
        if self.generating or self.side_task:
            doing = self.side_task or "answering"
            self.notify(f"Still {doing}; press Esc to stop it first.", severity="warning")
            return True
        return False

    async def send(self, text: str) -> None:
        if self.busy():
            self.prompt.load_text(text)
            return
        title = self.conversation.title
        if self.edit_target is not None:
            message = self.conversation.branch_from(self.edit_target.id, "user", text)
            self.edit_target = None
            await self.rebuild()
        else:
            message = self.conversation.append("user", text)
            await self.messages_view.mount(self._view(message))
        self.save()
        if self.conversation.title != title:
            self.post_message(self.TitleChanged(self))
        await self.start_generation()

    # -- generation ----------------------------------------------------------------------
    async def start_generation(self, continue_last: bool = False) -> None:
        conv = self.conversation
        if continue_last:
            last = conv.transcript[-1] if conv.transcript else None
            if last is None or last.role != "assistant":
                self.notify("There is no reply to continue.", severity="warning")
                return
            engine = self.controller.engine
            if engine is not None and not engine.capabilities.continue_reply:
                self.notify(
                    "This backend cannot continue a reply; regenerate it instead (ctrl+r).",
                    severity="warning",
                )
                return
            self.continuing = last
            self.reply_view = self._view_for(last)
        else:
            self.continuing = None
            placeholder = ChatMessage(role="assistant", content="", parent=conv.head)
            self.reply_view = MessageView(placeholder)
            await self.messages_view.mount(self.reply_view)
        if self.reply_view is not None:
            self.reply_view.streaming = True
        self.partial = ""
        self.turn = None
        self.stop_event = threading.Event()
        self.generating = True
        self.waiting = True
        self.messages_view.scroll_end(animate=False)
        # the buffer is read by interrupt_and_save for text decoded but not yet drawn
        self._buffer = _ChunkBuffer(lambda text: self.post_message(TokenChunk(text)))
        request = ChatRequest(
            conv.chat_messages(),
            conv.system_prompt or None,
            conversation_id=conv.id,
            settings=GenerationSettings(dict(conv.settings)),
            continue_final=continue_last,
        )
        self._generate(self._buffer, request, self.stop_event)

    def _view_for(self, message: ChatMessage) -> MessageView | None:
        for view in self.query(MessageView):
            if view.message is message:
                return view
        return None

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def _generate(self, buffer: _ChunkBuffer, request: ChatRequest, stop: threading.Event) -> None:
        from ..engine.errors import EngineError
        from ..engine.generation import GenerationResult, GenerationStats

        try:
            result = self.controller.chat(
                request,
                stop_event=stop,
                on_text=buffer.add,
                on_start=lambda info: self.post_message(GenerationStarted(info)),
            )
        except EngineError as exc:  # before the first token: a sentence, nothing lost
            result = GenerationResult(
                "", GenerationStats(stop_reason=StopReason.ERROR, error=str(exc))
            )
        finally:
            buffer.flush()
        if result is None:  # stopped while waiting for a model
            result = GenerationResult("", GenerationStats(stop_reason=StopReason.STOPPED))
        self.post_message(GenerationFinished(result, request.continue_final))

    def on_generation_started(self, message: GenerationStarted) -> None:
        message.stop()
        self.waiting = False
        self.turn = message.info
        self.mark_outside_context(message.info.dropped_messages)
        for notice in message.info.notices:
            self.notify(notice, timeout=8)
        self.update_status()

    def mark_outside_context(self, dropped: int) -> None:
        """Dim the oldest ``dropped`` messages the model did not see this turn."""
        self.outside_context = dropped
        views = [v for v in self.query(MessageView) if v is not self.reply_view]
        for index, view in enumerate(views):
            view.set_outside_context(index < dropped)

    async def on_token_chunk(self, message: TokenChunk) -> None:
        message.stop()
        if self.reply_view is None or not self.generating:
            return
        self.partial += message.text
        at_bottom = self.messages_view.scroll_y >= self.messages_view.max_scroll_y - 2
        await self.reply_view.write(message.text)
        if at_bottom:
            self.messages_view.scroll_end(animate=False)
        self.update_status()

    async def on_generation_finished(self, message: GenerationFinished) -> None:
        message.stop()
        result = message.result
        await self._finish(result.text, result.stats, result.notices)

    def _reply_fields(self, stats: GenerationStats | None) -> dict[str, Any]:
        """The stored fields of a reply: its stats, speculative figures and the snapshot
        of how it was made (model, precision, device, settings, seed)."""
        model = self.controller.model
        fields: dict[str, Any] = stats.message_fields() if stats else {"error": None}
        fields["model"] = model.name if model else None
        fields["stop_reason"] = StopReason(stats.stop_reason) if stats else StopReason.ERROR
        return fields

    async def _finish(
        self, text: str, stats: GenerationStats | None, notices: list[str] | None = None
    ) -> None:
        if not self.generating:
            return
        conv = self.conversation
        meta = self._reply_fields(stats)
        view = self.reply_view
        if self.continuing is not None:
            reply = self.continuing
            reply.content += text
            reply.new_tokens = (reply.new_tokens or 0) + (meta["new_tokens"] or 0)
            reply.stop_reason, reply.error = meta["stop_reason"], meta["error"]
            conv.touch()
        elif text or meta["stop_reason"] != StopReason.STOPPED:
            self._record_model()
            reply = conv.append("assistant", text, **meta)
        else:  # stopped before the first token: nothing to keep
            reply = None
            if view is not None:
                await view.remove()
            view = None
        if view is not None and reply is not None:
            view.message = reply
            view.version = conv.sibling_position(reply.id)
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
        await self._show_merged()
        self.post_message(self.ReplyFinished(self))
        for notice in notices or []:
            self.notify(notice, timeout=6)
        if stats is not None and stats.error:
            self.notify(stats.error, title="Generation failed", severity="error", timeout=10)

    def _record_model(self) -> None:
        """The conversation notes the model it is being answered by."""
        spec = self.controller.spec
        model = spec.to_dict()
        if self.controller.on_endpoint and self.controller.endpoint_url:
            model["endpoint"] = self.controller.endpoint_url  # the URL only, never a key
        self.conversation.model = model

    @on(Worker.StateChanged)
    async def worker_ended(self, event: Worker.StateChanged) -> None:
        """A crash in the worker keeps what was streamed, marked as an error."""
        if event.worker.group in ("compare", "replay") and event.state in (
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            problem = f"{event.worker.error or 'cancelled'}"
            self.post_message(self._SideTaskEnded(None, problem))
            return
        if event.worker.group == "generate" and event.state in (
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            from ..engine.generation import GenerationStats

            stats = GenerationStats(
                stop_reason=StopReason.ERROR, error=str(event.worker.error or "cancelled")
            )
            await self._finish(self.partial, stats)

    def interrupt_and_save(self, rescue: bool = False) -> bool:
        """For SIGTERM/SIGHUP, closing and quitting: keep the reply being streamed
        (including text decoded but not yet drawn), and a comparison's replies as far as
        they were made, marked interrupted, and save.
        ``rescue`` (no one to ask: the terminal is gone) saves a conversation that can
        no longer be saved where it was as a new one. ``True`` if it is on disk."""
        if self.generating:
            self.stop_event.set()
            conv = self.conversation
            if self._buffer is not None:
                self.partial += self._buffer.take()
            if self.continuing is not None:
                reply = self.continuing
                reply.content += self.partial
                reply.stop_reason = StopReason.INTERRUPTED
            else:
                self._record_model()
                reply = conv.append(
                    "assistant",
                    self.partial,
                    model=self.controller.model.name if self.controller.model else None,
                    stop_reason=StopReason.INTERRUPTED,
                )
            if self.reply_view is not None:
                self.reply_view.message = reply
                self.reply_view.refresh_header()
            self.generating = False
        if self._comparing is not None:
            self.stop_event.set()
            self._keep_compared(self._comparing.partial_replies(), StopReason.INTERRUPTED)
        if not self.conversation.messages:
            return True
        if self.save(quiet=rescue):
            return True
        return rescue and self.cannot_merge and self.save_as_new()

    # -- actions: keys, slash commands and the palette all land here -----------------------
    def action_stop(self) -> None:
        if self.generating:
            self.stop_event.set()
            self.notify("Stopping; the partial reply is kept.", timeout=2)
        elif self.side_task:
            self.stop_event.set()
            self.side_status = "stopping…"
            self.update_status()

    async def action_regenerate(self) -> None:
        if self.busy():
            return
        transcript = self.conversation.transcript
        if not transcript or transcript[-1].role != "assistant":
            self.notify("There is no reply to regenerate.", severity="warning")
            return
        self.conversation.head = transcript[-1].parent  # a sibling of the old reply
        await self.rebuild()
        await self.start_generation()

    def action_edit_previous(self) -> None:
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
        self.notify(
            f"Editing message {index + 1} of {len(users)}; Enter resends it as a new branch.",
            timeout=4,
        )

    async def action_cycle_branch(self, step: int = 1) -> None:
        """Go to the next complete version of the conversation (every branch of the
        tree in turn: regenerated replies, edited questions and what followed them)."""
        if self.busy():
            return
        leaves = self.conversation.leaves()
        if len(leaves) < 2:
            self.notify("This conversation has no other versions.", timeout=3)
            return
        ids = [m.id for m in leaves]
        head = self.conversation.head
        current = ids.index(head) if head in ids else -1
        index = (current + step) % len(ids)
        self.conversation.head = ids[index]
        self.conversation.touch()
        self.save()
        await self.rebuild()
        self.notify(f"Version {index + 1} of {len(ids)}.", timeout=3)

    @on(MessageView.SwitchVersion)
    async def _switch_version(self, event: MessageView.SwitchVersion) -> None:
        """←/→ on a focused message: its previous/next version, and what followed it."""
        event.stop()
        if self.busy():
            return
        message = event.view.message
        siblings = self.conversation.siblings(message.id)
        if len(siblings) < 2:
            return
        ids = [m.id for m in siblings]
        index = (ids.index(message.id) + event.step) % len(ids)
        position = self.conversation.transcript.index(message)
        self.conversation.switch_to(ids[index])
        self.save()
        await self.rebuild()
        views = list(self.query(MessageView))
        if position < len(views):
            views[position].focus()
            views[position].scroll_visible(animate=False)

    def action_copy_reply(self, what: str = "") -> None:
        reply = self.last_reply()
        if reply is None:
            self.notify("No reply to copy.", severity="warning")
            return
        text, label = reply.content, "the last reply"
        if what.startswith("code"):
            blocks = clipboard.code_blocks(reply.content)
            if not blocks:
                self.notify("The last reply has no code block.", severity="warning")
                return
            text, label = blocks[-1], "the last code block"
        clipboard.copy(self.app, safe_text.fix_surrogates(text))
        self.notify(f"Copied {label} ({len(text)} characters).", timeout=3)

    async def action_continue_reply(self) -> None:
        if self.busy():
            return
        await self.start_generation(continue_last=True)

    async def action_clear(self) -> None:
        if self.generating:
            self.stop_event.set()
        self.conversation.clear()
        self.controller.forget(self.conversation.id)
        self.save()
        await self.rebuild()
        self.notify("Cleared; earlier messages stay in the saved file.", timeout=3)

    def action_save(self, name: str = "") -> None:
        conv = self.conversation
        if name:
            conv.name = name
            conv.title = name
            self.post_message(self.TitleChanged(self))
        if not conv.messages:
            self.notify("Nothing to save yet.", severity="warning")
        elif self.save():
            self.notify(f"Saved to {self.sessions.store.path_for(conv.id)}.", timeout=4)

    def action_rename(self, title: str = "") -> None:
        if title.strip():
            self._rename(title)
            return
        from ..screens.dialogs import TextPrompt

        def done(value: str | None) -> None:
            if value and value.strip():
                self._rename(value)

        self.app.push_screen(TextPrompt("New title", self.conversation.title), done)

    def _rename(self, title: str) -> None:
        try:
            self.sessions.rename(self.conversation.id, title)  # the label follows (event)
        except StoreError as exc:
            self.notify(str(exc), title="Not renamed", severity="error", timeout=10)

    def action_set_generation(self, assignments: str = "") -> None:
        from ..engine.errors import EngineError

        settings = GenerationSettings(dict(self.conversation.settings))
        try:
            settings.update(assignments.split())
        except EngineError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        if assignments.strip():
            self.conversation.settings = settings.values
            self.conversation.touch()
            self.save()
            self.post_message(self.SettingsChanged(self))
        self.notify(f"Settings: {settings.describe()}", timeout=8)

    def action_reset(self) -> None:
        self.conversation.settings = {}
        self.conversation.touch()
        self.save()
        self.post_message(self.SettingsChanged(self))
        self.notify("Generation settings reset to the model's defaults.", timeout=4)

    def action_system(self, text: str = "") -> None:
        self.conversation.system_prompt = text
        self.conversation.touch()
        self.save()
        self.post_message(self.SettingsChanged(self))
        self.notify("System prompt set." if text else "System prompt removed.", timeout=3)

    def apply_settings(self, system_prompt: str, assignments: list[str]) -> bool:
        """From the side panel: ``name=value`` sets, ``name=`` unsets. ``False`` (and a
        notice) if a value is refused; then nothing changed."""
        from ..engine.errors import EngineError

        settings = GenerationSettings(dict(self.conversation.settings))
        try:
            for assignment in assignments:
                name, _, value = assignment.partition("=")
                if value.strip():
                    settings.set(assignment)
                else:
                    settings.unset(name)
        except EngineError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return False
        self.conversation.settings = settings.values
        self.conversation.system_prompt = system_prompt
        self.conversation.touch()
        self.save()
        return True

    def action_stats(self) -> None:
        from ..engine.memory import human_bytes, snapshot

        lines = []
        reply = self.last_reply()
        if reply is not None and reply.new_tokens:
            ttft = (
                f"{reply.time_to_first_token * 1000:.0f} ms" if reply.time_to_first_token else "n/a"
            )
            tps = f"{reply.tokens_per_second:.1f}" if reply.tokens_per_second else "n/a"
            lines.append(
                f"last reply: {reply.prompt_tokens} prompt + {reply.new_tokens} new tokens, "
                f"first token {ttft}, {tps} tok/s, stop: {reply.stop_reason}"
            )
        model = self.controller.model
        if self.turn is not None and self.turn.settings is not None:
            lines.append(f"settings: {self.turn.settings.describe()}")
        if model is not None:
            lines.append(
                f"model: {model.name}, {model.dtype} on {model.device}, "
                f"weights {human_bytes(model.footprint_bytes)}"
            )
            cache = self.controller.cache_bytes(self.conversation.id)
            lines.append(f"KV cache (this chat): {human_bytes(cache)}")
        snap = snapshot()
        lines.append(
            f"process RAM {human_bytes(snap.process_rss)}, "
            f"system free {human_bytes(snap.system_available)}"
        )
        self.notify("\n".join(lines), title="Stats", timeout=15)

    # -- comparing a turn and replaying a reply -------------------------------------------
    def target_reply(self, message: ChatMessage | None = None) -> ChatMessage | None:
        """The reply an action on "this reply" means: ``message`` (a question: its reply
        on the active branch), else the focused message's, else the last reply."""
        if message is None:
            focused = self.app.focused
            if isinstance(focused, MessageView) and focused.parent is self.messages_view:
                message = focused.message
        if message is None:
            return self.last_reply()
        transcript = self.conversation.transcript
        if message.role == "user" and message in transcript:
            after = transcript[transcript.index(message) + 1 :]
            message = after[0] if after else None
        if message is None or message.role != "assistant" or message not in transcript:
            return None
        return message

    def _turn_before(self, reply: ChatMessage) -> list[dict[str, str]]:
        transcript = self.conversation.transcript
        return [m.as_chat() for m in transcript[: transcript.index(reply)] if m.role != "system"]

    def _reply_to(self, doing: str, message: ChatMessage | None, none: str) -> ChatMessage | None:
        """The reply a compare or replay acts on, or ``None`` (and a notice) when the pane
        is busy, the model is on an endpoint, or there is no such reply (``none``)."""
        if self.busy():
            return None
        if self.controller.on_endpoint:
            self.notify(
                f"{doing} runs models on this machine; switch to a local model first.",
                severity="warning",
                timeout=8,
            )
            return None
        reply = self.target_reply(message)
        if reply is None:
            self.notify(none, severity="warning")
        return reply

    async def action_compare(self, specs: str = "", message: ChatMessage | None = None) -> None:
        """``/compare SPEC ...``: answer the turn of this reply again with each SPEC
        (``@bf16``, ``./other@4bit``, ``@same-no-draft``), side by side with the loaded
        model's answer; ``settings=turn`` uses the turn's own settings and seed instead
        of greedy decoding, ``load=together|sequential`` overrides the memory estimate."""
        reply = self._reply_to(
            "Comparing", message, "There is no reply to compare; send a message first."
        )
        if reply is None:
            return
        if specs.strip():
            self._start_compare(reply, specs)
            return
        from ..screens.dialogs import TextPrompt

        def answered(value: str | None) -> None:
            if value and value.strip():
                self._start_compare(reply, value)

        self.app.push_screen(
            TextPrompt(
                "Compare this turn with (e.g. @bf16  @8bit  ./other@4bit  @same-no-draft)",
                self.last_compare,
            ),
            answered,
        )

    def _start_compare(self, reply: ChatMessage, text: str) -> None:
        from ..engine.errors import EngineError
        from ..engine.provenance import Provenance
        from ..engine.spec import parse_compare_spec, precision_tag
        from ..screens.comparison import ComparisonScreen

        if self.busy() or reply not in self.conversation.transcript:
            return
        options = {"settings": "greedy", "load": "auto"}
        wanted = []
        try:
            for word in text.split():
                name, equals, value = word.partition("=")
                if equals and name in options:
                    options[name] = value
                else:
                    wanted.append(parse_compare_spec(word))
            if options["settings"] not in ("greedy", "turn"):
                raise EngineError("settings= is greedy (the default) or turn.")
            placements = {
                "auto": "auto",
                "together": "together",
                "sequential": "one after the other",
            }
            if options["load"] not in placements:
                raise EngineError("load= is auto (the default), together or sequential.")
            if not wanted:
                raise EngineError("Give at least one spec to compare with, e.g. /compare @bf16.")
        except EngineError as exc:
            self.notify(str(exc), title="Not compared", severity="error", timeout=10)
            return
        self.last_compare = text.strip()
        use_turn = options["settings"] == "turn"
        snapshot = Provenance.from_dict(reply.provenance) if reply.provenance else None
        if use_turn and snapshot is not None:
            settings = snapshot.generation_settings()
        else:
            settings = GenerationSettings(dict(self.conversation.settings))
        model = self.controller.model
        reference = precision_tag(model.spec, model.dtype) if model is not None else "loaded model"
        labels = [reference, *(w.label for w in wanted)]
        shown = [f"{reference} (loaded model)", *labels[1:]]
        messages = self._turn_before(reply)
        question = messages[-1]["content"] if messages else ""
        self.stop_event = threading.Event()
        self._comparing = _Comparing(reply.parent, labels, [""] * len(labels))
        screen = ComparisonScreen(question, shown, self.stop_event)
        self.side_task, self.side_status = "comparing", ""
        self.update_status()
        self.app.push_screen(screen, lambda _: self.focus_prompt())
        self._compare(
            screen,
            messages,
            [str(w) for w in wanted],
            self.conversation.system_prompt or None,
            settings,
            use_turn,
            placements[options["load"]],
            self.stop_event,
        )

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _compare(
        self,
        screen: Any,
        messages: list[dict[str, str]],
        specs: list[str],
        system_prompt: str | None,
        settings: Any,
        use_turn_settings: bool,
        placement: str,
        stop: threading.Event,
    ) -> None:
        from ..engine.errors import EngineError

        comparing = self._comparing
        chunk, status = screen.Chunk, screen.Status

        def on_text(index: int, text: str) -> None:
            if comparing is not None and 0 <= index < len(comparing.texts):
                comparing.texts[index] += text  # what was shown, should the app close now
            screen.post_message(chunk(index, text))

        def on_reply(reply: Any) -> None:
            if comparing is not None:
                comparing.finished[reply.index] = _stored_fields(reply)

        def on_progress(step: Any) -> None:
            done = f" {step.fraction * 100:.0f}%" if step.fraction is not None else ""
            screen.post_message(status(f"{step.message}{done}"))
            self.post_message(self._SideStatus(f"comparing: {step.stage} {step.label}{done}"))

        try:
            result = self.controller.compare(
                messages,
                specs,
                stop_event=stop,
                system_prompt=system_prompt,
                settings=settings,
                use_turn_settings=use_turn_settings,
                placement=placement,
                on_progress=on_progress,
                on_text=on_text,
                on_reply=on_reply,
            )
            self.post_message(self._SideTaskEnded(result))
        except EngineError as exc:
            self.post_message(self._SideTaskEnded(None, str(exc)))

    def _keep_compared(self, replies: list[tuple[str, str, dict[str, Any]]], cut: str) -> int:
        """Add a comparison's replies (label, text, stored fields) as siblings of the
        turn's reply, leaving the active branch as it is. ``cut`` is the stop reason
        for a reply that was stopped. The number kept."""
        comparing, self._comparing = self._comparing, None
        if comparing is None:
            return 0
        parent, kept = comparing.parent, 0
        if parent is not None and self.conversation.get(parent) is None:
            parent = None  # cleared meanwhile: nothing to hang them on
        for label, text, fields in replies:
            if not text and fields.get("error") is None:
                continue
            if fields.get("stop_reason") == StopReason.STOPPED:
                fields["stop_reason"] = cut
            fields["label"] = label
            if parent is not None:
                self.conversation.add_child(parent, "assistant", text, make_head=False, **fields)
                kept += 1
        return kept

    @on(_SideStatus)
    def _side_status(self, event: _SideStatus) -> None:
        event.stop()
        if self.side_task and self.side_status != "stopping…":
            self.side_status = event.text
            self.update_status()

    @on(_SideTaskEnded)
    async def _side_task_ended(self, event: _SideTaskEnded) -> None:
        event.stop()
        task, self.side_task, self.side_status = self.side_task, None, ""
        if task == "comparing":
            await self._compared(event.result, event.problem)
        elif task == "replaying":
            self._replayed(event.result, event.problem)
        self.update_status()

    async def _compared(self, comparison: Any, problem: str) -> None:
        from ..screens.comparison import ComparisonScreen

        kept = 0
        if comparison is not None and self._comparing is not None:
            replies = [(r.label, r.text, _stored_fields(r)) for r in comparison.replies]
            kept = self._keep_compared(replies, StopReason.STOPPED)
        self._comparing = None
        saved = ""
        if kept:
            saved = (
                f"{kept} replies kept as versions of this turn (←/→ on the reply)"
                if self.save()
                else "NOT SAVED (see the notice)"
            )
            await self.rebuild()
        for screen in self.app.screen_stack:
            if isinstance(screen, ComparisonScreen):
                screen.post_message(ComparisonScreen.Done(comparison, problem, saved))
        if problem:
            self.notify(problem, title="Not compared", severity="error", timeout=10)

    def action_replay(self, message: ChatMessage | None = None) -> None:
        """``/replay``: make this reply again from its snapshot and say whether it is
        identical or where it diverges (and why, when a recorded condition differs).

        The snapshot describes; it never authorizes. A reply made by another model than
        the loaded one names that model and asks before loading it (and before a
        download); one made with ``trust_remote_code`` asks, naming the folder, whether
        its code may run, and otherwise replays without it."""
        from ..engine.errors import EngineError
        from ..engine.provenance import Provenance
        from ..engine.trust import code_location, needs_download, same_model, with_remote_code

        reply = self._reply_to("Replaying", message, "There is no reply to replay.")
        if reply is None:
            return
        saved = Provenance.from_dict(reply.provenance) if reply.provenance else None
        if saved is None or not saved.spec:
            self._start_replay(reply)  # the replay says why it cannot
            return
        try:
            recorded = saved.recorded()
        except EngineError as exc:
            self.notify(str(exc), title="Not replayed", severity="error", timeout=10)
            return
        model = self.controller.model
        loaded = model.spec if model is not None else None
        same = loaded is not None and same_model(recorded.spec, loaded)
        allowed = same and loaded is not None and loaded.trust_remote_code
        asks_code = recorded.remote_code and not allowed
        said = [s for s in recorded.refused if not (allowed and "trust_remote_code" in s)]
        if same and not asks_code:
            for sentence in said:
                self.notify(sentence, title="Replay", timeout=8)
            self._start_replay(reply)
            return
        download = not same and needs_download(recorded.spec)
        lines = []
        if not same:
            lines.append(
                f"This reply was made by {recorded.spec.display_name} ({recorded.source}), not "
                "the loaded model. Replaying it loads that model"
                + (
                    " — it is not on this machine, so it is downloaded from the Hugging Face Hub."
                    if download
                    else "."
                )
            )
        lines += said
        choices: dict[str, tuple[str, str]] = {
            "go": ("r", ("Download and replay" if download else "Replay") + " without its code")
            if asks_code
            else ("r", "Download and replay" if download else "Load and replay"),
        }
        if asks_code:
            lines.append(
                f"Allowing its code runs the Python files in {code_location(recorded.spec)} "
                "with your rights."
            )
            choices["code"] = ("a", "Allow its code to run and replay")
        choices["no"] = ("escape", "Cancel")

        def answered(answer: str | None) -> None:
            if answer not in ("go", "code") or reply not in self.conversation.transcript:
                return
            if self.busy():
                return
            spec = recorded.spec
            if answer == "code":
                spec = with_remote_code(spec)
            elif same and loaded is not None:
                spec = spec.with_changes(trust_remote_code=False)
            self._start_replay(reply, spec, allow_download=download)

        from ..screens.dialogs import ChoiceScreen

        self.app.push_screen(ChoiceScreen("\n".join(lines), choices), answered)

    def _start_replay(
        self, reply: ChatMessage, spec: Any = None, allow_download: bool = False
    ) -> None:
        self.stop_event = threading.Event()
        self.side_task, self.side_status = "replaying", ""
        self.update_status()
        self._replay(
            reply,
            self._turn_before(reply),
            self.conversation.system_prompt or None,
            self.stop_event,
            spec,
            allow_download,
        )

    @work(thread=True, exclusive=True, group="replay", exit_on_error=False)
    def _replay(
        self,
        reply: ChatMessage,
        messages: list[dict[str, str]],
        system_prompt: str | None,
        stop: threading.Event,
        spec: Any,
        allow_download: bool,
    ) -> None:
        from ..engine.errors import EngineError

        def progress(fraction: float, stage: str) -> None:
            self.post_message(self._SideStatus(f"replaying: {stage} {fraction * 100:.0f}%"))

        try:
            report = self.controller.replay(
                messages,
                reply.content,
                reply.provenance or {},
                stop_event=stop,
                system_prompt=system_prompt,
                saved_stop_reason=reply.stop_reason,
                progress=progress,
                spec=spec,
                allow_download=allow_download,
            )
            self.post_message(self._SideTaskEnded(report))
        except EngineError as exc:
            self.post_message(self._SideTaskEnded(None, str(exc)))

    def _replayed(self, report: Any, problem: str) -> None:
        if problem:
            self.notify(problem, title="Not replayed", severity="error", timeout=10)
        elif report is None or report.stopped:
            self.notify("Replay stopped.", timeout=3)
        else:
            self.notify(
                report.describe(),
                title="Replay",
                severity="information" if report.identical else "warning",
                timeout=20,
            )

    @on(MessageView.Act)
    async def _act_on_message(self, event: MessageView.Act) -> None:
        """A key on a focused message: compare its turn, replay it."""
        event.stop()
        if event.action == "compare":
            await self.action_compare(message=event.view.message)
        elif event.action == "replay":
            self.action_replay(message=event.view.message)

    # -- the active branch ------------------------------------------------------------------
    async def rebuild(self) -> None:
        """Re-render the active branch (after an edit, a branch switch or /clear)."""
        view = self.messages_view
        await view.remove_children()
        await view.mount_all(self._views())
        view.scroll_end(animate=False)
        self.update_status()

    def last_reply(self) -> ChatMessage | None:
        return next(
            (m for m in reversed(self.conversation.transcript) if m.role == "assistant"), None
        )
