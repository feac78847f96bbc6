"""What happens when the app meets an error it did not expect.

It should not, and ``bench/monkey.py`` drives random keys through every screen to find
where it still does; but if it does, the user loses no word: every conversation is
saved (a reply being streamed kept, marked interrupted), the traceback goes to a log
file in the state folder, and the terminal gets one sentence naming that file instead
of a screenful of locals.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from . import paths

if TYPE_CHECKING:
    from .screens.main import MainScreen

MAX_LOGS = 20  # the oldest crash logs beyond these are removed


def rescue(main: MainScreen | None) -> None:
    """Save every tab, nobody to ask (a crash, SIGTERM, SIGHUP): a reply being streamed
    is kept, marked interrupted; a conversation that cannot be saved where it was is
    saved as a new one."""
    if main is None or not main.ready:
        return  # its tabs are still being read from disk: nothing in them has changed
    for pane in main.panes():
        with contextlib.suppress(Exception):  # one tab failing must not cost the others
            pane.interrupt_and_save(rescue=True)
    with contextlib.suppress(Exception):
        main.remember_tabs()


def write_log(error: BaseException) -> Path | None:
    """The traceback in ``crash-<time>.log`` under the state folder; None if it cannot
    be written (the sentence then says so)."""
    folder = paths.state_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / time.strftime("crash-%Y%m%d-%H%M%S.log")
        text = "".join(traceback.format_exception(error))
        path.write_text(text, encoding="utf-8", errors="backslashreplace")
        for old in sorted(folder.glob("crash-*.log"))[:-MAX_LOGS]:
            old.unlink(missing_ok=True)
    except OSError:
        return None
    return path


def sentence(log: Path | None) -> str:
    where = f"the details are in {log}" if log else "the details could not be written"
    return f"chat-tui stopped on an unexpected error; every conversation was saved, and {where}."
