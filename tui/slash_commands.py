"""In-chat slash commands (``/help``, ``/set temperature=0.7`` ...), parsed without
Textual so they can be tested alone.

Each command names an *action*: typing the command, picking it in the command palette
and pressing its key all run the same action method (on the chat pane, or on the
``screen`` / ``app`` namespaces), so there is no second dispatcher to keep in step.
"""

from __future__ import annotations

from dataclasses import dataclass

NO_ARGUMENT = "none"
OPTIONAL = "optional"
REQUIRED = "required"


@dataclass(frozen=True)
class SlashCommand:
    name: str
    usage: str  # how the argument is written, e.g. "key=value ..."
    help: str
    action: str  # an action on the chat pane, or "screen.X" / "app.X"
    argument: str = NO_ARGUMENT
    presets: tuple[tuple[str, str], ...] = ()  # (argument, help): more palette entries

    @property
    def label(self) -> str:
        return f"/{self.name} {self.usage}".rstrip()


COMMANDS: dict[str, SlashCommand] = {
    c.name: c
    for c in (
        SlashCommand("help", "", "show keys and commands", "app.help"),
        SlashCommand("new", "", "open a new conversation tab", "screen.new_tab"),
        SlashCommand(
            "clear", "", "start this conversation over (old messages stay in the file)", "clear"
        ),
        SlashCommand("save", "[name]", "save now, optionally under a name", "save", OPTIONAL),
        SlashCommand("rename", "TITLE", "retitle this conversation", "rename", OPTIONAL),
        SlashCommand(
            "set",
            "key=value ...",
            "change generation settings, e.g. /set temperature=0.7",
            "set_generation",
            OPTIONAL,
        ),
        SlashCommand("reset", "", "forget this conversation's generation settings", "reset"),
        SlashCommand(
            "system", "TEXT", "set the system prompt (empty to remove it)", "system", OPTIONAL
        ),
        SlashCommand(
            "model",
            "[MODEL][@PRECISION]",
            "load another model or precision: a Hub id, folder or .gguf file, @bf16, "
            "./other@8bit (no argument: the picker)",
            "screen.model",
            OPTIONAL,
        ),
        SlashCommand(
            "endpoint",
            "URL",
            "chat through an OpenAI-compatible server, e.g. /endpoint http://127.0.0.1:8000/v1",
            "screen.endpoint",
            OPTIONAL,
        ),
        SlashCommand("stats", "", "the last reply's statistics and memory use", "stats"),
        SlashCommand(
            "compare",
            "SPEC ...",
            "answer this turn again side by side, e.g. /compare @bf16, @8bit, ./other@4bit",
            "compare",
            OPTIONAL,
        ),
        SlashCommand(
            "replay", "", "make the reply again from its snapshot: identical or not", "replay"
        ),
        SlashCommand(
            "regenerate",
            "[N]",
            "replace the last reply (the old one stays reachable); N: make N at once",
            "regenerate",
            OPTIONAL,
            presets=(
                (
                    "3",
                    "three alternative replies of the last turn, made in one batch, "
                    "kept as versions",
                ),
            ),
        ),
        SlashCommand("continue", "", "continue the last (stopped) reply", "continue_reply"),
        SlashCommand(
            "copy",
            "[code|thinking]",
            "copy the last reply's answer, its last code block, or its reasoning (OSC 52)",
            "copy_reply",
            OPTIONAL,
        ),
        SlashCommand("exit", "", "quit chat-tui", "app.quit"),
    )
}
ALIASES = {"quit": "exit", "q": "exit", "h": "help", "?": "help", "retry": "regenerate"}


@dataclass(frozen=True)
class Invocation:
    command: SlashCommand
    argument: str

    @property
    def action(self) -> str:
        """The action string to run, with the argument as its parameter."""
        if self.command.argument == NO_ARGUMENT or (
            self.command.argument == OPTIONAL and not self.argument
        ):
            return self.command.action
        return f"{self.command.action}({self.argument!r})"


class UnknownCommand(ValueError):
    pass


def parse(text: str) -> Invocation | None:
    """``None`` for ordinary text; an :class:`Invocation` for ``/name args``; ``//text``
    sends ``/text`` literally."""
    stripped = text.strip()
    if not stripped.startswith("/") or stripped.startswith("//"):
        return None
    word, _, argument = stripped[1:].partition(" ")
    name = ALIASES.get(word.lower(), word.lower())
    command = COMMANDS.get(name)
    if command is None:
        raise UnknownCommand(
            f"Unknown command /{word}. Commands: " + ", ".join(f"/{c}" for c in COMMANDS) + "."
        )
    argument = argument.strip()
    if command.argument == NO_ARGUMENT and argument:
        raise UnknownCommand(f"/{command.name} takes no argument.")
    return Invocation(command, argument)


def literal(text: str) -> str:
    """The text to send for ``//...`` (an escaped leading slash)."""
    stripped = text.strip()
    return stripped[1:] if stripped.startswith("//") else text
