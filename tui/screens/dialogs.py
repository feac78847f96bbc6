"""Small dialogs: a yes/no question and a one-line text prompt."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label

from .. import safe_text
from .base import Dialog


class ConfirmScreen(Dialog[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(safe_text.visible(self.question)))
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class TextPrompt(Dialog[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__()
        self.question, self.value = question, value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(safe_text.visible(self.question)))
            yield Input(self.value)

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceScreen(Dialog[str | None]):
    """A question with a few answers, each on a key: ``choices`` maps an answer's id to
    ``(key, label)``. Esc answers ``None``."""

    BINDINGS = [Binding("escape", "choose(None)", "Cancel", id="choice.cancel")]

    def __init__(self, question: str, choices: dict[str, tuple[str, str]]) -> None:
        super().__init__()
        self.question = question
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(safe_text.visible(self.question)))
            with Vertical(classes="buttons stacked"):
                for answer, (key, label) in self.choices.items():
                    yield Button(f"{label} ({key})", id=f"choice-{answer}")

    def on_key(self, event) -> None:
        for answer, (key, _label) in self.choices.items():
            if event.key == key:
                event.stop()
                self.dismiss(answer)
                return

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss((event.button.id or "").removeprefix("choice-"))

    def action_choose(self, answer: str | None) -> None:
        self.dismiss(answer)
