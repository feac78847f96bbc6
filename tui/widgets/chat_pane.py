"""A conversation tab: messages, the prompt, a status line, and the reply's lifecycle
(send, stop, regenerate, edit, versions, continue, compare, replay); the commands that
change the conversation without generating are in :mod:`.pane_commands`.

The pane gets what it needs passed in (its conversation, the model controller, the
sessions service) and posts messages up (:class:`ChatPane.TitleChanged`,
:class:`ChatPane.ReplyFinished`, :class:`ChatPane.SettingsChanged`); it never reaches
into the app. Its work runs in thread workers it owns (closing the tab cancels them):
a reply (:mod:`.stream`), a comparison or a replay (:mod:`.side_tasks`). A worker gets
its inputs as arguments and only posts messages; every widget change happens here,
on the UI thread. Every reply, stop, edit and command that changes the conversation is
saved at once through the sessions service.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.worker import Worker, WorkerState

from .. import slash_commands
from ..engine.settings import GenerationSettings
from ..reasons import StopReason
from ..store.errors import ConversationGoneError, CorruptSessionError, StoreError
from ..store.fit import describe as describe_cuts
from ..store.model import ChatMessage, Conversation
from ..worker_messages import (
    GenerationFinished,
    GenerationStarted,
    GenerationWaiting,
    TokenChunk,
)
from .message_view import MessageView
from .pane_commands import MessageKeys, PaneCommands
from .prompt_input import PromptInput
from .side_tasks import (
    ComparisonJob,
    ReplayJob,
    SideStatus,
    SideTaskEnded,
    SideTasks,
    run_comparison,
    run_replay,
)
from .status_line import Status, StatusLine
from .stream import ChunkBuffer, ReplyStream, generate

if TYPE_CHECKING:
    from ..engine.controller import ModelController
    from ..engine.generation import GenerationResult, GenerationStats
    from ..engine.protocol import ChatRequest
    from ..store.sessions import Sessions


MAX_ALTERNATIVES = 8
"""``/regenerate N`` makes at most this many replies at once (the batch's width)."""


class ChatPane(PaneCommands, MessageKeys, Vertical):
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
        Binding(
            "ctrl+up,alt+up", "focus_messages", "Messages", show=False, id="focus_messages",
            priority=True,
            tooltip="focus the messages (↑↓ move, ←→ versions, Enter: what to do with one; "
            "typing goes back to the prompt)",
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
    class StreamsChanged(Message):
        """The replies this pane streams changed (it started, began streaming, ended)."""

        pane: ChatPane

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
        self.stop_event = threading.Event()  # stops what the pane is doing
        self.closing = False  # its tab is being removed: nothing more is drawn in it
        self.edit_target: ChatMessage | None = None
        self.unsaved = False  # the last save failed: the next one retries
        self.unsaved_reason = ""
        self.cannot_merge = False  # the file was deleted or became unreadable elsewhere
        self._redraw_saved = False  # a save changed the messages (a merge, cuts)
        self.outside_context = 0  # oldest messages the model did not see last turn
        self.side_task: str | None = None  # "comparing" / "replaying" while one runs
        self.side_status = ""
        self.stream = ReplyStream(self)
        self.side_tasks = SideTasks(self)
        self.streaming_total = 0  # replies streaming in every tab (the screen counts)

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="messages"):
            yield from self._views()
        yield StatusLine(classes="status")
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
        self.post_message(self.StreamsChanged(self))

    def update_status(self) -> None:
        if not self.is_mounted or self.closing:
            return
        model, reply = self.controller.model, self.last_reply()
        last = self.stream.last_stats or reply
        if model is not None and reply is not None and reply.model not in (None, model.name):
            last = None  # made by the model before a swap: its speed is not this one's
        status = Status(
            model,
            self.controller.status,
            self.stream.context_used(),
            last,
            self.outside_context,
            self.unsaved,
            self.side_task,
            self.side_status,
            self.stream.waiting,
            self.generating,
            self.stream.waiting_for,
            self.streaming_total,
        )
        self.query_one(StatusLine).show(status)

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
        if self.conversation.last_cuts:
            self._said_cuts(self.conversation.last_cuts)
        report = self.conversation.last_merge
        if report and not quiet:
            self.conversation.last_merge = None
            self.notify(report.describe(), title="Merged", timeout=8)
            if report.merged:
                self._redraw_when_idle()
        return True

    def _said_cuts(self, cuts: list) -> None:
        """The save cut long texts to fit the file: say so, show what the file holds."""
        self.conversation.last_cuts = []
        self.notify(describe_cuts(cuts), title="Saved, with cuts", severity="warning", timeout=20)
        self._redraw_when_idle()

    def _redraw_when_idle(self) -> None:
        self._redraw_saved = True
        self.call_later(self.show_saved)

    async def show_saved(self) -> None:
        """Re-render to show what a save changed (the other side's branch, texts cut to
        fit the file), once no reply is streaming."""
        if self._redraw_saved and not self.generating:
            self._redraw_saved = False
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
        await self.stream.start()

    # -- the workers: each gets its inputs as arguments ---------------------------------
    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def generate_in_thread(
        self,
        controller: ModelController,
        request: ChatRequest,
        buffer: ChunkBuffer,
        stop: threading.Event,
        alternatives: list[ChatRequest],
    ) -> None:
        generate(controller, request, buffer, stop, self.post_message, alternatives)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def compare_in_thread(self, controller: ModelController, job: ComparisonJob) -> None:
        run_comparison(controller, job, self.post_message)

    @work(thread=True, exclusive=True, group="replay", exit_on_error=False)
    def replay_in_thread(self, controller: ModelController, job: ReplayJob) -> None:
        run_replay(controller, job, self.post_message)

    def on_generation_started(self, message: GenerationStarted) -> None:
        message.stop()
        self.stream.started(message.info)
        self.post_message(self.StreamsChanged(self))

    def on_generation_waiting(self, message: GenerationWaiting) -> None:
        message.stop()
        self.stream.waited(message.text)

    async def on_token_chunk(self, message: TokenChunk) -> None:
        message.stop()
        await self.stream.show(message.text, message.reasoning)

    async def on_generation_finished(self, message: GenerationFinished) -> None:
        message.stop()
        result = message.result
        await self._reply_ended(
            result.text, result.stats, result.notices, result.reasoning, message.alternatives
        )

    async def _reply_ended(
        self,
        text: str,
        stats: GenerationStats | None,
        notices: list[str] | None = None,
        reasoning: str = "",
        alternatives: list[GenerationResult] | None = None,
    ) -> None:
        """The reply ended (or its worker failed): keep it, with the other replies made
        beside it as its versions; save; say what went wrong (a notice shown as the turn
        started is not shown twice)."""
        alternatives = alternatives or []
        shown = set(self.stream.turn.notices) if self.stream.turn is not None else set()
        if not await self.stream.finish(text, stats, reasoning, alternatives):
            return
        reply = self.last_reply()
        if alternatives and reply is not None:
            count = self.conversation.sibling_position(reply.id)[1]
            self.notify(
                f"{count} versions of this reply; ←→ on it (ctrl+↑ focuses it) or ctrl+t "
                "shows the others.",
                timeout=6,
            )
        errors = [a.stats.error for a in alternatives if a.stats.error]
        if errors and not (stats is not None and stats.error):
            self.notify(errors[0], title="An alternative failed", severity="error", timeout=10)
        self.save()
        await self.show_saved()
        self.post_message(self.ReplyFinished(self))
        for notice in notices or []:
            if notice not in shown:
                self.notify(notice, timeout=6)
        if stats is not None and stats.error:
            self.notify(stats.error, title="Generation failed", severity="error", timeout=10)

    @on(SideStatus)
    def _side_status(self, event: SideStatus) -> None:
        event.stop()
        if self.side_task and self.side_status != "stopping…":
            self.side_status = event.text
            self.update_status()

    @on(SideTaskEnded)
    async def _side_task_ended(self, event: SideTaskEnded) -> None:
        event.stop()
        task, self.side_task, self.side_status = self.side_task, None, ""
        if task == "comparing":
            await self.side_tasks.compared(event.result, event.problem)
        elif task == "replaying":
            self.side_tasks.replayed(event.result, event.problem)
        self.update_status()

    @on(Worker.StateChanged)
    async def worker_ended(self, event: Worker.StateChanged) -> None:
        """A crash in a worker is said; a reply keeps what was streamed, as an error."""
        if event.state not in (WorkerState.ERROR, WorkerState.CANCELLED):
            return
        problem = f"{event.worker.error or 'cancelled'}"
        if event.worker.group in ("compare", "replay"):
            self.post_message(SideTaskEnded(None, problem))
        elif event.worker.group == "generate":
            from ..engine.generation import GenerationStats

            stats = GenerationStats(stop_reason=StopReason.ERROR, error=problem)
            await self._reply_ended(self.stream.partial, stats, reasoning=self.stream.thought)

    def mark_outside_context(self, dropped: int) -> None:
        """Dim the oldest ``dropped`` messages the model did not see this turn."""
        self.outside_context = dropped
        views = [v for v in self.query(MessageView) if v is not self.stream.view]
        for index, view in enumerate(views):
            view.set_outside_context(index < dropped)

    def interrupt_and_save(self, rescue: bool = False) -> bool:
        """For SIGTERM/SIGHUP, closing and quitting: keep the reply being streamed
        (including text decoded but not yet drawn), and a comparison's replies as far as
        they were made, marked interrupted, and save.
        ``rescue`` (no one to ask: the terminal is gone) saves a conversation that can
        no longer be saved where it was as a new one. ``True`` if it is on disk."""
        if self.generating:
            self.stream.interrupt()
        self.side_tasks.interrupt()
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

    async def action_regenerate(self, count: str = "") -> None:
        """A new version of the last reply; ``/regenerate 3`` makes three at once (in
        one batch on a local model), all kept as versions."""
        try:
            number = int(count.strip() or 1)
        except ValueError:
            number = 0
        if not 1 <= number <= MAX_ALTERNATIVES:
            self.notify(
                f"Give how many replies to make, 1 to {MAX_ALTERNATIVES}: /regenerate 3.",
                severity="warning",
            )
            return
        if self.busy():
            return
        transcript = self.conversation.transcript
        if not transcript or transcript[-1].role != "assistant":
            self.notify("There is no reply to regenerate.", severity="warning")
            return
        if number > 1 and self._decodes_greedily(transcript[-1]):
            self.notify(
                "This conversation decodes greedily (do_sample=false): every version "
                "would be the same. /set do_sample=true first.",
                severity="warning",
                timeout=8,
            )
            return
        self.conversation.head = transcript[-1].parent  # a sibling of the old reply
        await self.rebuild()
        await self.stream.start(count=number)

    def _decodes_greedily(self, reply: ChatMessage) -> bool:
        """Whether the next reply would be greedy: the conversation's own settings say
        so, or (when they leave it to the model) the last reply was made greedily."""
        kwargs = GenerationSettings(dict(self.conversation.settings)).generation_kwargs()
        if "do_sample" in kwargs:
            return not kwargs["do_sample"]
        used = (reply.provenance or {}).get("settings") or {}
        return used.get("do_sample") is False

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

    # -- messages by keyboard -------------------------------------------------------------
    @on(MessageView.Step)
    def _step(self, event: MessageView.Step) -> None:
        event.stop()
        view = self._live(event.view)
        views = self._views_now()
        if view is None or view not in views:
            return
        index = views.index(view) + event.step
        if index >= len(views):
            self.focus_prompt()  # ↓ past the last message: home
        elif index >= 0:
            self.focus_message(views[index])

    @on(MessageView.TypedAway)
    def _typed_away(self, event: MessageView.TypedAway) -> None:
        """Typing on a message: it is typed again in the prompt, where it was meant to
        go (after the focus has moved: the app handles both in the order asked)."""
        from ..early_input import type_again

        event.stop()
        self.focus_prompt()
        type_again(self.app, [event.typed])

    @on(MessageView.SwitchVersion)
    async def _switch_version(self, event: MessageView.SwitchVersion) -> None:
        """←/→ on a focused message: its previous/next version, and what followed it."""
        event.stop()
        view = self._live(event.view)
        if view is None or self.busy():
            return
        message = view.message
        siblings = self.conversation.siblings(message.id)
        if len(siblings) < 2:
            return
        ids = [m.id for m in siblings]
        index = (ids.index(message.id) + event.step) % len(ids)
        position = self._views_now().index(view)
        self.conversation.switch_to(ids[index])
        self.save()
        await self.rebuild()
        views = self._views_now()
        if position < len(views):
            self.focus_message(views[position])

    async def action_continue_reply(self) -> None:
        if self.busy():
            return
        await self.stream.start(continue_last=True)

    async def action_compare(self, specs: str = "", message: ChatMessage | None = None) -> None:
        """``/compare SPEC ...``: answer the turn of this reply again with each SPEC
        (``@bf16``, ``./other@4bit``, ``@same-no-draft``), side by side with the loaded
        model's answer; ``settings=turn`` uses the turn's own settings and seed instead
        of greedy decoding, ``load=together|sequential`` overrides the memory estimate."""
        await self.side_tasks.compare(specs, message)

    def action_replay(self, message: ChatMessage | None = None) -> None:
        """``/replay``: make this reply again from its snapshot and say whether it is
        identical or where it diverges (and why, when a recorded condition differs).

        The snapshot describes; it never authorizes. A reply made by another model than
        the loaded one names that model and asks before loading it (and before a
        download); one made with ``trust_remote_code`` asks, naming the folder, whether
        its code may run, and otherwise replays without it."""
        self.side_tasks.replay(message)

    @on(MessageView.Act)
    async def _act_on_message(self, event: MessageView.Act) -> None:
        event.stop()
        await self.act_on_message(event)

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
