"""The help screen (f1, or ``?`` on an empty prompt): every key, as the live keymap has
it (a remapped key shows its new keys), every slash command, and how to move around.

It scrolls: ↓/↑, PgDn/PgUp, Home/End, Tab and the mouse wheel all move through it, so
nothing is out of reach at 80x24.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Label, Markdown

from .. import slash_commands
from .base import Dialog


@dataclass(frozen=True)
class KeyHelp:
    keys: str
    what: str


def keys_for(keymap: Mapping[str, str], app_bindings: Iterable[object]) -> list[KeyHelp]:
    """Every described binding of the main screen, a tab, a message and the app, as the
    live keymap has it: a remapped binding shows its new keys."""
    from ..keys import MAIN_BINDINGS
    from ..widgets.chat_pane import ChatPane
    from ..widgets.message_view import MessageView

    keys: list[KeyHelp] = []
    for bindings in (MAIN_BINDINGS, ChatPane.BINDINGS, MessageView.BINDINGS, app_bindings):
        for binding in bindings:
            if isinstance(binding, Binding) and binding.description:
                shown = keymap.get(binding.id, binding.key) if binding.id else binding.key
                keys.append(
                    KeyHelp(shown.replace(",", " / "), binding.tooltip or binding.description)
                )
    return keys


EXTRA_KEYS = [
    KeyHelp("enter", "send (a message starting with `//` sends a literal `/`)"),
    KeyHelp("ctrl+j / shift+enter", "new line in the prompt"),
    KeyHelp("up / down", "recall earlier prompts (at the first / last line of the prompt)"),
    KeyHelp("?", "this help (on an empty prompt)"),
    KeyHelp("ctrl+p", "command palette: conversations, models, commands, themes"),
    KeyHelp("tab / shift+tab", "prompt, tabs and side panel (messages are not in the way)"),
    KeyHelp("↑ / ↓ on a message", "the message before / after; Esc or typing: back to the prompt"),
    KeyHelp("pageup / pagedown / home / end", "scroll the messages (once one has focus)"),
    KeyHelp("← / → on a message", "its other versions (marked ‹2/3›)"),
    KeyHelp("c on a reply", "compare its turn with another precision or model (`/compare`)"),
    KeyHelp("p on a reply", "replay it from its snapshot: identical, or where it differs"),
]


def commands_markdown() -> str:
    rows = "\n".join(
        f"| `{command.label}` | {command.help} |" for command in slash_commands.COMMANDS.values()
    )
    return "| command | what it does |\n| --- | --- |\n" + rows


def help_markdown(keys: list[KeyHelp]) -> str:
    rows = "\n".join(f"| `{k.keys}` | {k.what} |" for k in [*keys, *EXTRA_KEYS])
    return (
        "## Keys\n\n| key | action |\n| --- | --- |\n"
        + rows
        + "\n\n## Commands\n\nType them in the prompt; most are in the palette too.\n\n"
        + commands_markdown()
        + "\n\n## Versions\n\nRegenerating a reply (ctrl+r) or editing a question (ctrl+e, "
        "then Enter) keeps the old one: the conversation is a tree. A message with other "
        "versions shows `‹2/3›`; focus it (ctrl+↑, then ↑/↓) and press ←/→, or press ctrl+t to "
        "step through every complete version.\n"
        "\n## Comparing\n\n`/compare @bf16` (or `c` on a focused reply) answers the turn "
        "again with another precision or model, greedy for a fair comparison "
        "(`settings=turn` keeps the turn's own settings and seed), and shows both replies "
        "side by side with their memory, speed and agreement. Both are kept as versions "
        "of the turn, labelled with their spec; the loaded model stays loaded. Specs: "
        "`@fp32` `@bf16` `@fp16` `@8bit` `@4bit` `@4bit-fp4`, after a model "
        "(`./other@bf16`), or `@same-no-draft` to measure speculative decoding.\n"
    )


class HelpScreen(Dialog[None]):
    BINDINGS = [Binding("escape,q,f1", "dismiss", "Close", id="help.close")]

    def __init__(self, keys: list[KeyHelp]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide help"):
            yield Label("chat-tui help · ↓ PgDn scroll · Esc closes", classes="help-title")
            with VerticalScroll(id="help-body", can_focus=True):
                yield Markdown(help_markdown(self.keys))

    def on_mount(self) -> None:
        body = self.query("#help-body")
        if body:  # none if a key in the same burst already closed it
            body.first().focus()
