"""The prompt: Enter sends, ctrl+j (or shift+enter) inserts a newline, Up/Down at the
edges of the text recall earlier prompts."""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from textual import events
from textual.message import Message
from textual.strip import Strip
from textual.widgets import TextArea

from .. import safe_text


class PromptInput(TextArea):
    DEFAULT_CSS = """
    PromptInput {
        height: auto;
        max-height: 10;
        min-height: 3;
    }
    """

    # A paste is kept as pasted (sent and stored so) and its controls drawn as
    # placeholders (render_line); the app cleans a paste into any other input.
    keeps_paste = True

    @dataclass
    class Submitted(Message):
        input: PromptInput
        text: str

    def __init__(self, history: list[str] | None = None, **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus", **kwargs)
        self.prompt_history: list[str] = list(history or [])
        self._recall: int | None = None
        self._draft = ""

    def render_line(self, y: int) -> Strip:
        """A pasted escape sequence stays in the text (it is sent as pasted) but is drawn
        as placeholders: Textual's TextArea drew a raw ESC, which the terminal obeys."""
        strip = super().render_line(y)
        segments = list(strip)
        shown = [safe_text.visible(segment.text) for segment in segments]
        if all(a == b.text for a, b in zip(shown, segments, strict=True)):
            return strip
        return Strip(
            [
                Segment(text, seg.style, seg.control)
                for text, seg in zip(shown, segments, strict=True)
            ]
        ).crop(0, strip.cell_length)

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.prevent_default()
            event.stop()
            text = self.text
            if text.strip():
                self.remember(text)
                self.post_message(self.Submitted(self, text))
            return
        if event.character == "?" and not self.text:  # help, on an empty prompt
            event.prevent_default()
            event.stop()
            await self.run_action("app.help")
            return
        if event.key in ("ctrl+j", "shift+enter", "alt+enter"):
            event.prevent_default()
            event.stop()
            self.insert("\n")
            return
        if event.key == "up" and self.cursor_location[0] == 0 and self.prompt_history:
            event.prevent_default()
            event.stop()
            self._step(-1)
            return
        if (
            event.key == "down"
            and self._recall is not None
            and self.cursor_location[0] == self.document.line_count - 1
        ):
            event.prevent_default()
            event.stop()
            self._step(1)
            return
        if not event.is_printable and await self._own_binding(event):
            return
        await super()._on_key(event)

    async def _own_binding(self, event: events.Key) -> bool:
        """Run the text area's own binding for ``event`` (backspace, delete, ctrl+w …)
        here, in the order typed. Left to Textual, a binding runs once the key has
        bubbled up to the app, and the letters typed after it are inserted first: a
        fast "x, backspace, e" left "xe" with the last letter deleted."""
        bindings = self._bindings
        if self.app._keymap:  # the user's remapping, as Textual's own check applies it
            bindings = bindings.copy()
            bindings.apply_keymap(self.app._keymap)
        for binding in bindings.key_to_bindings.get(event.key, ()):
            if binding.priority:
                continue
            event.prevent_default()
            event.stop()
            await self.run_action(binding.action)
            return True
        return False

    def remember(self, text: str) -> None:
        if not self.prompt_history or self.prompt_history[-1] != text:
            self.prompt_history.append(text)
        self._recall = None

    def _step(self, delta: int) -> None:
        if self._recall is None:
            if delta > 0:
                return
            self._draft = self.text
            self._recall = len(self.prompt_history)
        self._recall = max(0, self._recall + delta)
        if self._recall >= len(self.prompt_history):
            self._recall = None
            self.load_text(self._draft)
        else:
            self.load_text(self.prompt_history[self._recall])
        self.move_cursor(self.document.end)
