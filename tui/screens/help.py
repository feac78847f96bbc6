"""The help screen: every key and every slash command."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Markdown

from .. import slash_commands


def commands_markdown() -> str:
    rows = "\n".join(
        f"| `{command.label}` | {command.help} |" for command in slash_commands.COMMANDS.values()
    )
    return "| command | what it does |\n| --- | --- |\n" + rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1", "dismiss", "Close", id="help.close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        rows = "\n".join(f"| `{key}` | {desc} |" for key, desc in self.keys)
        text = (
            "# chat-tui\n\n## Keys\n\n| key | action |\n| --- | --- |\n"
            + rows
            + "\n\n## Commands\n\n"
            + commands_markdown()
            + "\n\nStart a message with `//` to send a literal `/`.\n\n*Esc closes this help.*"
        )
        with Vertical(classes="dialog wide"):
            yield Markdown(text)
