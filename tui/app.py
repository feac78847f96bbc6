"""The Textual app: services, themes, keys that work everywhere, signals and exit.

The app builds the services (the user's config, the app state, the sessions service,
the model controller) and hands them to :class:`~tui.screens.main.MainScreen`, which
owns the tabs, the side panel and their keys. torch and transformers are imported by
the load worker, after the window paints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from textual import events, on
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

import themes

from . import crash, safe_text
from .config import AppConfig, ConfigError
from .early_input import EarlyInput
from .engine.controller import ModelController
from .engine.spec import ModelSpec
from .engine.threads import ThreadPerJob
from .screens.start import StartScreen
from .state import AppState
from .store import SessionStore
from .store.sessions import Sessions
from .terminal import GuardedDriver, exit_soon

if TYPE_CHECKING:
    from .engine.protocol import ChatEngine
    from .engine.remote import Endpoint
    from .screens.main import MainScreen


@dataclass
class LaunchOptions:
    """What the command line decided (see ``tui.cli``): the app does not decide again."""

    spec: ModelSpec = field(default_factory=ModelSpec)
    endpoint: Endpoint | None = None
    endpoint_model: str = "default"  # the model to ask the endpoint for
    settings_args: Sequence[str] = ()
    system_prompt: str | None = None
    data_dir: str | None = None
    prompt_lookup: int | None = None
    assistant_model: str | None = None


class ChatApp(App):
    TITLE = "chat-tui"
    # the screen gets -narrow / -wide classes; app.tcss adapts the side panel
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-normal"), (160, "-wide")]
    CSS_PATH = [Path(__file__).with_name("app.tcss"), *themes.stylesheets()]
    BINDINGS = [
        Binding("f1", "help", "Help", id="help", tooltip="this help"),
        Binding(
            "ctrl+q",
            "quit",
            "Quit",
            id="quit",
            priority=True,
            tooltip="quit (everything is saved; asks first if something cannot be)",
        ),
    ]

    def __init__(
        self,
        spec: ModelSpec | None = None,
        *,
        engine: ChatEngine | None = None,
        endpoint: Endpoint | None = None,
        endpoint_model: str = "default",
        settings_args: Sequence[str] = (),
        system_prompt: str | None = None,
        data_dir: str | None = None,
        load_on_start: bool = True,
        prompt_lookup: int | None = None,
        assistant_model: str | None = None,
        driver_class: type | None = None,
    ) -> None:
        super().__init__(driver_class=driver_class)
        self.config = AppConfig.load()
        store = SessionStore(data_dir)
        self.state = AppState.load(store.root, legacy=self.config.legacy)
        self.sessions = Sessions(store)
        self.controller = ModelController(
            spec or ModelSpec(),
            engine=engine,
            settings_args=settings_args,
            prompt_lookup=prompt_lookup,
            assistant_model=assistant_model,
            api_key_env=self.config.api_key_env,
            start_endpoint=endpoint,
        )
        self._screen_options = {
            "system_prompt": system_prompt,
            "load_on_start": load_on_start,
            "endpoint": endpoint,
            "endpoint_model": endpoint_model,
        }
        self._main: MainScreen | None = None
        self._theme_ready = False
        self._early_input = EarlyInput()  # keys typed before the tabs exist
        self.crashed = False  # by an unexpected error (see tui.crash)
        self.crash_log: Path | None = None

    def get_default_screen(self) -> StartScreen:
        """What paints first (see :mod:`.screens.start`); the main screen replaces it
        once built, right after that first paint."""
        return StartScreen()

    def _open_main(self) -> None:
        """Build the main screen (its modules load here, after the first paint) and put
        it in place of the start screen."""
        from .screens.main import MainScreen

        self._main = MainScreen(self.sessions, self.controller, self.state, **self._screen_options)
        self.push_screen(self._main)  # above the start screen, which it hides

    def _get_dom_base(self):  # type: ignore[override]
        """Queries from the app search the main screen once it is up (Textual searches
        the default screen, which here is only the start screen beneath it)."""
        return self._main if self._main is not None else self.default_screen

    @property
    def main_screen(self) -> MainScreen:
        """The screen with the tabs, even while a dialog is on top."""
        assert self._main is not None, "the app is not running"
        return self._main

    # -- look ------------------------------------------------------------------------------
    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(themes.VARIABLE_DEFAULTS)

    def on_mount(self) -> None:
        from . import paths

        for problem in themes.install(self, self.config.theme, paths.config_dir() / "themes"):
            self.notify(problem, severity="warning", timeout=10)
        self._theme_ready = True
        for problem in (self.config.problem, self.state.problem):
            if problem:
                self.notify(problem, severity="warning", timeout=10)
        for warning in self.config.warnings + self.state.warnings:
            self.notify(warning, severity="warning", timeout=10)
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
        self._install_loop_handlers()
        self.call_after_refresh(self._open_main)  # once the first frame is out

    def watch_theme(self, theme: str) -> None:
        for name in themes.THEMES:
            self.set_class(name == theme, f"theme-{name}")
        if self._theme_ready and theme != (self.config.theme or themes.DEFAULT_THEME):
            try:  # the user picked it: the one change written to their config
                self.config.set_theme(theme)
            except ConfigError as exc:
                self.notify(str(exc), severity="warning")

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: str = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Every notification is plain text: messages quote model output, server errors
        and file names, which must neither be read as markup nor reach the terminal raw."""
        super().notify(
            safe_text.visible(str(message)),
            title=safe_text.one_line(str(title)),
            severity=severity,  # type: ignore[arg-type]
            timeout=timeout,
            markup=False,
        )

    # -- keys typed before the window is ready (see tui.early_input) -----------------------
    async def on_event(self, event: events.Event) -> None:
        ready = self._main is not None and self._main.ready
        if ready and isinstance(event, events.Paste) and not hasattr(self.focused, "keeps_paste"):
            event.text = safe_text.visible(event.text)  # Textual's Input draws a raw ESC
        if not self._early_input.keep(event, ready=ready):
            await super().on_event(event)

    def replay_early_input(self) -> None:
        self._early_input.replay(self)

    # -- the command palette: Textual's, made safe for fast keys (see SafeCommandPalette) ---
    def action_command_palette(self) -> None:
        from .palette import SafeCommandPalette

        if self.use_command_palette and not SafeCommandPalette.is_open(self):
            self.push_screen(SafeCommandPalette(id="--command-palette"))

    def search_commands(self, commands, placeholder: str = "Search for commands…"):
        from .palette import search_commands

        return search_commands(self, commands, placeholder)

    def search_themes(self) -> None:
        from .palette import search_themes

        search_themes(self)

    # -- keys that work everywhere -------------------------------------------------------------
    def action_help(self) -> None:
        from .screens.help import HelpScreen, keys_for

        self.push_screen(HelpScreen(keys_for(self._keymap, self.BINDINGS)))

    async def action_quit(self) -> None:
        """Save every tab (a reply being streamed is kept, marked interrupted); if some
        cannot be saved, ask before losing them."""
        main = self.main_screen
        unsaved = [p for p in main.panes() if not p.interrupt_and_save() and p.unsaved]
        main.remember_tabs()
        if unsaved:

            async def quit_anyway() -> None:
                self.exit()

            main.ask_about_unsaved(unsaved, then=quit_anyway, verb="Quit")
            return
        self.exit()

    # -- errors, signals ---------------------------------------------------------------------
    @on(Worker.StateChanged)
    def worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            name, error = event.worker.name or "task", event.worker.error
            self.notify(f"{name} failed: {error}", title="Error", severity="error", timeout=15)

    def _handle_exception(self, error: Exception) -> None:
        """An error nothing handled: save every conversation and log it (see tui.crash)."""
        if not self.crashed:
            self.crashed = True
            if not self.is_headless:  # end within seconds even if nothing below can
                exit_soon(1)
            self.crash_log = crash.write_log(error)
            crash.rescue(self._main)
        super()._handle_exception(error)

    def _print_error_renderables(self) -> None:
        if self.crashed and "debug" not in self.features:
            self._exit_renderables.clear()  # the traceback is in the log
            with contextlib.suppress(OSError, ValueError):  # a stderr that is gone
                self.error_console.print(crash.sentence(self.crash_log), markup=False)
        super()._print_error_renderables()

    def _install_loop_handlers(self) -> None:
        loop = asyncio.get_running_loop()  # workers' threads end with them (engine.threads)
        loop.set_default_executor(ThreadPerJob("worker"))
        try:
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self.save_and_exit, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not on the main thread (tests) or not supported

    def save_and_exit(self, sig: int | None = None) -> None:
        """SIGTERM/SIGHUP (an SSH drop, or the terminal found gone): save every tab and
        quit, within seconds even if the shutdown cannot finish (the terminal is gone)."""
        code = 128 + sig if sig else 0
        try:
            crash.rescue(self._main)
        finally:  # whatever saving met, the process ends
            if not self.is_headless:  # a real terminal (not a test's headless run)
                exit_soon(code)
            self.exit(return_code=code)


def run_app(options: LaunchOptions) -> int:
    app = ChatApp(
        options.spec,
        endpoint=options.endpoint,
        endpoint_model=options.endpoint_model,
        settings_args=options.settings_args,
        system_prompt=options.system_prompt,
        data_dir=options.data_dir,
        prompt_lookup=options.prompt_lookup,
        assistant_model=options.assistant_model,
        # textual-serve names its driver (tui.serve.driver) in TEXTUAL_DRIVER
        driver_class=None if os.environ.get("TEXTUAL_DRIVER") else GuardedDriver,
    )
    app.run()
    return app.return_code or 0
