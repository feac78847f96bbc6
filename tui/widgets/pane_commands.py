"""The slash commands and keys that act on one conversation without generating:
copy, clear, save, rename, settings, system prompt, stats, the menu of a focused
message, and which message a key on the messages means. Parts of
:class:`~tui.widgets.chat_pane.ChatPane` (it mixes them in), apart so that the pane's
file holds the reply's lifecycle and little else."""

from __future__ import annotations

from .. import clipboard, safe_text
from ..engine.settings import GenerationSettings
from ..store.errors import StoreError
from .message_view import MessageView


class PaneCommands:
    """Commands of :class:`~tui.widgets.chat_pane.ChatPane` (``self`` is the pane)."""

    def action_copy_reply(self, what: str = "") -> None:
        reply = self.last_reply()
        if reply is None:
            self.notify("No reply to copy.", severity="warning")
            return
        text, label = reply.content, "the last reply"
        if what.startswith("think") or what.startswith("reason"):
            if not reply.reasoning:
                self.notify("The last reply has no reasoning.", severity="warning")
                return
            text, label = reply.reasoning, "the last reply's reasoning"
        elif what.startswith("code"):
            blocks = clipboard.code_blocks(reply.content)
            if not blocks:
                self.notify("The last reply has no code block.", severity="warning")
                return
            text, label = blocks[-1], "the last code block"
        clipboard.copy(self.app, safe_text.fix_surrogates(text))
        self.notify(f"Copied {label} ({len(text)} characters).", timeout=3)

    async def action_clear(self) -> None:
        if self.generating:
            self.stop_event.set()
        self.conversation.clear()
        self.controller.forget(self.conversation.id)
        self.save()
        await self.rebuild()
        self.notify("Cleared; earlier messages stay in the saved file.", timeout=3)

    def action_save(self, name: str = "") -> None:
        conv = self.conversation
        if name:
            conv.name = name
            conv.title = name
            self.post_message(self.TitleChanged(self))
        if not conv.messages:
            self.notify("Nothing to save yet.", severity="warning")
        elif self.save():
            self.notify(f"Saved to {self.sessions.store.path_for(conv.id)}.", timeout=4)

    def action_rename(self, title: str = "") -> None:
        if title.strip():
            self._rename(title)
            return
        from ..screens.dialogs import TextPrompt

        def done(value: str | None) -> None:
            if value and value.strip():
                self._rename(value)

        self.app.push_screen(TextPrompt("New title", self.conversation.title), done)

    def _rename(self, title: str) -> None:
        try:
            self.sessions.rename(self.conversation.id, title)  # the label follows (event)
        except StoreError as exc:
            self.notify(str(exc), title="Not renamed", severity="error", timeout=10)

    def action_set_generation(self, assignments: str = "") -> None:
        from ..engine.errors import EngineError

        settings = GenerationSettings(dict(self.conversation.settings))
        try:
            settings.update(assignments.split())
        except EngineError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        if assignments.strip():
            self.conversation.settings = settings.values
            self.conversation.touch()
            self.save()
            self.post_message(self.SettingsChanged(self))
        self.notify(f"Settings: {settings.describe()}", timeout=8)

    def action_reset(self) -> None:
        self.conversation.settings = {}
        self.conversation.touch()
        self.save()
        self.post_message(self.SettingsChanged(self))
        self.notify("Generation settings reset to the model's defaults.", timeout=4)

    def action_system(self, text: str = "") -> None:
        self.conversation.system_prompt = text
        self.conversation.touch()
        self.save()
        self.post_message(self.SettingsChanged(self))
        self.notify("System prompt set." if text else "System prompt removed.", timeout=3)

    def apply_settings(self, system_prompt: str, assignments: list[str]) -> bool:
        """From the side panel: ``name=value`` sets, ``name=`` unsets. ``False`` (and a
        notice) if a value is refused; then nothing changed."""
        from ..engine.errors import EngineError

        settings = GenerationSettings(dict(self.conversation.settings))
        try:
            for assignment in assignments:
                name, _, value = assignment.partition("=")
                if value.strip():
                    settings.set(assignment)
                else:
                    settings.unset(name)
        except EngineError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return False
        self.conversation.settings = settings.values
        self.conversation.system_prompt = system_prompt
        self.conversation.touch()
        self.save()
        return True

    def action_stats(self) -> None:
        from ..engine.memory import human_bytes, snapshot

        lines = []
        reply = self.last_reply()
        if reply is not None and reply.new_tokens:
            ttft = (
                f"{reply.time_to_first_token * 1000:.0f} ms" if reply.time_to_first_token else "n/a"
            )
            tps = f"{reply.tokens_per_second:.1f}" if reply.tokens_per_second else "n/a"
            lines.append(
                f"last reply: {reply.prompt_tokens} prompt + {reply.new_tokens} new tokens, "
                f"first token {ttft}, {tps} tok/s, stop: {reply.stop_reason}"
            )
        model = self.controller.model
        turn = self.stream.turn
        if turn is not None and turn.settings is not None:
            lines.append(f"settings: {turn.settings.describe()}")
        if model is not None:
            lines.append(
                f"model: {model.name}, {model.dtype} on {model.device}, "
                f"weights {human_bytes(model.footprint_bytes)}"
            )
            cache = self.controller.cache_bytes(self.conversation.id)
            lines.append(f"KV cache (this chat): {human_bytes(cache)}")
        snap = snapshot()
        lines.append(
            f"process RAM {human_bytes(snap.process_rss)}, "
            f"system free {human_bytes(snap.system_available)}"
        )
        # a dialog, not a toast: figures are read, and a toast is gone before that
        from ..screens.dialogs import ChoiceScreen

        stats = ChoiceScreen("Stats\n\n" + "\n".join(lines), {"close": ("enter", "Close")})
        self.app.push_screen(stats, lambda _: self.focus_prompt())

    async def act_on_message(self, event: MessageView.Act) -> None:
        """Enter on a focused message: what can be done with it, each on a key (a dialog,
        where letters type nothing)."""
        view = self._live(event.view)
        if view is None:
            return
        message = view.message
        if event.action == "compare":
            await self.action_compare(message=message)
            return
        if event.action == "replay":
            self.action_replay(message=message)
            return
        from ..screens.dialogs import ChoiceScreen

        choices: dict[str, tuple[str, str]] = {}
        if message.role == "assistant":
            choices["compare"] = ("c", "Compare this turn with another precision or model")
            choices["replay"] = ("p", "Replay it from its snapshot")
        if message.role == "user":
            choices["edit"] = ("e", "Edit this question (sending it makes a new version)")
        choices["copy"] = ("y", "Copy this message")
        block = view.thought
        if block is not None and block.display:  # one line: the menu fits 80x24
            choices["thought"] = ("t", f"{'Fold' if block.expanded else 'Unfold'} its reasoning")
        choices["back"] = ("escape", "Back")
        preview = safe_text.one_line(message.content, 60)
        message_id = message.id

        async def answered(answer: str | None) -> None:
            current = self.conversation.get(message_id)
            if current is None or current not in self.conversation.transcript:
                self.focus_prompt()  # the message left the view meanwhile
                return
            if answer == "compare":
                await self.action_compare(message=current)
            elif answer == "replay":
                self.action_replay(message=current)
            elif answer == "edit":
                self.edit_target = current
                self.prompt.load_text(current.content)
                self.focus_prompt()
            elif answer == "copy":
                clipboard.copy(self.app, safe_text.fix_surrogates(current.content))
                self.notify(f"Copied the message ({len(current.content)} characters).")
                self.focus_prompt()
            elif answer == "thought":
                shown = self._live(view)
                if shown is not None:
                    shown.toggle_thought()
                self.focus_prompt()
            else:
                self.focus_prompt()

        self.app.push_screen(ChoiceScreen(f"{preview}", choices), answered)


class MessageKeys:
    """Messages by keyboard, for :class:`~tui.widgets.chat_pane.ChatPane`."""

    def _live(self, view: MessageView) -> MessageView | None:
        """The view a key on ``view`` means now. Keys can be queued faster than the pane
        rebuilds: a second → was sent by a view the first one's rebuild replaced. Then
        the key means the view now showing the same turn (the version that took its
        place), so a held arrow steps through every version; without one, nothing."""
        transcript = self.conversation.transcript
        if view.is_attached and view.parent is self.messages_view and view.message in transcript:
            return view
        turn = (view.message.parent, view.message.role)
        for current in self._views_now():
            if (current.message.parent, current.message.role) == turn:
                return current if current.message in transcript else None
        return None

    def _views_now(self) -> list[MessageView]:
        return [v for v in self.query(MessageView) if v.parent is self.messages_view]

    def focus_message(self, view: MessageView) -> None:
        """Give ``view`` the focus (messages take it only when asked)."""
        view.can_focus = True
        view.focus()
        view.scroll_visible(animate=False)

    def action_focus_messages(self) -> None:
        """ctrl+↑ / alt+↑: the last message takes the focus (↑ goes further up)."""
        views = [v for v in self._views_now() if not v.streaming] or self._views_now()
        if views:
            self.focus_message(views[-1])
