"""Command-palette providers: conversations, models, and the in-chat commands."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from . import chat_commands

if TYPE_CHECKING:
    from .app import ChatApp


class ConversationProvider(Provider):
    """Switch to an open tab or open a saved conversation."""

    async def search(self, query: str) -> Hits:
        app: ChatApp = self.app  # type: ignore[assignment]
        matcher = self.matcher(query)
        infos = await asyncio.to_thread(app.store.list)
        for info in infos[:500]:
            text = f"Open conversation: {info.title}"
            score = matcher.match(text)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(text),
                    partial(app.open_conversation, info.id),
                    help=f"{info.model or '-'} · {info.messages} messages · {info.updated[:16]}",
                )


class ModelProvider(Provider):
    """Load a recent or bundled model."""

    async def search(self, query: str) -> Hits:
        app: ChatApp = self.app  # type: ignore[assignment]
        matcher = self.matcher(query)
        for source in dict.fromkeys(["default", *app.config.recent_models]):
            text = f"Load model: {source}"
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(app.load_model_source, source))
        if query.strip() and ("/" in query or query.endswith(".gguf")):
            yield Hit(
                0.5, f"Load model: {query.strip()}", partial(app.load_model_source, query.strip())
            )


class ChatCommandProvider(Provider):
    """The in-chat commands (/help, /new, /clear ...)."""

    def _hits(self):
        app: ChatApp = self.app  # type: ignore[assignment]
        for name, (args, desc) in chat_commands.COMMANDS.items():
            if args and not args.startswith("["):
                continue  # needs an argument: type it in the chat instead
            yield f"/{name}", desc, partial(app.run_palette_command, name)

    async def discover(self) -> Hits:
        for text, desc, callback in self._hits():
            yield DiscoveryHit(text, callback, help=desc)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, desc, callback in self._hits():
            score = matcher.match(f"{text} {desc}")
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=desc)
