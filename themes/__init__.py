"""chat-tui's themes: Textual ``Theme`` objects plus a ``.tcss`` file per theme.

Each ``<name>.tcss`` holds that theme's own touches, scoped by the ``theme-<name>``
class the app sets on itself; colours come from theme variables only.
"""

from __future__ import annotations

from pathlib import Path

from textual.theme import Theme

HERE = Path(__file__).parent

# chat-tui's own theme variables, with defaults for Textual's built-in themes
VARIABLE_DEFAULTS = {"chat-user": "#2a3a4d", "chat-stopped": "#e9c46a"}

THEMES: dict[str, Theme] = {
    theme.name: theme
    for theme in (
        Theme(
            name="chat-tui-dark",
            primary="#5fa8d3",
            secondary="#62b6cb",
            accent="#f4a261",
            foreground="#e0e6ed",
            background="#14181f",
            surface="#1b212b",
            panel="#232b38",
            success="#7bc47f",
            warning="#e9c46a",
            error="#e76f51",
            dark=True,
            variables={"chat-user": "#2a3a4d", "chat-stopped": "#e9c46a"},
        ),
        Theme(
            name="chat-tui-light",
            primary="#1d4e89",
            secondary="#00818a",
            accent="#b5452b",
            foreground="#1e2329",
            background="#f7f7f2",
            surface="#ecebe4",
            panel="#dfddd3",
            success="#2d7d46",
            warning="#9a6700",
            error="#b42318",
            dark=False,
            variables={"chat-user": "#dbe7f3", "chat-stopped": "#9a6700"},
        ),
        Theme(
            name="chat-tui-terminal",
            primary="#39d353",
            secondary="#26a641",
            accent="#f0e68c",
            foreground="#c9d1c9",
            background="#0a0f0a",
            surface="#111811",
            panel="#182218",
            success="#39d353",
            warning="#f0e68c",
            error="#ff6b6b",
            dark=True,
            variables={"chat-user": "#132613", "chat-stopped": "#f0e68c"},
        ),
    )
}
DEFAULT_THEME = "chat-tui-dark"


def stylesheets() -> list[Path]:
    """The per-theme stylesheets, one per theme above."""
    return [HERE / f"{name}.tcss" for name in THEMES]
