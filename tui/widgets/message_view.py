"""One message: a header line (role, model, stats), a reply's reasoning folded
(:class:`~.thought_block.ThoughtBlock`) and a Markdown body that streams.

The text is shown through :func:`tui.safe_text.visible`: a reply's escape sequences
and control characters appear as placeholders and never reach the terminal; the
conversation keeps the text exactly as received.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Markdown, Static

from .. import safe_text
from ..reasons import cut_short
from ..store.model import ChatMessage
from .thought_block import ThoughtBlock

ROLE_LABEL = {"user": "You", "assistant": "Assistant", "system": "System"}


def describe(message: ChatMessage, version: tuple[int, int] | None = None) -> str:
    """The header line; ``version`` (index, count) adds ``‹2/3›`` to a message that has
    other versions (a regenerated reply, an edited question)."""
    parts = [ROLE_LABEL.get(message.role, message.role)]
    if version is not None and version[1] > 1:
        parts[0] += f" ‹{version[0]}/{version[1]}›"
    if message.role == "assistant":
        if message.label:
            parts.append(message.label)
        if message.model:
            parts.append(message.model)
        if message.new_tokens:
            parts.append(f"{message.new_tokens} token{'' if message.new_tokens == 1 else 's'}")
        if message.time_to_first_token:
            parts.append(f"first token {message.time_to_first_token * 1000:.0f} ms")
        if message.tokens_per_second:
            parts.append(f"{message.tokens_per_second:.1f} tok/s")
        if cut_short(message.stop_reason) or message.stop_reason == "length":
            parts.append(f"[{message.stop_reason}]")
    return " · ".join(parts)


class MessageView(Vertical, can_focus=False):
    """A chat message. ``streaming`` is set while tokens arrive.

    Messages are not in the Tab order: ctrl+↑ (or alt+↑) from the prompt focuses the
    last one (see ChatPane), and only then can a message take the focus. Focused:
    ↑/↓ move to the previous/next message, ←/→ switch to its other versions, Enter
    opens what can be done with it (compare, replay, copy, edit). Keys that type (a
    letter, a space) go back to the prompt with the character: nothing a person types
    fires an action here."""

    BINDINGS = [
        Binding("left", "version(-1)", "Previous version", id="message.previous_version"),
        Binding("right", "version(1)", "Next version", id="message.next_version"),
        Binding("up", "step(-1)", "Previous message", show=False, id="message.previous"),
        Binding("down", "step(1)", "Next message", show=False, id="message.next"),
        Binding("enter", "act('menu')", "Actions", id="message.actions",
                tooltip="on a focused message: compare its turn, replay it, copy it, edit it"),
    ]  # fmt: skip

    streaming: reactive[bool] = reactive(False)

    @dataclass
    class SwitchVersion(Message):
        view: MessageView
        step: int

    @dataclass
    class Act(Message):
        """A key for an action on this message (``menu``, ``compare``, ``replay``)."""

        view: MessageView
        action: str

    @dataclass
    class Step(Message):
        """↑/↓ on a focused message: the focus moves to the previous/next one."""

        view: MessageView
        step: int

    @dataclass
    class TypedAway(Message):
        """Typing landed here: it belongs to the prompt. ``typed`` is the key (or paste)
        to send there again: typed text, or a key that followed it before the focus
        could move (the Enter of "typed a question and pressed Enter")."""

        view: MessageView
        typed: events.Key | events.Paste

    def __init__(
        self, message: ChatMessage, version: tuple[int, int] | None = None, **kwargs
    ) -> None:
        classes = f"{message.role} {kwargs.pop('classes', '')}".strip()
        super().__init__(classes=classes, **kwargs)
        self.message = message
        self.version = version
        self._stream = None
        self._streamed = 0  # characters of the reply streamed into the view
        self._typing = False  # text typed here went to the prompt; the keys after it too
        assistant = message.role == "assistant"
        self._thought = ThoughtBlock(message, classes="thought") if assistant else None

    def set_outside_context(self, outside: bool) -> None:
        if outside != self.has_class("-outside-context"):
            self.set_class(outside, "-outside-context")
            self.refresh_header()

    def action_version(self, step: int) -> None:
        self.post_message(self.SwitchVersion(self, step))

    def action_act(self, action: str) -> None:
        self.post_message(self.Act(self, action))

    def action_step(self, step: int) -> None:
        self.post_message(self.Step(self, step))

    def on_key(self, event: events.Key) -> None:
        """Text goes to the prompt, and so does every key after it until the focus has
        moved there: keys typed together arrive before the focus can follow them."""
        if event.is_printable and event.character:
            self._typing = True
        elif not self._typing:
            return
        self._hand_over(event)

    def on_paste(self, event: events.Paste) -> None:
        self._typing = True
        self._hand_over(event)

    def _hand_over(self, event: events.Key | events.Paste) -> None:
        event.stop()
        event.prevent_default()
        if not getattr(event, "handed_over", False):  # once: never a loop between us
            self.post_message(self.TypedAway(self, event))

    def on_focus(self) -> None:
        self._typing = False

    def on_blur(self) -> None:
        self.can_focus = False  # back out of the Tab order
        self._typing = False

    def compose(self) -> ComposeResult:
        yield Static(self._header(), classes="message-header")
        if self._thought is not None:
            yield self._thought
        yield Markdown(safe_text.visible_head(self.message.content), classes="message-body")

    def _header(self) -> Text:
        header = describe(self.message, self.version)
        if self.has_class("-outside-context"):
            header += " · outside the model's context"
        return Text(safe_text.one_line(header))

    @property
    def body(self) -> Markdown:
        return self.query_one(".message-body", Markdown)

    @property
    def thought(self) -> ThoughtBlock | None:
        """A reply's reasoning block (None for a question)."""
        return self._thought

    def toggle_thought(self) -> bool:
        """Unfold (or fold) the reply's reasoning; ``False`` if it has none."""
        block = self.thought
        if block is None or not block.display:
            return False
        block.toggle()
        return True

    def refresh_header(self) -> None:
        self.query_one(".message-header", Static).update(self._header())
        if not self.streaming and self.thought is not None:
            self.thought.show(self.message)
        self.set_class(cut_short(self.message.stop_reason), "interrupted")

    def on_mount(self) -> None:
        self.set_class(cut_short(self.message.stop_reason), "interrupted")

    def watch_streaming(self, streaming: bool) -> None:
        self.set_class(streaming, "streaming")

    def write_thought(self, chunk: str) -> None:
        """Streamed reasoning, into the folded block above the answer."""
        self.streaming = True
        if self.thought is not None:
            self.thought.write(chunk)

    async def write(self, chunk: str) -> None:
        """Append streamed text (Markdown.get_stream batches the re-rendering)."""
        if self.thought is not None:
            self.thought.answer_began()
        if self._stream is None:
            bodies = self.query(".message-body")
            if not bodies:
                return  # the view is being taken down (a rebuild, a closed tab): the
                # text is kept in the conversation, which a new view shows
            self._stream = Markdown.get_stream(bodies.first(Markdown))
            self.streaming = True
        room = safe_text.DRAWN_CHARS - self._streamed
        self._streamed += len(chunk)
        if room > 0:  # past what a window draws, the rest is counted for :meth:`finish`
            await self._stream.write(safe_text.visible(chunk[:room]))

    async def finish(self) -> None:
        if self._stream is not None:
            if self._streamed > safe_text.DRAWN_CHARS:
                await self._stream.write(
                    safe_text.more_line(self._streamed - safe_text.DRAWN_CHARS)
                )
            await self._stream.stop()
            self._stream = None
        self.streaming = False
        self.refresh_header()

    async def set_text(self, text: str) -> None:
        bodies = self.query(".message-body")
        if bodies:  # none while the view is taken down
            await bodies.first(Markdown).update(safe_text.visible_head(text))
