"""A pane's side tasks: comparing a turn across models (``/compare``) and making a
reply again from its snapshot (``/replay``).

:class:`SideTasks` does the UI-thread part for its pane: which reply is meant, the
questions asked first, and what is kept afterwards. Each task runs in a worker owned
by the pane (:func:`run_comparison`, :func:`run_replay`), which gets everything it
needs as arguments (a :class:`ComparisonJob`, a :class:`ReplayJob`) and reaches the UI
only by posting messages. The one thing both threads touch is a comparison's replies
so far (:class:`Comparing`), kept under a lock for a quit in the middle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from textual.message import Message

from ..engine.reasoning import Reasoning
from ..engine.settings import GenerationSettings
from ..reasons import StopReason
from ..store.model import ChatMessage
from .message_view import MessageView

if TYPE_CHECKING:
    from textual.app import App
    from textual.containers import VerticalScroll

    from ..engine.controller import ModelController
    from ..engine.spec import CompareSpec, ModelSpec
    from ..store.model import Conversation

Post = Callable[[Message], Any]

PLACEMENTS = {"auto": "auto", "together": "together", "sequential": "one after the other"}


@dataclass
class SideTaskEnded(Message):
    """A comparison or replay is done (posted from its worker thread)."""

    result: Any
    problem: str = ""


@dataclass
class SideStatus(Message):
    """A side task's progress, for the status line."""

    text: str


def stored_fields(reply: Any) -> dict[str, Any]:
    """A compared reply's stored fields, its stop reason as a :class:`StopReason`."""
    fields = reply.message_fields()
    fields["stop_reason"] = StopReason(fields.get("stop_reason") or "error")
    return fields


@dataclass
class Comparing:
    """A comparison being made: where its replies go and what each has shown so far.

    The worker thread adds text (:meth:`shown`) and measured replies (:meth:`measured`);
    the UI thread reads them if the app quits meanwhile (:meth:`partial_replies`). Both
    sides hold ``lock``."""

    parent: str | None
    labels: list[str]
    texts: list[str]
    finished: dict[int, dict[str, Any]] = field(default_factory=dict)
    """The stored fields of each reply already measured, by index."""
    thoughts: dict[int, str] = field(default_factory=dict)
    """The reasoning each reply has shown so far, by index."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def shown(self, index: int, text: str) -> None:
        with self.lock:
            if not 0 <= index < len(self.texts):
                return
            if isinstance(text, Reasoning):
                self.thoughts[index] = self.thoughts.get(index, "") + text
            else:
                self.texts[index] += text  # what was shown, should the app close now

    def measured(self, reply: Any) -> None:
        fields = stored_fields(reply)
        with self.lock:
            self.finished[reply.index] = fields

    def partial_replies(self) -> list[tuple[str, str, dict[str, Any]]]:
        with self.lock:
            out = []
            for index, (label, text) in enumerate(zip(self.labels, self.texts, strict=True)):
                fields = dict(self.finished.get(index, {"stop_reason": StopReason.STOPPED}))
                if self.thoughts.get(index) and not fields.get("reasoning"):
                    fields["reasoning"] = self.thoughts[index]
                out.append((label, text, fields))
            return out


@dataclass(frozen=True)
class CompareOrder:
    """What ``/compare`` was asked: the specs, and the options among its words."""

    specs: list[CompareSpec]
    use_turn_settings: bool = False
    placement: str = "auto"


def parse_compare(text: str) -> CompareOrder:
    """``@bf16 ./other@4bit settings=turn load=sequential``; raises :class:`EngineError`
    (one sentence) for a bad spec or option, or none at all."""
    from ..engine.errors import EngineError
    from ..engine.spec import parse_compare_spec

    options = {"settings": "greedy", "load": "auto"}
    wanted = []
    for word in text.split():
        name, equals, value = word.partition("=")
        if equals and name in options:
            options[name] = value
        else:
            wanted.append(parse_compare_spec(word))
    if options["settings"] not in ("greedy", "turn"):
        raise EngineError("settings= is greedy (the default) or turn.")
    if options["load"] not in PLACEMENTS:
        raise EngineError("load= is auto (the default), together or sequential.")
    if not wanted:
        raise EngineError("Give at least one spec to compare with, e.g. /compare @bf16.")
    return CompareOrder(wanted, options["settings"] == "turn", PLACEMENTS[options["load"]])


@dataclass(frozen=True)
class ComparisonJob:
    """Everything a comparison's worker needs, taken on the UI thread."""

    screen: Any  # the ComparisonScreen that shows it
    messages: list[dict[str, str]]
    specs: list[str]
    system_prompt: str | None
    settings: GenerationSettings
    use_turn_settings: bool
    placement: str
    stop: threading.Event
    comparing: Comparing


def run_comparison(controller: ModelController, job: ComparisonJob, post: Post) -> None:
    """A comparison, in its worker thread: text to the screen as it streams, progress
    to the screen and the pane (``post``), :class:`SideTaskEnded` at the end."""
    from ..engine.errors import EngineError

    screen, comparing = job.screen, job.comparing

    def on_text(index: int, text: str) -> None:
        comparing.shown(index, text)
        screen.post_message(screen.Chunk(index, text))

    def on_progress(step: Any) -> None:
        done = f" {step.fraction * 100:.0f}%" if step.fraction is not None else ""
        screen.post_message(screen.Status(f"{step.message}{done}"))
        if step.stage == "waiting":
            post(SideStatus(f"comparing: {step.message}"))
        else:
            post(SideStatus(f"comparing: {step.stage} {step.label}{done}"))

    try:
        result = controller.compare(
            job.messages,
            job.specs,
            stop_event=job.stop,
            system_prompt=job.system_prompt,
            settings=job.settings,
            use_turn_settings=job.use_turn_settings,
            placement=job.placement,
            on_progress=on_progress,
            on_text=on_text,
            on_reply=comparing.measured,
        )
        post(SideTaskEnded(result))
    except EngineError as exc:
        post(SideTaskEnded(None, str(exc)))


@dataclass(frozen=True)
class ReplayJob:
    """Everything a replay's worker needs, taken on the UI thread."""

    messages: list[dict[str, str]]  # the turn before the reply
    saved_text: str
    snapshot: dict[str, Any]
    saved_stop_reason: str | None
    system_prompt: str | None
    stop: threading.Event
    spec: ModelSpec | None = None  # None: the snapshot's own, made safe
    allow_download: bool = False
    saved_reasoning: str = ""  # the reply's thinking, made again too


def run_replay(controller: ModelController, job: ReplayJob, post: Post) -> None:
    """A replay, in its worker thread: progress and :class:`SideTaskEnded` (``post``)."""
    from ..engine.errors import EngineError

    def progress(fraction: float, stage: str) -> None:
        if stage.startswith("waiting for "):
            post(SideStatus(f"replaying: {stage}"))
        else:
            post(SideStatus(f"replaying: {stage} {fraction * 100:.0f}%"))

    try:
        report = controller.replay(
            job.messages,
            job.saved_text,
            job.snapshot,
            stop_event=job.stop,
            system_prompt=job.system_prompt,
            saved_stop_reason=job.saved_stop_reason,
            progress=progress,
            spec=job.spec,
            allow_download=job.allow_download,
            saved_reasoning=job.saved_reasoning,
        )
        post(SideTaskEnded(report))
    except EngineError as exc:
        post(SideTaskEnded(None, str(exc)))


class Pane(Protocol):
    """What :class:`SideTasks` uses of its pane (a :class:`~.chat_pane.ChatPane`)."""

    conversation: Conversation
    controller: ModelController
    stop_event: threading.Event
    side_task: str | None
    side_status: str

    @property
    def app(self) -> App: ...

    @property
    def messages_view(self) -> VerticalScroll: ...

    def notify(
        self, message: str, *, title: str = ..., severity: str = ..., timeout: float = ...
    ) -> None: ...

    def busy(self) -> bool: ...

    def last_reply(self) -> ChatMessage | None: ...

    def update_status(self) -> None: ...

    def focus_prompt(self) -> None: ...

    def save(self, quiet: bool = False) -> bool: ...

    async def rebuild(self) -> None: ...

    def compare_in_thread(self, controller: ModelController, job: ComparisonJob) -> Any: ...

    def replay_in_thread(self, controller: ModelController, job: ReplayJob) -> Any: ...


class SideTasks:
    """The UI-thread side of a pane's comparisons and replays."""

    def __init__(self, pane: Pane) -> None:
        self.pane = pane
        self.comparing: Comparing | None = None
        self.last_compare = "@bf16"  # what the /compare dialog offers

    # -- which reply ----------------------------------------------------------------------
    def target_reply(self, message: ChatMessage | None = None) -> ChatMessage | None:
        """The reply an action on "this reply" means: ``message`` (a question: its reply
        on the active branch), else the focused message's, else the last reply."""
        pane = self.pane
        if message is None:
            focused = pane.app.focused
            if isinstance(focused, MessageView) and focused.parent is pane.messages_view:
                message = focused.message
        if message is None:
            return pane.last_reply()
        transcript = pane.conversation.transcript
        if message.role == "user" and message in transcript:
            after = transcript[transcript.index(message) + 1 :]
            message = after[0] if after else None
        if message is None or message.role != "assistant" or message not in transcript:
            return None
        return message

    def _turn_before(self, reply: ChatMessage) -> list[dict[str, str]]:
        transcript = self.pane.conversation.transcript
        return [m.as_chat() for m in transcript[: transcript.index(reply)] if m.role != "system"]

    def _reply_to(self, doing: str, message: ChatMessage | None, none: str) -> ChatMessage | None:
        """The reply a compare or replay acts on, or ``None`` (and a notice) when the pane
        is busy, the model is on an endpoint, or there is no such reply (``none``)."""
        pane = self.pane
        if pane.busy():
            return None
        if pane.controller.on_endpoint:
            pane.notify(
                f"{doing} runs models on this machine; switch to a local model first.",
                severity="warning",
                timeout=8,
            )
            return None
        reply = self.target_reply(message)
        if reply is None:
            pane.notify(none, severity="warning")
        return reply

    # -- comparing -------------------------------------------------------------------------
    async def compare(self, specs: str = "", message: ChatMessage | None = None) -> None:
        """The turn of ``message``'s reply answered again with each of ``specs`` (asked
        for in a dialog when empty)."""
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

        self.pane.app.push_screen(
            TextPrompt(
                "Compare this turn with (e.g. @bf16  @8bit  ./other@4bit  @same-no-draft)",
                self.last_compare,
            ),
            answered,
        )

    def _start_compare(self, reply: ChatMessage, text: str) -> None:
        from ..engine.errors import EngineError
        from ..engine.provenance import Provenance
        from ..engine.spec import precision_tag
        from ..screens.comparison import ComparisonScreen

        pane = self.pane
        if pane.busy() or reply not in pane.conversation.transcript:
            return
        try:
            order = parse_compare(text)
        except EngineError as exc:
            pane.notify(str(exc), title="Not compared", severity="error", timeout=10)
            return
        self.last_compare = text.strip()
        snapshot = Provenance.from_dict(reply.provenance) if reply.provenance else None
        if order.use_turn_settings and snapshot is not None:
            settings = snapshot.generation_settings()
        else:
            settings = GenerationSettings(dict(pane.conversation.settings))
        model = pane.controller.model
        reference = precision_tag(model.spec, model.dtype) if model is not None else "loaded model"
        labels = [reference, *(w.label for w in order.specs)]
        shown = [f"{reference} (loaded model)", *labels[1:]]
        messages = self._turn_before(reply)
        question = messages[-1]["content"] if messages else ""
        pane.stop_event = threading.Event()
        self.comparing = Comparing(reply.parent, labels, [""] * len(labels))
        screen = ComparisonScreen(question, shown, pane.stop_event)
        pane.side_task, pane.side_status = "comparing", ""
        pane.update_status()
        pane.app.push_screen(screen, lambda _: pane.focus_prompt())
        job = ComparisonJob(
            screen,
            messages,
            [str(w) for w in order.specs],
            pane.conversation.system_prompt or None,
            settings,
            order.use_turn_settings,
            order.placement,
            pane.stop_event,
            self.comparing,
        )
        pane.compare_in_thread(pane.controller, job)

    def keep_compared(
        self, replies: list[tuple[str, str, dict[str, Any]]], cut: str
    ) -> tuple[int, int]:
        """Add a comparison's replies (label, text, stored fields) as siblings of the
        turn's reply, leaving the active branch as it is; a reply the same as a version
        already there (the greedy reply its reference reproduced, or a comparison run
        twice) is not kept again. ``cut`` is the stop reason for a reply that was
        stopped. (The number kept, the number that were versions already.)"""
        comparing, self.comparing = self.comparing, None
        if comparing is None:
            return 0, 0
        conv = self.pane.conversation
        parent, kept, same = comparing.parent, 0, 0
        if parent is not None and conv.get(parent) is None:
            parent = None  # cleared meanwhile: nothing to hang them on
        # what each version says, unlabelled (the reply compared) or under its label
        there = {
            (label, m.content, m.reasoning or "")
            for m in conv.children().get(parent, [])
            if m.role == "assistant" and not m.interrupted
            for label in {None, m.label}
        }
        for index, (label, text, fields) in enumerate(replies):
            if not text and not fields.get("reasoning") and fields.get("error") is None:
                continue
            said = (text, fields.get("reasoning") or "")
            if fields.get("stop_reason") == StopReason.STOPPED:
                fields["stop_reason"] = cut
            elif (None if index == 0 else label, *said) in there:
                same += 1  # the reference reproduced a version, or the same run again
                continue
            fields["label"] = label
            if parent is not None:
                conv.add_child(parent, "assistant", text, make_head=False, **fields)
                there.add((label, *said))
                kept += 1
        return kept, same

    async def compared(self, comparison: Any, problem: str) -> None:
        """The comparison ended: keep its replies as versions of the turn, save, and
        tell its screen."""
        from ..screens.comparison import ComparisonScreen

        pane = self.pane
        kept = same = 0
        if comparison is not None and self.comparing is not None:
            replies = [(r.label, r.text, stored_fields(r)) for r in comparison.replies]
            kept, same = self.keep_compared(replies, StopReason.STOPPED)
        self.comparing = None
        saved = f"{same} already a version of this turn, not kept twice" if same else ""
        if kept:
            what = "1 reply kept as a version" if kept == 1 else f"{kept} replies kept as versions"
            saved = "; ".join(
                filter(None, [f"{what} of this turn (←/→ on the reply)", saved])
                if pane.save()
                else ["NOT SAVED (see the notice)"]
            )
            await pane.rebuild()
        for screen in pane.app.screen_stack:
            if isinstance(screen, ComparisonScreen):
                screen.post_message(ComparisonScreen.Done(comparison, problem, saved))
        if problem:
            pane.notify(problem, title="Not compared", severity="error", timeout=10)

    def interrupt(self) -> None:
        """Quitting mid-comparison: keep its replies as far as they were made, marked
        interrupted (the caller saves)."""
        if self.comparing is not None:
            self.pane.stop_event.set()
            self.keep_compared(self.comparing.partial_replies(), StopReason.INTERRUPTED)

    # -- replaying -------------------------------------------------------------------------
    def replay(self, message: ChatMessage | None = None) -> None:
        """Make ``message``'s reply again; ask first when the snapshot's model is not the
        loaded one, or when it ran the model's own code."""
        from ..engine.errors import EngineError
        from ..engine.provenance import Provenance
        from ..engine.trust import code_location, needs_download, same_model, with_remote_code

        pane = self.pane
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
            pane.notify(str(exc), title="Not replayed", severity="error", timeout=10)
            return
        model = pane.controller.model
        loaded = model.spec if model is not None else None
        same = loaded is not None and same_model(recorded.spec, loaded)
        allowed = same and loaded is not None and loaded.trust_remote_code
        asks_code = recorded.remote_code and not allowed
        said = [s for s in recorded.refused if not (allowed and "trust_remote_code" in s)]
        if same and not asks_code:
            for sentence in said:
                pane.notify(sentence, title="Replay", timeout=8)
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
            if answer not in ("go", "code") or reply not in pane.conversation.transcript:
                return
            if pane.busy():
                return
            spec = recorded.spec
            if answer == "code":
                spec = with_remote_code(spec)
            elif same and loaded is not None:
                spec = spec.with_changes(trust_remote_code=False)
            self._start_replay(reply, spec, allow_download=download)

        from ..screens.dialogs import ChoiceScreen

        pane.app.push_screen(ChoiceScreen("\n".join(lines), choices), answered)

    def _start_replay(
        self, reply: ChatMessage, spec: ModelSpec | None = None, allow_download: bool = False
    ) -> None:
        pane = self.pane
        pane.stop_event = threading.Event()
        pane.side_task, pane.side_status = "replaying", ""
        pane.update_status()
        job = ReplayJob(
            self._turn_before(reply),
            reply.content,
            dict(reply.provenance or {}),
            reply.stop_reason,
            pane.conversation.system_prompt or None,
            pane.stop_event,
            spec,
            allow_download,
            reply.reasoning or "",
        )
        pane.replay_in_thread(pane.controller, job)

    def replayed(self, report: Any, problem: str) -> None:
        pane = self.pane
        if problem:
            pane.notify(problem, title="Not replayed", severity="error", timeout=10)
        elif report is None or report.stopped:
            pane.notify("Replay stopped.", timeout=3)
        else:
            pane.notify(
                report.describe(),
                title="Replay",
                severity="information" if report.identical else "warning",
                timeout=20,
            )
