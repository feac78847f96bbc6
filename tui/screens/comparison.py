"""One question, its replies side by side: the loaded model's and each compared spec's,
streamed as they are made, then each one's costs and how far it agrees with the first.

The pane that asked runs the comparison (a worker of its own) and posts what happens
here; this screen only draws. Esc stops the comparison (what was shown is kept and
saved by the pane); once it is over, Esc closes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from .. import safe_text
from ..engine.reasoning import Reasoning
from .base import Dialog

if TYPE_CHECKING:
    from ..engine.compare import Comparison


def _plain(text: str) -> Text:
    return Text(safe_text.visible(text))


class ComparisonScreen(Dialog[None]):
    """``labels``: one per side, the reference first (e.g. ``@fp32``, ``@bf16``)."""

    BINDINGS = [Binding("escape", "stop_or_close", "Stop / close", id="comparison.close")]
    KEYS_HINT = "tab: next column · ↑↓ PgUp PgDn: scroll it"

    DEFAULT_CSS = """
    ComparisonScreen { align: center middle; }
    #comparison {
        width: 96%; height: 94%; border: round $accent; background: $surface; padding: 0 1;
    }
    #comparison .question { color: $text; text-style: bold; max-height: 4; }
    #compare-notes, #compare-status { color: $text-muted; }
    #comparison .sides { height: 1fr; }
    #comparison .side { width: 1fr; border: tall $panel; margin: 0 1 0 0; }
    #comparison .side-header { text-style: bold; color: $accent; }
    #comparison .side-body { height: 1fr; }
    #comparison .side-body:focus { background: $boost; }
    #comparison .side-stats { color: $text-muted; height: auto; }
    """

    @dataclass
    class Chunk(Message):
        index: int
        text: str

    @dataclass
    class Status(Message):
        text: str

    @dataclass
    class Done(Message):
        comparison: Comparison | None
        problem: str = ""
        """One sentence when the comparison could not run (or be saved)."""
        saved: str = ""
        """What the pane kept, for the status line."""

    def __init__(self, question: str, labels: list[str], stop: threading.Event) -> None:
        super().__init__()
        self.question = question
        self.labels = labels
        self.stop = stop
        self.texts = ["" for _ in labels]
        self.thoughts = ["" for _ in labels]  # reasoning: shown folded, as one line
        self.thought_lines = ["" for _ in labels]
        self._dirty: set[int] = set()
        self.finished = False
        self.comparison: Comparison | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="comparison"):
            yield Static(
                _plain("You: " + safe_text.one_line(self.question, 400)), classes="question"
            )
            yield Static("", id="compare-notes")
            with Horizontal(classes="sides"):
                for index, label in enumerate(self.labels):
                    with Vertical(classes="side", id=f"side-{index}"):
                        yield Static(_plain(safe_text.one_line(label, 60)), classes="side-header")
                        with VerticalScroll(classes="side-body"):
                            yield Static("", classes="side-text")
                        yield Static("", classes="side-stats")
            yield Static(_plain(f"starting… (esc stops) · {self.KEYS_HINT}"), id="compare-status")

    def on_mount(self) -> None:
        self.set_interval(0.1, self._draw)  # streamed text: a few redraws a second
        # the first column has the keys: arrows scroll it, tab moves to the next one
        self.query(".side-body").first().focus()

    def side(self, index: int) -> Vertical:
        return self.query_one(f"#side-{index}", Vertical)

    def _draw(self) -> None:
        for index in sorted(self._dirty):
            side = self.side(index)
            body = side.query_one(".side-body", VerticalScroll)
            at_end = body.scroll_y >= body.max_scroll_y - 1
            shown = self.texts[index]
            if self.thought_lines[index]:
                shown = f"{self.thought_lines[index]}\n\n{shown}"
            elif self.thoughts[index]:
                shown = f"▸ Thinking… ({len(self.thoughts[index])} characters)\n\n{shown}"
            side.query_one(".side-text", Static).update(_plain(shown))
            if at_end:
                body.scroll_end(animate=False)
        self._dirty.clear()

    def on_comparison_screen_chunk(self, message: Chunk) -> None:
        message.stop()
        if 0 <= message.index < len(self.texts) and not self.finished:
            if isinstance(message.text, Reasoning):
                self.thoughts[message.index] += message.text
            else:
                self.texts[message.index] += message.text
            self._dirty.add(message.index)

    def on_comparison_screen_status(self, message: Status) -> None:
        message.stop()
        if not self.finished:
            text = f"{message.text} · {self.KEYS_HINT}"
            self.query_one("#compare-status", Static).update(_plain(text))

    def on_comparison_screen_done(self, message: Done) -> None:
        from ..engine.compare import table_rows

        message.stop()
        self.finished = True
        self.comparison = comparison = message.comparison
        status = message.problem or message.saved
        status = (status + " · " if status else "") + f"esc closes · {self.KEYS_HINT}"
        self.query_one("#compare-status", Static).update(_plain(status))
        if comparison is None:
            return
        self.query_one("#compare-notes", Static).update(_plain("\n".join(comparison.notes)))
        header, rows = table_rows(comparison.replies)
        for reply, row in zip(comparison.replies, rows, strict=True):
            if reply.index >= len(self.labels):
                continue
            self.texts[reply.index] = reply.text
            if reply.reasoning:  # folded: the whole reasoning is kept with the reply
                took = reply.stats.reasoning_seconds
                tokens = reply.stats.reasoning_tokens
                self.thought_lines[reply.index] = " · ".join(
                    ["▸ Thought" + (f" for {took:.0f} s" if took is not None else "")]
                    + ([f"{tokens} tokens"] if tokens else [])
                    + ["kept with the reply"]
                )
            self._dirty.add(reply.index)
            # the figures on as few lines as the column's width allows: the reply keeps
            # the height (one line per figure left a few lines of text at 80x24)
            figures = [f"{name}: {value}" for name, value in zip(header[1:], row[1:], strict=True)]
            lines = [" · ".join(figures)]
            lines += [f"note: {notice}" for notice in reply.notices]
            if reply.error:
                lines.append(f"error: {reply.error}")
            stats = self.side(reply.index).query_one(".side-stats", Static)
            stats.update(_plain("\n".join(lines)))
        self._draw()

    def action_stop_or_close(self) -> None:
        if self.finished:
            self.dismiss(None)
        elif not self.stop.is_set():
            self.stop.set()
            self.query_one("#compare-status", Static).update(
                _plain("stopping; what was shown is kept… (esc closes once stopped)")
            )
