"""The Textual app: tabs of conversations, the side panel, the memory meter, keys.

Thin by design: widgets own their behaviour (``widgets/``), modals live in
``screens/``, and everything under the UI comes from ``engine/`` and ``store/``.
torch and transformers are imported by the load worker, after the window paints.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.markup import escape
from textual.widgets import Footer, Header, ProgressBar, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

import themes

from . import chat_commands
from .commands import ChatCommandProvider, ConversationProvider, ModelProvider
from .config import AppConfig
from .engine.spec import ModelSpec
from .messages import LoadProgress, MemorySample, ModelLoaded, ModelLoadFailed
from .screens.modals import HelpScreen, ModelPicker, SessionBrowser
from .store import Conversation, SessionStore, StaleWriteError, StoreError
from .widgets.chat_pane import ChatPane
from .widgets.memory_meter import MemoryMeter
from .widgets.settings_panel import SettingsPanel


class ChatApp(App):
    TITLE = "chat-tui"
    # the screen gets -narrow / -wide classes; app.tcss adapts the side panel
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-normal"), (160, "-wide")]
    CSS_PATH = [Path(__file__).with_name("app.tcss"), *themes.stylesheets()]
    COMMANDS = App.COMMANDS | {ConversationProvider, ModelProvider, ChatCommandProvider}
    # App keys win over the prompt's own (TextArea uses ctrl+w, ctrl+e, ctrl+y for
    # editing), so they are priority bindings, switched off while a dialog is open.
    BINDINGS = [
        Binding("ctrl+n", "new_tab", "New", id="new_tab", priority=True),
        Binding("ctrl+w", "close_tab", "Close", id="close_tab", priority=True),
        Binding(
            "ctrl+pagedown,alt+right",
            "next_tab",
            "Next tab",
            show=False,
            id="next_tab",
            priority=True,
        ),
        Binding(
            "ctrl+pageup,alt+left",
            "previous_tab",
            "Prev tab",
            show=False,
            id="previous_tab",
            priority=True,
        ),
        Binding("escape", "stop", "Stop", id="stop"),
        Binding("ctrl+o", "browse", "Sessions", id="browse", priority=True),
        Binding("ctrl+l", "pick_model", "Model", id="pick_model", priority=True),
        Binding("ctrl+b", "toggle_sidebar", "Panel", id="toggle_sidebar", priority=True),
        Binding("ctrl+r", "regenerate", "Regenerate", show=False, id="regenerate", priority=True),
        Binding("ctrl+e", "edit_previous", "Edit", show=False, id="edit_previous", priority=True),
        Binding("ctrl+y", "copy_reply", "Copy", show=False, id="copy_reply", priority=True),
        Binding("ctrl+t", "cycle_branch", "Versions", show=False, id="cycle_branch", priority=True),
        Binding("f1", "help", "Help", id="help"),
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
    ]
    DIALOG_SAFE = {"quit", "help", "stop", "command_palette"}

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While a dialog (picker, browser, help) is open, only quit reaches the app."""
        from textual.screen import ModalScreen

        return not (isinstance(self.screen, ModalScreen) and action not in self.DIALOG_SAFE)

    def __init__(
        self,
        spec: ModelSpec | None = None,
        settings_args: list[str] | None = None,
        system_prompt: str | None = None,
        data_dir: str | None = None,
        engine: Any = None,
        load_on_start: bool = True,
        prompt_lookup: int | None = None,
        assistant_model: str | None = None,
        endpoint: Any = None,
    ) -> None:
        super().__init__()
        self.config = AppConfig.load()
        self.spec = spec or remembered_spec(self.config, ModelSpec())
        self.settings_args = list(settings_args or [])
        self.system_prompt = system_prompt
        self.store = SessionStore(data_dir)
        self.engine = engine
        self.local_engine = engine
        self.endpoint = endpoint  # engine.remote.Endpoint to start with, if any
        self.load_on_start = load_on_start
        self.prompt_lookup = prompt_lookup
        self.assistant_model = assistant_model
        self.model_ready = threading.Event()
        if engine is not None and getattr(engine, "loaded", None) is not None:
            self.model_ready.set()
        self.load_status = "starting…"
        self._tab_counter = 0

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="main"):
            with Vertical(id="chat-area"):
                yield ProgressBar(total=1.0, show_eta=False, id="load-progress")
                yield TabbedContent(id="tabs")
            with Vertical(id="sidebar"):
                yield SettingsPanel(self.spec, id="settings")
                yield MemoryMeter(id="memory")
        yield Footer()

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(themes.VARIABLE_DEFAULTS)

    async def on_mount(self) -> None:
        for theme in themes.THEMES.values():
            self.register_theme(theme)
        if self.config.theme in self.available_themes:
            self.theme = self.config.theme
        else:
            self.notify(
                f"Unknown theme {self.config.theme!r}; using {themes.DEFAULT_THEME}.",
                severity="warning",
            )
            self.theme = themes.DEFAULT_THEME
        if self.config.problem:
            self.notify(self.config.problem, severity="warning", timeout=10)
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
        self.main_screen.query_one("#sidebar").display = self.config.show_sidebar
        await self.restore_tabs()
        self._install_signal_handlers()
        self.set_interval(1.0, self.sample_memory)
        if self.engine is None:
            from .engine import Engine, GenerationSettings

            settings = GenerationSettings()
            try:
                settings.update(self.settings_args)
            except Exception as exc:
                self.notify(str(exc), severity="error", timeout=10)
            self.engine = Engine(settings=settings, prompt_lookup=self.prompt_lookup)
            self.local_engine = self.engine
        if self.endpoint is not None:
            self.use_endpoint(self.endpoint, self.spec.source)
        elif self.load_on_start and not self.model_ready.is_set():
            self.load_model(self.spec)
        else:
            self.main_screen.query_one("#load-progress").display = False

    def watch_theme(self, theme: str) -> None:
        for name in themes.THEMES:
            self.set_class(name == theme, f"theme-{name}")
        if self.is_mounted and theme != self.config.theme:
            self.config.theme = theme
            self._save_config()

    # -- tabs ------------------------------------------------------------------------------
    @property
    def main_screen(self) -> Any:
        """The screen with the tabs, even while a dialog is on top (App.query_one would
        search the dialog)."""
        return self.screen_stack[0] if self.screen_stack else self.screen

    @property
    def tabs(self) -> TabbedContent:
        return self.main_screen.query_one("#tabs", TabbedContent)

    def panes(self) -> list[ChatPane]:
        return list(self.main_screen.query(ChatPane))

    @property
    def active_pane(self) -> ChatPane | None:
        pane = self.tabs.active_pane
        if pane is None:
            return None
        found = pane.query(ChatPane)
        return found.first() if found else None

    async def restore_tabs(self) -> None:
        opened = 0
        for conv_id in self.config.open_tabs:
            try:
                conv = self.store.load(conv_id)
            except StoreError as exc:
                self.notify(str(exc), severity="warning", timeout=10)
                continue
            await self.add_tab(conv, save_config=False)
            opened += 1
        if not opened:
            await self.add_tab(self.new_conversation(), save_config=False)
        self._remember_tabs()

    def new_conversation(self) -> Conversation:
        return self.store.new(
            model=self.spec.to_dict(),
            system_prompt=self.system_prompt or "",
        )

    async def add_tab(self, conv: Conversation, save_config: bool = True) -> ChatPane:
        self._tab_counter += 1
        pane_id = f"tab-{self._tab_counter}"
        pane = ChatPane(conv, id=f"chat-{self._tab_counter}")
        await self.tabs.add_pane(TabPane(escape(self._tab_title(conv)), pane, id=pane_id))
        self.tabs.active = pane_id
        pane.focus_prompt()
        self._show_conversation_settings(pane)
        if save_config:
            self._remember_tabs()
        return pane

    @staticmethod
    def _tab_title(conv: Conversation) -> str:
        title = conv.title if conv.title != "New conversation" else "new"
        return title[:24] + ("…" if len(title) > 24 else "")

    def refresh_tab_title(self, pane: ChatPane) -> None:
        tab_pane = pane.parent
        if isinstance(tab_pane, TabPane) and tab_pane.id:
            self.tabs.get_tab(tab_pane.id).label = escape(self._tab_title(pane.conversation))
        self._remember_tabs()

    def _remember_tabs(self) -> None:
        self.config.open_tabs = [
            p.conversation.id
            for p in self.panes()
            if self.store.path_for(p.conversation.id).exists()
        ]
        self._save_config()

    def _save_config(self) -> None:
        try:
            self.config.save()
        except OSError as exc:
            self.notify(f"Could not save settings: {exc}", severity="warning")

    async def open_conversation(self, conv_id: str) -> None:
        for pane in self.panes():
            if pane.conversation.id == conv_id:
                self.tabs.active = pane.parent.id
                pane.focus_prompt()
                return
        try:
            conv = self.store.load(conv_id)
        except StoreError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        await self.add_tab(conv)

    async def action_new_tab(self) -> None:
        await self.add_tab(self.new_conversation())

    async def action_close_tab(self) -> None:
        pane = self.active_pane
        if pane is None:
            return
        pane.stop()
        if pane.conversation.messages:
            pane.save()
        if self.engine is not None:
            self.engine.forget(pane.conversation.id)
        await self.tabs.remove_pane(pane.parent.id)
        if not self.panes():
            await self.add_tab(self.new_conversation())
        self._remember_tabs()

    def _cycle(self, step: int) -> None:
        panes = [p.parent.id for p in self.panes()]
        if len(panes) < 2:
            return
        index = panes.index(self.tabs.active) if self.tabs.active in panes else 0
        self.tabs.active = panes[(index + step) % len(panes)]

    def action_next_tab(self) -> None:
        self._cycle(1)

    def action_previous_tab(self) -> None:
        self._cycle(-1)

    @on(TabbedContent.TabActivated)
    def tab_activated(self) -> None:
        pane = self.active_pane
        if pane is not None:
            pane.focus_prompt()
            pane.update_status()
            self._show_conversation_settings(pane)
            self.sample_memory()

    def _show_conversation_settings(self, pane: ChatPane) -> None:
        panel = self.main_screen.query_one(SettingsPanel)
        if panel.is_mounted:
            panel.show_conversation(pane.conversation.system_prompt, pane.conversation.settings)

    # -- saving ------------------------------------------------------------------------------
    def save_conversation(self, conv: Conversation) -> bool:
        if not conv.messages:
            return True  # nothing worth a file yet
        try:
            self.store.save(conv)
            return True
        except StaleWriteError as exc:
            self.notify(str(exc), title="Not saved", severity="error", timeout=15)
        except (StoreError, OSError) as exc:
            self.notify(f"Could not save: {exc}", title="Not saved", severity="error", timeout=15)
        return False

    # -- model loading ------------------------------------------------------------------------
    def load_model_source(self, source: str) -> None:
        """Load ``source``: ``server:NAME`` picks a model on the current endpoint; anything
        else is a local model (switching back from an endpoint if need be)."""
        if source.startswith(ModelPicker.SERVER_PREFIX):
            if getattr(self.engine, "remote", False):
                name = source[len(ModelPicker.SERVER_PREFIX) :]
                self.load_model(ModelSpec(source=name), self.engine)
            return
        local_spec = (
            self.local_engine.loaded.spec
            if self.local_engine and self.local_engine.loaded
            else self.spec
        )
        if getattr(self.engine, "remote", False):
            self.use_local(local_spec.with_changes(source=source))
        else:
            self.load_model(local_spec.with_changes(source=source))

    def use_endpoint(self, endpoint: Any, model: str = "default") -> None:
        """Switch to an OpenAI-compatible server (the local model stays loaded)."""
        from .engine.remote import Endpoint, RemoteEngine, RemoteError

        try:
            if not isinstance(endpoint, Endpoint):
                endpoint = Endpoint(str(endpoint), api_key_env=self.config.api_key_env)
        except RemoteError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        for warning in endpoint.warnings:
            self.notify(warning, severity="warning", timeout=10)
        remote = RemoteEngine(endpoint, settings=getattr(self.local_engine, "settings", None))
        self.load_model(ModelSpec(source=model or "default"), remote)

    def use_local(self, spec: ModelSpec) -> None:
        """Back to the local model: reuse it if it is the one asked for."""
        local = self.local_engine
        if local is not None and local.loaded is not None and local.loaded.spec == spec:
            self.post_message(ModelLoaded(local.loaded, local))
        else:
            self.load_model(spec, local)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load_model(self, spec: ModelSpec, engine: Any = None) -> None:
        from .engine.errors import EngineError

        target = engine or self.engine
        self.post_message(LoadProgress(0.0, f"loading {spec.display_name}"))
        try:
            loaded = target.load(spec, lambda f, s: self.post_message(LoadProgress(f, s)))
            if self.assistant_model and not getattr(target, "remote", False):
                target.load_assistant(spec.with_changes(source=self.assistant_model))
        except EngineError as exc:
            self.post_message(ModelLoadFailed(str(exc), spec))
            return
        self.post_message(ModelLoaded(loaded, target))

    def on_load_progress(self, message: LoadProgress) -> None:
        bar = self.main_screen.query_one("#load-progress", ProgressBar)
        bar.display = True
        bar.update(progress=message.fraction)
        self.load_status = f"{message.stage} ({message.fraction * 100:.0f}%)"
        for pane in self.panes():
            pane.update_status()

    def on_model_loaded(self, message: ModelLoaded) -> None:
        loaded = message.loaded
        if message.engine is not None:
            self.engine = message.engine
        remote = getattr(self.engine, "remote", False)
        self.main_screen.query_one(MemoryMeter).remote = remote
        self.spec = loaded.spec
        self.model_ready.set()
        self.main_screen.query_one("#load-progress").display = False
        self.load_status = ""
        model = loaded.spec.to_dict()
        if remote:
            model["endpoint"] = self.engine.endpoint.url  # the URL only, never the key
            self.config.endpoint = self.engine.endpoint.url
        else:
            self.config.remember_model(loaded.spec.source)
            self.config.model = loaded.spec.to_dict()
        self._save_config()
        self.main_screen.query_one(SettingsPanel).show_spec(
            loaded.spec, self.engine.endpoint.url if remote else None
        )
        for pane in self.panes():
            pane.conversation.model = dict(model)
            pane.update_status()
        self.sub_title = (
            f"{loaded.name} · {loaded.spec.precision_label}/{loaded.dtype} · {loaded.device}"
        )
        if remote:
            self.notify(f"Chatting through {loaded.device} with {loaded.name}.", timeout=4)
        else:
            self.notify(f"Loaded {loaded.name} in {loaded.load_seconds:.1f} s.", timeout=4)
        self.sample_memory()

    def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        self.main_screen.query_one("#load-progress").display = False
        previous = self.engine.loaded if self.engine else None
        if previous is not None:
            self.model_ready.set()
            self.load_status = ""
            remote = getattr(self.engine, "remote", False)
            self.main_screen.query_one(SettingsPanel).show_spec(
                previous.spec, self.engine.endpoint.url if remote else None
            )
            tail = f" Still using {previous.name}."
        else:
            self.load_status = "no model loaded (ctrl+l picks one)"
            tail = " Pick another model with ctrl+l."
        self.notify(message.error + tail, title="Model not loaded", severity="error", timeout=20)
        for pane in self.panes():
            pane.update_status()

    async def action_pick_model(self) -> None:
        current = self.engine.loaded.spec.source if self.engine and self.engine.loaded else None
        endpoint = self.engine.endpoint if getattr(self.engine, "remote", False) else None
        if endpoint is not None and current:
            current = ModelPicker.SERVER_PREFIX + current

        def chosen(source: str | None) -> None:
            if source:
                self.load_model_source(source)

        self.push_screen(ModelPicker(self.config.recent_models, current, endpoint), chosen)

    @on(SettingsPanel.Applied)
    async def settings_applied(self, message: SettingsPanel.Applied) -> None:
        from .engine.errors import EngineError
        from .engine.settings import GenerationSettings

        pane = self.active_pane
        if pane is not None:
            conv = pane.conversation
            settings = GenerationSettings(dict(conv.settings))
            try:
                for assignment in message.settings:
                    name, _, value = assignment.partition("=")
                    if value.strip():
                        settings.set(assignment)
                    else:
                        settings.unset(name)
            except EngineError as exc:
                self.notify(str(exc), severity="error", timeout=10)
                return
            conv.settings = settings.values
            conv.system_prompt = message.system_prompt
            conv.touch()
            pane.save()
        remote = getattr(self.engine, "remote", False)
        if message.backend == "endpoint":
            url = message.endpoint.strip()
            if not url:
                self.notify(
                    "Type the server's URL, e.g. http://127.0.0.1:8000/v1.", severity="error"
                )
                return
            same = remote and self.engine.endpoint.url.rstrip("/").startswith(url.rstrip("/"))
            if same and self.engine.loaded and message.spec.source == self.engine.loaded.name:
                self.notify("Settings applied.", timeout=3)
            else:
                self.use_endpoint(url, message.spec.source)
            return
        current = (
            self.local_engine.loaded.spec
            if self.local_engine and self.local_engine.loaded
            else None
        )
        if remote or current is None or message.spec != current:
            self.use_local(message.spec)
        else:
            self.notify("Settings applied.", timeout=3)

    # -- memory -----------------------------------------------------------------------------
    def sample_memory(self) -> None:
        pane = self.active_pane
        self._sample_memory(pane.conversation.id if pane else None)

    @work(thread=True, exclusive=True, group="memory", exit_on_error=False)
    def _sample_memory(self, conv_id: str | None) -> None:
        from .engine import memory

        engine = self.engine
        loaded = engine.loaded if engine else None
        weights = loaded.footprint_bytes if loaded else 0
        cache = engine.cache_bytes(conv_id) if engine and conv_id else 0
        self.post_message(MemorySample(memory.snapshot(), weights, cache))

    def on_memory_sample(self, message: MemorySample) -> None:
        try:
            self.screen_stack[0].query_one(MemoryMeter).show(message)
        except (NoMatches, IndexError):
            pass  # closing down

    # -- actions -----------------------------------------------------------------------------
    def action_stop(self) -> None:
        pane = self.active_pane
        if pane is not None and pane.stop():
            self.notify("Stopping; the partial reply is kept.", timeout=2)

    def action_toggle_sidebar(self) -> None:
        sidebar = self.main_screen.query_one("#sidebar")
        sidebar.display = not sidebar.display
        self.config.show_sidebar = bool(sidebar.display)
        self._save_config()

    async def action_regenerate(self) -> None:
        if self.active_pane:
            await self.active_pane.regenerate()

    def action_edit_previous(self) -> None:
        if self.active_pane:
            self.active_pane.edit_previous()

    async def action_cycle_branch(self) -> None:
        if self.active_pane:
            await self.active_pane.cycle_branch()

    def action_copy_reply(self) -> None:
        pane = self.active_pane
        reply = pane.last_reply() if pane else None
        if reply is None:
            self.notify("No reply to copy.", severity="warning")
            return
        self.copy_text(reply.content, "the last reply")

    def copy_text(self, text: str, what: str) -> None:
        """OSC 52 copy: works over SSH; inside tmux it is also wrapped in tmux's
        passthrough so it reaches the outer terminal."""
        self.copy_to_clipboard(text)
        if os.environ.get("TMUX") and self._driver is not None:
            import base64

            payload = base64.b64encode(text.encode("utf-8")).decode("ascii")
            self._driver.write(f"\x1bPtmux;\x1b\x1b]52;c;{payload}\x07\x1b\\")
        self.notify(f"Copied {what} ({len(text)} characters).", timeout=3)

    def action_browse(self) -> None:
        browser = SessionBrowser(self.store)

        def chosen(conv_id: str | None) -> None:
            # tabs of deleted conversations close once the dialog is gone (removing a
            # tab under an open dialog would move focus behind it)
            for deleted in browser.deleted:
                self.call_later(self.close_deleted, deleted)
            if conv_id and conv_id not in browser.deleted:
                self.call_later(self.open_conversation, conv_id)

        self.push_screen(browser, chosen)

    async def close_deleted(self, conv_id: str) -> None:
        for pane in self.panes():
            if pane.conversation.id == conv_id:
                pane.conversation.messages.clear()  # do not save it back
                await self.tabs.remove_pane(pane.parent.id)
        if not self.panes():
            await self.add_tab(self.new_conversation())
        self._remember_tabs()

    def action_help(self) -> None:
        keys = [
            (b.key, b.description)
            for b in self.BINDINGS
            if isinstance(b, Binding) and b.description
        ]
        keys += [
            ("enter", "send"),
            ("ctrl+j", "new line in the prompt"),
            ("up / down", "recall earlier prompts"),
            ("ctrl+p", "command palette"),
        ]
        self.push_screen(HelpScreen(keys))

    # -- in-chat commands --------------------------------------------------------------------
    async def run_palette_command(self, name: str) -> None:
        pane = self.active_pane
        if pane is not None:
            await self.run_chat_command(pane, chat_commands.ChatCommand(name, ""))

    async def run_chat_command(self, pane: ChatPane, command: chat_commands.ChatCommand) -> None:
        from .engine.errors import EngineError
        from .engine.settings import GenerationSettings

        name, arg = command.name, command.argument
        conv = pane.conversation
        if name == "help":
            self.action_help()
        elif name == "new":
            await self.action_new_tab()
        elif name == "exit":
            await self.action_quit()
        elif name == "clear":
            if pane.generating:
                pane.stop()
            conv.clear()
            if self.engine:
                self.engine.forget(conv.id)
            pane.save()
            await pane.rebuild()
            self.notify("Cleared; earlier messages stay in the saved file.", timeout=3)
        elif name == "save":
            if arg:
                conv.name = arg
                conv.title = arg
            if not conv.messages:
                self.notify("Nothing to save yet.", severity="warning")
            elif pane.save():
                self.refresh_tab_title(pane)
                self.notify(f"Saved to {self.store.path_for(conv.id)}.", timeout=4)
        elif name == "set":
            settings = GenerationSettings(dict(conv.settings))
            try:
                settings.update(arg.split())
            except EngineError as exc:
                self.notify(str(exc), severity="error", timeout=10)
                return
            if not arg.strip():
                self.notify(f"Settings: {settings.describe()}", timeout=8)
                return
            conv.settings = settings.values
            pane.save()
            self._show_conversation_settings(pane)
            self.notify(f"Settings: {settings.describe()}", timeout=5)
        elif name == "reset":
            conv.settings = {}
            pane.save()
            self._show_conversation_settings(pane)
            self.notify("Generation settings reset to the model's defaults.", timeout=4)
        elif name == "system":
            conv.system_prompt = arg
            conv.touch()
            pane.save()
            self._show_conversation_settings(pane)
            self.notify("System prompt set." if arg else "System prompt removed.", timeout=3)
        elif name == "model":
            if arg:
                self.load_model_source(arg)
            else:
                await self.action_pick_model()
        elif name == "stats":
            self.show_stats(pane)
        elif name == "regenerate":
            await pane.regenerate()
        elif name == "copy":
            reply = pane.last_reply()
            if reply is None:
                self.notify("No reply to copy.", severity="warning")
            elif arg.startswith("code"):
                blocks = _code_blocks(reply.content)
                if blocks:
                    self.copy_text(blocks[-1], "the last code block")
                else:
                    self.notify("The last reply has no code block.", severity="warning")
            else:
                self.copy_text(reply.content, "the last reply")
        elif name == "continue":
            if pane.generating:
                self.notify("Still answering; press Esc to stop it first.", severity="warning")
            else:
                await pane.start_generation(continue_last=True)

    def show_stats(self, pane: ChatPane) -> None:
        from .engine.memory import human_bytes, snapshot

        lines = []
        reply = pane.last_reply()
        if reply is not None and reply.new_tokens:
            ttft = (
                f"{reply.time_to_first_token * 1000:.0f} ms" if reply.time_to_first_token else "n/a"
            )
            tps = f"{reply.tokens_per_second:.1f}" if reply.tokens_per_second else "n/a"
            lines.append(
                f"last reply: {reply.prompt_tokens} prompt + {reply.new_tokens} new tokens, "
                f"first token {ttft}, {tps} tok/s, stop: {reply.stop_reason}"
            )
        loaded = self.engine.loaded if self.engine else None
        if loaded:
            lines.append(
                f"model: {loaded.name}, {loaded.dtype} on {loaded.device}, "
                f"weights {human_bytes(loaded.footprint_bytes)}"
            )
            lines.append(
                f"KV cache (this chat): {human_bytes(self.engine.cache_bytes(pane.conversation.id))}"
            )
        snap = snapshot()
        lines.append(
            f"process RAM {human_bytes(snap.process_rss)}, "
            f"system free {human_bytes(snap.system_available)}"
        )
        self.notify("\n".join(lines), title="Stats", timeout=15)

    # -- errors, signals, exit ---------------------------------------------------------------
    @on(Worker.StateChanged)
    def worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.notify(
                f"{event.worker.name or 'task'} failed: {event.worker.error}",
                title="Error",
                severity="error",
                timeout=15,
            )
            for pane in self.panes():
                if not pane.generating:
                    pane.save()

    def _install_signal_handlers(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self.save_and_exit, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not on the main thread (tests) or not supported

    def save_and_exit(self, sig: int | None = None) -> None:
        """SIGTERM/SIGHUP (an SSH drop): keep every reply being streamed, save, quit."""
        for pane in self.panes():
            pane.interrupt_and_save()
        self._remember_tabs()
        self.exit(return_code=128 + sig if sig else 0)

    async def action_quit(self) -> None:
        for pane in self.panes():
            if pane.generating:
                pane.interrupt_and_save()
            elif pane.conversation.messages:
                pane.save()
        self._remember_tabs()
        self.exit()


def _code_blocks(text: str) -> list[str]:
    import re

    return [m.group(1) for m in re.finditer(r"```[^\n]*\n(.*?)```", text, re.S)]


def run_app(ns: argparse.Namespace, spec: ModelSpec, settings_args: list[str]) -> int:
    explicit = spec if (ns.model or (ns.args and any("=" not in a for a in ns.args))) else None
    endpoint = None
    if ns.endpoint:
        from .cli import make_endpoint

        endpoint = make_endpoint(ns)
    app = ChatApp(
        endpoint=endpoint,
        spec=explicit or remembered_spec(AppConfig.load(), spec),
        settings_args=settings_args,
        system_prompt=ns.system_prompt,
        data_dir=ns.data_dir,
        prompt_lookup=ns.prompt_lookup,
        assistant_model=ns.assistant_model,
    )
    app.run()
    return app.return_code or 0


def remembered_spec(config: AppConfig, fallback: ModelSpec) -> ModelSpec:
    """Without a model on the command line, start with the remembered one; a bad
    remembered spec falls back rather than stopping the app."""
    if not config.model:
        return fallback
    try:
        return ModelSpec.from_dict(config.model)
    except Exception:
        return fallback
