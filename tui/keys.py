"""The main screen's keys, in a module of their own: the window that paints first
(:mod:`tui.screens.start`) shows them in its footer before the main screen is built,
and the help and the keymap read them from here."""

from __future__ import annotations

from textual.binding import Binding

MAIN_BINDINGS = [
    # priority: the prompt's TextArea has its own ctrl+w
    Binding("ctrl+n", "new_tab", "New", id="new_tab", priority=True,
            tooltip="a new conversation tab"),
    Binding("ctrl+w", "close_tab", "Close", id="close_tab", priority=True,
            tooltip="close this tab (saved; asks first if it cannot be)"),
    Binding("ctrl+pagedown,alt+right", "next_tab", "Next tab", show=False, id="next_tab",
            priority=True, tooltip="next tab"),
    Binding("ctrl+pageup,alt+left", "previous_tab", "Prev tab", show=False,
            id="previous_tab", priority=True, tooltip="previous tab"),
    Binding("escape", "stop", "Stop", id="stop",
            tooltip="stop the reply (what was written is kept, marked stopped)"),
    Binding("ctrl+o", "browse", "Sessions", id="browse", priority=True,
            tooltip="saved conversations: search, open, rename, delete, export"),
    Binding("ctrl+l", "pick_model", "Model", id="pick_model", priority=True,
            tooltip="load another model (bundled, cached, recent, or typed)"),
    Binding("ctrl+b", "toggle_sidebar", "Panel", id="toggle_sidebar", priority=True,
            tooltip="show or hide the side panel (model, settings, memory)"),
    # one line in the help for all nine (the others have no description)
    *[
        Binding(f"alt+{n}", f"go_tab({n})", "Go to tab" if n == 1 else "", show=False,
                id=f"go_tab_{n}", priority=True,
                tooltip="alt+1…9: go to that tab (alt+9: the last)" if n == 1 else "")
        for n in range(1, 10)
    ],
]  # fmt: skip
