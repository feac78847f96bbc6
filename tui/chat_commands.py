"""In-chat slash commands, parsed without Textual so they can be tested alone."""

from __future__ import annotations

from dataclasses import dataclass

COMMANDS: dict[str, tuple[str, str]] = {
    "help": ("", "show commands and keys"),
    "new": ("", "open a new conversation tab"),
    "clear": ("", "start this conversation over (old messages stay in the file)"),
    "save": ("[name]", "save now, optionally under a name"),
    "set": ("key=value ...", "change generation settings, e.g. /set temperature=0.7"),
    "reset": ("", "forget this conversation's generation settings"),
    "system": ("TEXT", "set the system prompt (empty to remove it)"),
    "model": ("ID", "load another model (Hub id, folder or .gguf file)"),
    "stats": ("", "show the last reply's statistics and memory use"),
    "regenerate": ("", "replace the last reply (the old one stays reachable)"),
    "continue": ("", "continue the last (stopped) reply"),
    "copy": ("[code]", "copy the last reply, or its last code block (OSC 52)"),
    "exit": ("", "quit chat-tui"),
}
ALIASES = {"quit": "exit", "q": "exit", "h": "help", "?": "help", "retry": "regenerate"}


@dataclass(frozen=True)
class ChatCommand:
    name: str
    argument: str


class UnknownCommand(ValueError):
    pass


def parse(text: str) -> ChatCommand | None:
    """``None`` for ordinary text; a command for ``/name args``; ``//text`` sends
    ``/text`` literally."""
    stripped = text.strip()
    if not stripped.startswith("/") or stripped.startswith("//"):
        return None
    word, _, argument = stripped[1:].partition(" ")
    name = ALIASES.get(word.lower(), word.lower())
    if name not in COMMANDS:
        raise UnknownCommand(
            f"Unknown command /{word}. Commands: " + ", ".join(f"/{c}" for c in COMMANDS) + "."
        )
    return ChatCommand(name, argument.strip())


def literal(text: str) -> str:
    """The text to send for ``//...`` (an escaped leading slash)."""
    stripped = text.strip()
    return stripped[1:] if stripped.startswith("//") else text


def help_markdown() -> str:
    rows = "\n".join(
        f"| `/{name} {args}`".rstrip() + f" | {desc} |" for name, (args, desc) in COMMANDS.items()
    )
    return "| command | what it does |\n| --- | --- |\n" + rows
