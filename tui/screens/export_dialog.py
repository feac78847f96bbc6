"""Export one conversation: which format, and into which folder (the current one by
default), with files named after the conversation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, Select

from .. import safe_text
from ..widgets.select import SafeSelect
from .base import Dialog

FORMAT_CHOICES = [
    ("Markdown and JSON", "md json"),
    ("Markdown (.md: to read)", "md"),
    ("JSON (.json: everything, to import again)", "json"),
]


@dataclass(frozen=True)
class ExportChoice:
    formats: tuple[str, ...]
    folder: Path


class ExportScreen(Dialog[ExportChoice | None]):
    """Tab moves between the format and the folder; Enter in the folder exports; Esc
    cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export.cancel")]

    def __init__(self, title: str, folder: Path | None = None) -> None:
        super().__init__()
        self.conversation_title = title
        self.folder = folder or Path.cwd()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                Text(
                    f"Export '{safe_text.one_line(self.conversation_title, 60)}': choose the "
                    "format, then the folder (Enter exports, Esc cancels)."
                )
            )
            yield SafeSelect(FORMAT_CHOICES, value="md json", allow_blank=False, id="export-format")
            yield Input(str(self.folder), id="export-folder")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted, "#export-folder")
    def submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip() or "."
        formats = str(self.query_one("#export-format", Select).value).split()
        self.dismiss(ExportChoice(tuple(formats), Path(text).expanduser()))

    def action_cancel(self) -> None:
        self.dismiss(None)
