"""Text from outside the program, made safe where it meets a terminal.

A model's reply, a server's error text, a title or a file name may carry escape
sequences (an OSC window title, OSC 52 clipboard writes, CSI clear-screen, DCS),
other C0/C1 control characters, bidi overrides or lone surrogates. chat-tui stores such
text exactly as received; every path to the terminal goes through one of these:

* :func:`visible` for the app: each control becomes a visible placeholder
  (``ESC`` is shown as ``␛``, other C0 controls as their Control Picture, C1 controls,
  bidi overrides and lone surrogates as ``�``), so the user sees that something was
  there and the terminal never acts on it. Newline and tab are kept.
* :func:`one_line` for labels (tab titles, table cells, notification titles): the same,
  with newlines and tabs folded into spaces.
* :func:`clean` and :class:`StreamStripper` for one-shot output and exports: complete
  escape sequences are removed, remaining controls dropped, so a pipe gets clean text.

No Textual here: the engine, the store and the CLI use it too.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_KEEP = {"\n", "\t"}
# bidi embeddings, overrides and isolates: they reorder what follows on screen
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def _picture(code: int) -> str:
    if code == 0x7F:
        return "\u2421"  # ␡
    return chr(0x2400 + code)  # ␀ .. ␟ (ESC is ␛)


_VISIBLE_TABLE: dict[int, str] = {}
for _code in range(0x20):
    if chr(_code) not in _KEEP:
        _VISIBLE_TABLE[_code] = _picture(_code)
_VISIBLE_TABLE[0x7F] = _picture(0x7F)
for _code in range(0x80, 0xA0):
    _VISIBLE_TABLE[_code] = REPLACEMENT
for _char in _BIDI:
    _VISIBLE_TABLE[ord(_char)] = REPLACEMENT

_ONE_LINE_TABLE = {**_VISIBLE_TABLE, ord("\n"): " ", ord("\t"): " ", ord("\r"): " "}

_SURROGATE = re.compile("[\ud800-\udfff]")

# Escape sequences (ECMA-48), 7-bit and 8-bit forms
_SEQUENCE = re.compile(
    r"""
    \x1b\[[0-?]*[ -/]*[@-~]                       # CSI
  | \x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)     # OSC, ended by BEL or ST
  | \x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)          # DCS, SOS, PM, APC
  | \x1b[ -/]*[0-OQ-WYZ\\`-~]                     # two-character and nF escapes
  | \x9b[0-?]*[ -/]*[@-~]                         # 8-bit CSI
  | \x9d[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)       # 8-bit OSC
  | [\x90\x98\x9e\x9f][^\x1b\x9c]*(?:\x1b\\|\x9c)  # 8-bit DCS, SOS, PM, APC
    """,
    re.VERBOSE,
)
# the start of a sequence that more text could still complete
_UNFINISHED = re.compile(
    r"""
    \x1b\[[0-?]*[ -/]*
  | \x1b\][^\x07\x1b\x9c]*\x1b?
  | \x1b[PX^_][^\x1b\x9c]*\x1b?
  | \x1b[ -/]*
  | \x9b[0-?]*[ -/]*
  | \x9d[^\x07\x1b\x9c]*\x1b?
  | [\x90\x98\x9e\x9f][^\x1b\x9c]*\x1b?
    """,
    re.VERBOSE,
)
_INTRODUCERS = re.compile("[\x1b\x90\x98\x9b\x9d\x9e\x9f]")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI + "]")

STREAM_HOLD_LIMIT = 4096  # longest unfinished escape sequence a stream holds back


def fix_surrogates(text: str) -> str:
    """Lone surrogates (which no terminal or UTF-8 file can hold) become U+FFFD."""
    return _SURROGATE.sub(REPLACEMENT, text) if _SURROGATE.search(text) else text


def visible(text: str) -> str:
    """For the app: every control except newline and tab shown as a placeholder."""
    return fix_surrogates(str(text).translate(_VISIBLE_TABLE))


# A window draws at most this much of one text (a reply, its reasoning): Markdown
# takes about a second per 50,000 characters here, and a 2 MiB reply froze the window
# for half a minute. The conversation keeps all of it.
DRAWN_CHARS = 50_000


def more_line(chars: int | None) -> str:
    """What stands for the part of a text a window does not draw."""
    what = f"{chars:,} more characters" if chars else "the rest"
    return (
        f"\n\n[… {what} not drawn here (a window draws {DRAWN_CHARS:,} at most); the "
        "conversation keeps all of it: copy it from the message's actions (Enter) or "
        "export it (ctrl+e)]"
    )


def visible_head(text: str) -> str:
    """:func:`visible`, for a window: at most :data:`DRAWN_CHARS` characters, then a
    line saying how many more there are."""
    text = str(text)
    if len(text) <= DRAWN_CHARS:
        return visible(text)
    return visible(text[:DRAWN_CHARS]) + more_line(len(text) - DRAWN_CHARS)


def one_line(text: str, limit: int | None = None) -> str:
    """For labels: :func:`visible`, on one line, optionally cut to ``limit`` characters."""
    line = fix_surrogates(str(text).translate(_ONE_LINE_TABLE))
    if limit is not None and len(line) > limit:
        return line[: max(0, limit - 1)] + "…"
    return line


def clean(text: str) -> str:
    """For pipes, files and exports: escape sequences removed, controls dropped
    (newline and tab kept; ``\\r\\n`` becomes ``\\n``)."""
    text = str(text)
    if _INTRODUCERS.search(text):
        text = _SEQUENCE.sub("", text)
    text = text.replace("\r\n", "\n")
    return fix_surrogates(_CONTROLS.sub("", text))


def has_controls(text: str) -> bool:
    """True if ``text`` holds anything :func:`visible` would replace."""
    return bool(_CONTROLS.search(text) or "\r" in text or _SURROGATE.search(text))


class StreamStripper:
    """:func:`clean` for text that arrives in pieces: an escape sequence split between
    two pieces is held back until it completes (at most :data:`STREAM_HOLD_LIMIT`
    characters; a longer one is let through with its introducer removed)."""

    def __init__(self) -> None:
        self.pending = ""

    def feed(self, chunk: str) -> str:
        text = self.pending + chunk
        self.pending = ""
        pos = 0
        while (found := _INTRODUCERS.search(text, pos)) is not None:
            start = found.start()
            complete = _SEQUENCE.match(text, start)
            if complete is not None:
                pos = complete.end()
                continue
            if len(text) - start < STREAM_HOLD_LIMIT and _UNFINISHED.fullmatch(text, start):
                self.pending = text[start:]
                text = text[:start]
                break
            pos = start + 1
        if text.endswith("\r"):  # maybe the first half of \r\n
            self.pending = "\r" + self.pending
            text = text[:-1]
        return clean(text)

    def flush(self) -> str:
        rest, self.pending = self.pending, ""
        return clean(rest)
