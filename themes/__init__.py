"""chat-tui's themes: Textual ``Theme`` objects plus a ``.tcss`` file per theme.

Each ``<name>.tcss`` holds that theme's own touches, scoped by the ``theme-<name>``
class the app sets on itself; colours come from theme variables only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from textual.theme import Theme

if TYPE_CHECKING:
    from textual.app import App

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


# -- user themes -------------------------------------------------------------------------
THEME_COLOURS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
    "warning",
    "error",
    "success",
)
MAX_THEME_FILES = 100
MAX_THEME_BYTES = 64 * 1024
_NAME_PUNCTUATION = set(" -_.()")
_VARIABLE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_TEXT_STYLES = {"bold", "dim", "italic", "underline", "strike", "reverse", "none", "not"}


def _colour(value: object, where: str) -> str:
    from textual.color import Color, ColorParseError

    if not isinstance(value, str):
        raise ValueError(f'{where} must be a colour in quotes, e.g. "#5fa8d3"')
    try:
        Color.parse(value)
    except ColorParseError:
        raise ValueError(f'{where} = {value!r} is not a colour (try "#5fa8d3")') from None
    return value


def theme_from_toml(text: str, stem: str) -> Theme:
    """A :class:`Theme` from a user's theme file; ``ValueError`` with a sentence if the
    file is not a valid theme."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ValueError(f"not valid TOML ({exc})") from None
    known = {"name", "dark", "variables", *THEME_COLOURS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"unknown field {unknown[0]!r}; a theme has name, dark, "
            + ", ".join(THEME_COLOURS)
            + " and a [variables] table"
        )
    name = data.get("name", stem)
    if not isinstance(name, str) or not name.strip() or len(name) > 60:
        raise ValueError("name must be a short text")
    if not all(c.isalnum() or c in _NAME_PUNCTUATION for c in name):
        # shown in the palette and written to config.toml: no controls, no bidi marks
        raise ValueError("name may hold only letters, digits, spaces and - _ . ( )")
    if "primary" not in data:
        raise ValueError("primary (the main colour) is missing")
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ValueError("dark must be true or false")
    colours = {key: _colour(data[key], key) for key in THEME_COLOURS if key in data}
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise ValueError('[variables] must be a table of name = "value"')
    extra = {}
    for key, value in variables.items():
        if not _VARIABLE.match(str(key)):
            raise ValueError("a variable name may hold only a-z, 0-9 and -")
        if not isinstance(value, str):
            raise ValueError(f"variables.{key} must be text")
        if key.endswith("-style"):
            if not value.split() or not set(value.split()) <= _TEXT_STYLES:
                raise ValueError(
                    f"variables.{key} = {value[:40]!r} is not a text style "
                    "(words from: " + ", ".join(sorted(_TEXT_STYLES)) + ")"
                )
        else:
            _colour(value, f"variables.{key}")
        extra[str(key)] = value
    for key, default in VARIABLE_DEFAULTS.items():
        extra.setdefault(key, default)
    return Theme(name=name.strip(), dark=dark, variables=extra, **colours)


def user_themes(folder: Path) -> tuple[list[Theme], list[str]]:
    """Every ``*.toml`` theme in ``folder`` and, for each file that is not a valid
    theme, one sentence saying why (the file is left alone)."""
    found: list[Theme] = []
    problems: list[str] = []
    try:
        files = sorted(folder.glob("*.toml"))[:MAX_THEME_FILES]
    except OSError:
        return [], []
    from tui.safe_text import one_line
    from tui.store.atomic import ReadRefused, read_bounded

    for path in files:
        shown = one_line(str(path))
        try:
            # a regular file only: a FIFO or a link to /dev/zero is refused, never read
            raw = read_bounded(path, MAX_THEME_BYTES)
            found.append(theme_from_toml(raw.decode("utf-8"), path.stem))
        except ReadRefused as exc:
            problems.append(f"Theme {shown} was not loaded: it {exc}.")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"Theme {shown} could not be read ({exc}).")
        except ValueError as exc:
            problems.append(f"Theme {shown} was not loaded: {exc}.")
    return found, problems


def install(app: App, wanted: str | None, folder: Path) -> list[str]:
    """Register the bundled themes and the user's (from ``folder``), then use ``wanted``
    (or the default). Returns what went wrong, one sentence each: an unknown or broken
    theme falls back to the default, never a dead start."""
    for theme in THEMES.values():
        app.register_theme(theme)
    mine, problems = user_themes(folder)
    for theme in mine:
        app.register_theme(theme)
    wanted = wanted or DEFAULT_THEME
    if wanted not in app.available_themes:
        problems.append(f"Unknown theme {wanted!r}; using {DEFAULT_THEME}.")
        wanted = DEFAULT_THEME
    try:
        app.theme = wanted
    except Exception as exc:  # a theme the stylesheet cannot take
        problems.append(
            f"The theme {wanted!r} could not be used ({type(exc).__name__}); using {DEFAULT_THEME}."
        )
        app.theme = DEFAULT_THEME
    return problems
