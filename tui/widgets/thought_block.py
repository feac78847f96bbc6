"""A reply's reasoning: a folded, dimmed block above its answer.

Folded it is one line, ``▸ Thinking… 4 s`` while the model thinks and ``▸ Thought for
12 s · 340 tokens`` after (``· stopped`` when the reply was stopped while thinking); a
click on it, or the message's menu (Enter on the focused reply), unfolds it. The text is
shown through :func:`tui.safe_text.visible` and drawn only while unfolded.

One widget (a Static, hidden while there is no reasoning) rather than a header and a
body: every reply has one, and a long conversation mounts hundreds of replies.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.events import Click
from textual.reactive import reactive
from textual.widgets import Static

from .. import safe_text
from ..reasons import cut_short
from ..store.model import ChatMessage


def summary(message: ChatMessage, thinking: bool, seconds: float | None) -> str:
    """The folded line's words (without the arrow)."""
    if thinking:
        return "Thinking…" + (f" {seconds:.0f} s" if seconds is not None else "")
    parts = ["Thought"]
    took = message.reasoning_seconds if message.reasoning_seconds is not None else seconds
    if took is not None:
        parts[0] += f" for {took:.0f} s"
    if message.reasoning_tokens:
        tokens = message.reasoning_tokens
        parts.append(f"{tokens} token{'' if tokens == 1 else 's'}")
    if cut_short(message.stop_reason) and not message.content:
        parts.append(str(message.stop_reason))  # stopped while thinking
    return " · ".join(parts)


class ThoughtBlock(Static):
    """The reasoning of one reply; hidden when it has none. ``expanded`` toggles the
    ``-expanded`` CSS class and draws the text below the summary line."""

    expanded: reactive[bool] = reactive(False)

    def __init__(self, message: ChatMessage, **kwargs) -> None:
        super().__init__(**kwargs)
        self.message = message
        self.text = message.reasoning or ""
        self.thinking = False  # reasoning is streaming in and no answer yet
        self.started: float | None = None  # when streamed reasoning began
        self.ended: float | None = None

    def on_mount(self) -> None:
        self._refresh()

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.monotonic()) - self.started

    def write(self, chunk: str) -> None:
        """Streamed reasoning."""
        if self.started is None:
            self.started = time.monotonic()
        self.thinking = True
        drawn = len(self.text) <= safe_text.DRAWN_CHARS
        self.text += chunk
        if drawn or not self.expanded:  # past what is drawn, only the summary changes
            self._refresh()

    def answer_began(self) -> None:
        if self.thinking:
            self.thinking = False
            self.ended = time.monotonic()
            self._refresh()

    def show(self, message: ChatMessage) -> None:
        """The reply as kept (its reasoning, tokens and time)."""
        self.message = message
        self.thinking = False
        self.text = message.reasoning or self.text
        self._refresh()

    def toggle(self) -> None:
        self.expanded = not self.expanded

    def on_click(self, event: Click) -> None:
        event.stop()
        self.toggle()

    def watch_expanded(self, expanded: bool) -> None:
        self.set_class(expanded, "-expanded")
        self._refresh()

    def _refresh(self) -> None:
        self.display = bool(self.text) or self.thinking
        if not self.display:
            return
        arrow = "▾" if self.expanded else "▸"
        line = f"{arrow} {summary(self.message, self.thinking, self.seconds)}"
        shown = Text(safe_text.one_line(line), style="italic")
        if self.expanded:
            shown.append("\n")
            shown.append(safe_text.visible_head(self.text))
        self.update(shown)
