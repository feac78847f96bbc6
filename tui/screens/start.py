"""The window that paints first: the title, a line that says chat-tui is starting, and
the footer with the main screen's keys. It needs only Textual's own widgets, so it is
drawn while the main screen (tabs, side panel, conversations) is still being built;
keys typed meanwhile are kept by the app and acted on once the main screen is up."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Header, Static

from ..keys import MAIN_BINDINGS
from ..widgets.footer import ChatFooter


class StartScreen(Screen):
    BINDINGS = MAIN_BINDINGS  # shown in the footer; keys wait for the main screen

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("starting…", id="starting")
        yield ChatFooter()
