"""Copy text to the user's clipboard from a terminal app, even over SSH.

OSC 52 asks the terminal to set its clipboard; inside tmux the sequence is also wrapped
in tmux's passthrough so it reaches the outer terminal.
"""

from __future__ import annotations

import base64
import os

from textual.app import App


def copy(app: App, text: str) -> None:
    app.copy_to_clipboard(text)
    driver = app._driver
    if os.environ.get("TMUX") and driver is not None:
        payload = base64.b64encode(text.encode("utf-8", "replace")).decode("ascii")
        driver.write(f"\x1bPtmux;\x1b\x1b]52;c;{payload}\x07\x1b\\")


def code_blocks(text: str) -> list[str]:
    """The fenced code blocks of a Markdown text, in order."""
    import re

    return [m.group(1) for m in re.finditer(r"```[^\n]*\n(.*?)```", text, re.S)]
