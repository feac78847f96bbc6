"""Command-palette providers (ctrl+p): conversations, models, and the slash commands.

Each hit runs the same code path as the key or slash command it stands for: a
slash command's hit runs its action on the active chat pane.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Protocol

from textual import work
from textual.command import CommandPalette, DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.css.query import NoMatches
from textual.css.styles import RenderStyles, Styles
from textual.fuzzy import Matcher

from . import safe_text, slash_commands
from .screens.base import DismissedOnce

if TYPE_CHECKING:
    from textual.app import App

    from .state import AppState
    from .store.sessions import Sessions


class SafeCommandPalette(DismissedOnce, CommandPalette):
    """Textual's command palette, for keys faster than it: a page key before its list
    is laid out, or a search still running when Esc has closed it, raise inside
    Textual (KeyError, NoMatches) and would end the app, and a second Enter would
    close the screen beneath. Here they do nothing."""

    @work(exclusive=True, group=CommandPalette._GATHER_COMMANDS_GROUP)
    async def _gather_commands(self, search_value: str) -> None:
        try:
            await CommandPalette._gather_commands.__wrapped__(self, search_value)  # type: ignore[attr-defined]
        except NoMatches:
            pass  # closed before its list was there: nothing to show

    def get_component_styles(self, *names: str) -> RenderStyles:
        """A hit's help text is styled from the palette's CSS, which a search started by
        keys faster than the palette's mount (or still running once Esc closed it)
        finds missing: such hits are drawn unstyled, not a KeyError that ends the app."""
        try:
            return super().get_component_styles(*names)
        except KeyError:
            if not set(names) <= self.COMPONENT_CLASSES:
                raise  # a name Textual does not know: a real bug
            return RenderStyles(self, Styles(), Styles())

    def _action_command_list(self, action: str) -> None:
        try:
            super()._action_command_list(action)
        except (KeyError, IndexError, NoMatches):
            pass  # a list not laid out yet (or already gone): the key does nothing


def plain(text: str) -> Content:
    """Text for a hit, never read as markup: Textual reads a hit's text and help given
    as strings as markup, and a title, a model name from a file or a typed query can
    hold anything (``[b x=20`` ended the app with a MarkupError)."""
    return Content(safe_text.one_line(text))


def highlight(matcher: Matcher, text: str) -> Content:
    """``matcher.highlight`` without reading ``text`` as markup (Textual's does: a
    conversation titled ``[x=1=2]`` was never found, its search raising)."""
    content = plain(text)
    score, offsets = matcher.fuzzy_search.match(matcher.query, content.plain)
    for offset in offsets if score else ():
        if not content.plain[offset].isspace():
            content = content.stylize(matcher._match_style, offset, offset + 1)
    return content


class PaletteHost(Protocol):
    """What the providers need from the screen that opened the palette."""

    sessions: Sessions
    state: AppState

    async def open_conversation(self, conv_id: str) -> None: ...

    def load_source(self, source: str) -> None: ...

    async def run_on_pane(self, action: str) -> None: ...


class ConversationProvider(Provider):
    """Switch to an open tab or open a saved conversation."""

    async def search(self, query: str) -> Hits:
        screen: PaletteHost = self.screen  # type: ignore[assignment]
        matcher = self.matcher(query)
        infos = await asyncio.to_thread(screen.sessions.store.list)
        for info in infos[:500]:
            text = f"Open conversation: {safe_text.one_line(info.title, 80)}"
            score = matcher.match(text)
            if score > 0:
                yield Hit(
                    score,
                    highlight(matcher, text),
                    partial(screen.open_conversation, info.id),
                    help=plain(
                        f"{info.model or '-'} · {info.messages} messages · {info.updated[:16]}"
                    ),
                )


class ModelProvider(Provider):
    """Load a recent or bundled model."""

    async def search(self, query: str) -> Hits:
        screen: PaletteHost = self.screen  # type: ignore[assignment]
        matcher = self.matcher(query)
        for source in dict.fromkeys(["default", *screen.state.recent_models]):
            text = f"Load model: {safe_text.one_line(source)}"
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, highlight(matcher, text), partial(screen.load_source, source))
        typed = query.strip()
        if typed and ("/" in typed or typed.endswith(".gguf")):
            yield Hit(0.5, plain(f"Load model: {typed}"), partial(screen.load_source, typed))


class SlashCommandProvider(Provider):
    """The slash commands that need no argument, run on the active conversation."""

    def _hits(self):
        screen: PaletteHost = self.screen  # type: ignore[assignment]
        for command in slash_commands.COMMANDS.values():
            if command.argument == slash_commands.REQUIRED:
                continue  # needs an argument: type it in the chat instead
            invocation = slash_commands.Invocation(command, "")
            yield command.label, command.help, partial(screen.run_on_pane, invocation.action)
            for argument, help_text in command.presets:
                preset = slash_commands.Invocation(command, argument)
                label = f"/{command.name} {argument}"
                yield label, help_text, partial(screen.run_on_pane, preset.action)

    async def discover(self) -> Hits:
        for text, help_text, callback in self._hits():
            yield DiscoveryHit(plain(text), callback, help=plain(help_text))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, help_text, callback in self._hits():
            score = matcher.match(f"{text} {help_text}")
            if score > 0:
                yield Hit(score, highlight(matcher, text), callback, help=plain(help_text))


def search_commands(app: App, commands, placeholder: str):
    """``App.search_commands`` on the safe palette."""
    from textual.command import SimpleProvider

    return app.push_screen(
        SafeCommandPalette(
            providers=[SimpleProvider(app.screen, commands)], placeholder=placeholder
        )
    )


def search_themes(app: App) -> None:
    """``App.search_themes`` on the safe palette."""
    from textual.theme import ThemeProvider

    app.push_screen(SafeCommandPalette(providers=[ThemeProvider], placeholder="Search for themes…"))
