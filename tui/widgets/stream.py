"""The reply a pane is making, from start to end.

:meth:`ReplyStream.start` runs on the UI thread: it mounts the reply's view and builds
the :class:`~tui.engine.protocol.ChatRequest` from the conversation. The pane's
generation worker then runs :func:`generate` in its thread with everything it needs
as arguments, and reaches the UI only by posting :mod:`tui.worker_messages`, which
the pane hands back here: the turn started, text arrived (coalesced by
:class:`ChunkBuffer`), the reply ended. What ends is kept in the conversation (the
pane saves it); a reply cut short by a quit is kept by :meth:`ReplyStream.interrupt`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..engine.protocol import ChatRequest
from ..engine.reasoning import Reasoning
from ..engine.settings import GenerationSettings
from ..reasons import StopReason
from ..store.model import ChatMessage
from ..worker_messages import (
    GenerationFinished,
    GenerationStarted,
    GenerationWaiting,
    TokenChunk,
)
from .message_view import MessageView

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from textual.containers import VerticalScroll
    from textual.message import Message

    from ..engine.controller import ModelController
    from ..engine.generation import GenerationResult, GenerationStats, TurnInfo
    from ..store.model import Conversation


class ChunkBuffer:
    """Coalesce streamed text into a few UI updates a second.

    Re-rendering the growing Markdown costs the UI thread CPU that the model needs (on
    two cores, per-token updates cut generation speed by a quarter), and the cost grows
    with the reply, so the interval grows with it: 10 updates/s at first, 2/s for a
    reply of 8,000 characters or more. Reasoning and answer pieces
    (:class:`~tui.engine.reasoning.Reasoning` or not) are posted apart, in order."""

    def __init__(self, post: Callable[[str], None]) -> None:
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

    def take(self) -> list[str]:
        """Every piece not yet posted, each part's runs joined (for an interrupt: kept,
        never drawn)."""
        with self._lock:
            pieces, self.parts = self.parts, []
        joined: list[str] = []
        for thought, run in itertools.groupby(pieces, key=lambda p: isinstance(p, Reasoning)):
            text = "".join(run)
            joined.append(Reasoning(text) if thought else text)
        return joined

    def flush(self) -> None:
        for text in self.take():
            if text:
                self.post(text)


def generate(
    controller: ModelController,
    request: ChatRequest,
    buffer: ChunkBuffer,
    stop: threading.Event,
    post: Callable[[Message], Any],
    alternatives: Sequence[ChatRequest] = (),
) -> None:
    """The generation worker's work, in its thread: answer ``request`` and post
    :class:`GenerationStarted`, the text (through ``buffer``) and
    :class:`GenerationFinished`. A failure before the first token is a result with
    the sentence; nothing is lost. Each of ``alternatives`` (other replies to the same
    turn) is answered at the same time in a thread of its own, so a local model
    decodes them all in one batch; they are not shown as they stream, and come back
    with the reply (the same stop ends them all)."""
    others = [_Alternative(controller, r, stop) for r in alternatives]
    for other in others:
        other.start()
    result = _answer(
        controller,
        request,
        stop,
        on_text=buffer.add,
        on_start=lambda info: post(GenerationStarted(info)),
        on_wait=lambda text: post(GenerationWaiting(text)),
        flush=buffer.flush,
    )
    post(GenerationFinished(result, request.continue_final, [o.finish() for o in others]))


def _answer(
    controller: ModelController,
    request: ChatRequest,
    stop: threading.Event,
    flush: Callable[[], None] = lambda: None,
    **callbacks: Any,
) -> GenerationResult:
    from ..engine.errors import EngineError
    from ..engine.generation import GenerationResult, GenerationStats

    try:
        result = controller.chat(request, stop_event=stop, **callbacks)
    except EngineError as exc:  # before the first token: a sentence, nothing lost
        result = GenerationResult("", GenerationStats(stop_reason=StopReason.ERROR, error=str(exc)))
    finally:
        flush()
    if result is None:  # stopped while waiting for a model
        result = GenerationResult("", GenerationStats(stop_reason=StopReason.STOPPED))
    return result


class _Alternative(threading.Thread):
    """Another reply to the same turn, answered beside the one shown."""

    def __init__(
        self, controller: ModelController, request: ChatRequest, stop: threading.Event
    ) -> None:
        super().__init__(name="alternative", daemon=True)
        self.controller, self.request, self.stop = controller, request, stop
        self.result: GenerationResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = _answer(self.controller, self.request, self.stop)
        except BaseException as exc:  # said with the reply, never lost in a thread
            self.error = exc

    def finish(self) -> GenerationResult:
        from ..engine.generation import GenerationResult, GenerationStats

        self.join()
        if self.result is not None:
            return self.result
        error = f"Generation failed: {type(self.error).__name__}: {self.error}"
        return GenerationResult("", GenerationStats(stop_reason=StopReason.ERROR, error=error))


def alternative(request: ChatRequest, index: int) -> ChatRequest:
    """The ``index``-th other reply to ``request``'s turn: it reads the conversation's
    KV cache but leaves it to the reply shown, and samples with its own seed (the
    conversation's seed + ``index`` when it has one, else one drawn for it)."""
    import dataclasses

    values = dict(request.settings.values) if request.settings is not None else {}
    if values.get("seed") is not None:
        values["seed"] = (int(values["seed"]) + index) % 2**32
    return dataclasses.replace(request, settings=GenerationSettings(values), keep_cache=False)


class Pane(Protocol):
    """What a :class:`ReplyStream` uses of its pane (a :class:`~.chat_pane.ChatPane`)."""

    conversation: Conversation
    controller: ModelController
    stop_event: threading.Event
    generating: bool

    @property
    def messages_view(self) -> VerticalScroll: ...

    def query(self, selector: type[MessageView]) -> Iterable[MessageView]: ...

    def notify(self, message: str, *, severity: str = ..., timeout: float = ...) -> None: ...

    def post_message(self, message: Message) -> bool: ...

    # starts the pane's generation worker with these arguments
    generate_in_thread: Callable[
        [ModelController, ChatRequest, ChunkBuffer, threading.Event, list[ChatRequest]], Any
    ]

    def mark_outside_context(self, dropped: int) -> None: ...

    def update_status(self) -> None: ...


class ReplyStream:
    """The pane's reply in progress (on the UI thread): its view, the text shown so far,
    what the model was shown (:attr:`turn`), and how the last reply went."""

    def __init__(self, pane: Pane) -> None:
        self.pane = pane
        self.view: MessageView | None = None
        self.continuing: ChatMessage | None = None  # the reply being continued
        self.partial = ""  # the text shown so far
        self.thought = ""  # the reasoning shown so far
        self.turn: TurnInfo | None = None
        self.waiting = False  # for the model (another tab may be generating)
        self.waiting_for = ""  # what for, as the engine says it ("a comparison to finish")
        self.alternatives = 0  # other replies to the same turn being made with this one
        self.last_stats: GenerationStats | None = None
        self.parent: str | None = None  # the message the reply answers
        self._buffer: ChunkBuffer | None = None

    async def start(self, continue_last: bool = False, count: int = 1) -> None:
        """Show a reply to the conversation's last message (or continue its last reply)
        and start the pane's generation worker. ``count`` > 1 makes that many replies to
        the turn at once (the others are kept as its versions when they end)."""
        pane = self.pane
        conv = pane.conversation
        if continue_last:
            last = conv.transcript[-1] if conv.transcript else None
            if last is None or last.role != "assistant":
                pane.notify("There is no reply to continue.", severity="warning")
                return
            engine = pane.controller.engine
            if engine is not None and not engine.capabilities.continue_reply:
                pane.notify(
                    "This backend cannot continue a reply; regenerate it instead (ctrl+r).",
                    severity="warning",
                )
                return
            self.continuing = last
            self.view = next((v for v in pane.query(MessageView) if v.message is last), None)
        else:
            self.continuing = None
            placeholder = ChatMessage(role="assistant", content="", parent=conv.head)
            self.view = MessageView(placeholder)
            await pane.messages_view.mount(self.view)
        if self.view is not None:
            self.view.streaming = True
        self.parent = conv.head
        self.partial = ""
        self.thought = ""
        self.turn = None
        pane.stop_event = threading.Event()
        pane.generating = True
        self.waiting = True
        self.waiting_for = ""
        pane.messages_view.scroll_end(animate=False)
        # the buffer is read by interrupt() for text decoded but not yet drawn
        self._buffer = ChunkBuffer(
            lambda text: pane.post_message(TokenChunk(text, isinstance(text, Reasoning)))
        )
        request = ChatRequest(
            conv.chat_messages(),
            conv.system_prompt or None,
            conversation_id=conv.id,
            settings=GenerationSettings(dict(conv.settings)),
            continue_final=continue_last,
        )
        others = [alternative(request, k) for k in range(1, max(1, count))]
        self.alternatives = len(others)
        pane.generate_in_thread(pane.controller, request, self._buffer, pane.stop_event, others)

    @property
    def streams(self) -> int:
        """Replies this pane is streaming now (0 while it waits for the model)."""
        if not self.pane.generating or self.waiting:
            return 0
        return 1 + self.alternatives

    def waited(self, text: str) -> None:
        """The reply waits for the model: the status line says for what."""
        if self.pane.generating and self.waiting:
            self.waiting_for = text
            self.pane.update_status()

    def started(self, info: TurnInfo) -> None:
        """The model is ours and the prompt is built."""
        pane = self.pane
        self.waiting = False
        self.waiting_for = ""
        self.turn = info
        pane.mark_outside_context(info.dropped_messages)
        for notice in info.notices:
            pane.notify(notice, timeout=8)
        pane.update_status()

    async def show(self, text: str, reasoning: bool = False) -> None:
        """Streamed text (of the answer, or of the reasoning before it): drawn, and
        followed to the bottom if the view was there."""
        pane = self.pane
        if not pane.generating:
            return
        if reasoning:
            self.thought += text
        else:
            self.partial += text
        if self.view is None or not self.view.is_attached:
            return  # the view was replaced meanwhile (a /clear): the text is kept
        scroll = pane.messages_view
        at_bottom = scroll.scroll_y >= scroll.max_scroll_y - 2
        if reasoning:
            self.view.write_thought(text)
        else:
            await self.view.write(text)
        if at_bottom:
            scroll.scroll_end(animate=False)
        pane.update_status()

    def context_used(self) -> int:
        """Tokens of the context in use: this turn's prompt and the reply so far while
        generating, else the last reply's prompt and reply."""
        if self.pane.generating and self.turn is not None and self.turn.prompt_tokens:
            written = len(self.thought) + len(self.partial)
            streamed = max(1, written // 4) if written else 0  # ~4 chars a token
            return self.turn.prompt_tokens + streamed
        last = next(
            (
                m
                for m in reversed(self.pane.conversation.transcript)
                if m.role == "assistant" and m.prompt_tokens
            ),
            None,
        )
        return (last.prompt_tokens or 0) + (last.new_tokens or 0) if last is not None else 0

    def _fields(self, stats: GenerationStats | None) -> dict[str, Any]:
        """The stored fields of a reply: its stats, speculative figures and the snapshot
        of how it was made (model, precision, device, settings, seed)."""
        model = self.pane.controller.model
        fields: dict[str, Any] = stats.message_fields() if stats else {"error": None}
        fields["model"] = model.name if model else None
        fields["stop_reason"] = StopReason(stats.stop_reason) if stats else StopReason.ERROR
        return fields

    async def finish(
        self,
        text: str,
        stats: GenerationStats | None,
        reasoning: str = "",
        alternatives: Sequence[GenerationResult] = (),
    ) -> bool:
        """The reply ended (or its worker failed): keep it in the conversation, with the
        other replies made beside it as its versions, and show it whole. ``False`` if no
        reply was being made."""
        pane = self.pane
        if not pane.generating:
            return False
        conv = pane.conversation
        meta = self._fields(stats)
        view = self.view
        if self.continuing is not None:
            reply = self.continuing
            reply.content += text
            if reasoning:
                reply.reasoning = (reply.reasoning or "") + reasoning
            reply.new_tokens = (reply.new_tokens or 0) + (meta["new_tokens"] or 0)
            reply.stop_reason, reply.error = meta["stop_reason"], meta["error"]
            conv.touch()
        elif text or reasoning or meta["stop_reason"] != StopReason.STOPPED:
            reply = self._keep(text, {**meta, "reasoning": reasoning or None})
        else:  # stopped before the first token: nothing to keep
            reply = None
            if view is not None and view.is_attached:
                await view.remove()
            view = None
        for other in alternatives:
            if other.text or other.reasoning or other.stats.stop_reason != StopReason.STOPPED:
                meta = {**self._fields(other.stats), "reasoning": other.reasoning or None}
                self._keep(other.text, meta, head=False)
        if view is not None and reply is not None and view.is_attached:
            view.message = reply
            view.version = conv.sibling_position(reply.id)
            await view.finish()
            if self.continuing is None and text != self.partial:
                await view.set_text(text)
        self.view = None
        self.continuing = None
        self.partial = ""
        self.thought = ""
        self.last_stats = stats
        self.alternatives = 0
        pane.generating = False
        self.waiting = False
        self.waiting_for = ""
        return True

    def interrupt(self) -> None:
        """Quitting mid-reply: keep the text streamed so far, including what was decoded
        but not yet drawn, marked interrupted (the caller saves)."""
        pane = self.pane
        pane.stop_event.set()
        if self._buffer is not None:
            for piece in self._buffer.take():
                if isinstance(piece, Reasoning):
                    self.thought += piece
                else:
                    self.partial += piece
        if self.continuing is not None:
            reply = self.continuing
            reply.content += self.partial
            if self.thought:
                reply.reasoning = (reply.reasoning or "") + self.thought
            reply.stop_reason = StopReason.INTERRUPTED
        else:
            model = pane.controller.model
            meta = {
                "model": model.name if model else None,
                "stop_reason": StopReason.INTERRUPTED,
                "reasoning": self.thought or None,
            }
            block = self.view.thought if self.view is not None else None
            if self.thought and block is not None and block.seconds is not None:
                meta["reasoning_seconds"] = block.seconds  # as long as it was shown thinking
            reply = self._keep(self.partial, meta)
        if self.view is not None and self.view.is_attached:
            self.view.message = reply
            self.view.refresh_header()
        pane.generating = False

    def _keep(self, text: str, meta: dict[str, Any], head: bool = True) -> ChatMessage:
        """The reply, added to the conversation under the message it answers: at the
        head as usual, or (if the conversation moved on meanwhile, e.g. a /clear, or it
        is an alternative, ``head=False``) kept beside it without taking the head."""
        conv = self.pane.conversation
        self._record_model()
        if head and conv.head == self.parent:
            return conv.append("assistant", text, **meta)
        parent = self.parent if self.parent is None or conv.get(self.parent) else None
        return conv.add_child(parent, "assistant", text, make_head=False, **meta)

    def _record_model(self) -> None:
        """The conversation notes the model it is being answered by."""
        controller = self.pane.controller
        model = controller.spec.to_dict()
        if controller.on_endpoint and controller.endpoint_url:
            model["endpoint"] = controller.endpoint_url  # the URL only, never a key
            if controller.model is not None:
                model["endpoint_model"] = controller.model.name  # what the server ran
        self.pane.conversation.model = model
