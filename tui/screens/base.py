"""The base of chat-tui's dialogs: an answer counts once, and only from the top.

Keys can arrive faster than a screen closes: a second Enter in the model picker, or an
Esc that lands while the dialog's own answer is on its way, would call ``dismiss``
again, and Textual's ``dismiss`` pops whatever screen is on top, which by then is the
screen beneath (the main screen: "Can't pop screen"). A :class:`Dialog` dismisses
itself only while it is the active screen and only once.
"""

from __future__ import annotations

from typing import TypeVar

from textual.await_complete import AwaitComplete
from textual.screen import ModalScreen

ResultType = TypeVar("ResultType")


async def _nothing() -> None:
    return None


class DismissedOnce:
    """Mixed into a screen class before Textual's: ``dismiss`` acts once, and only
    while the screen is the active one."""

    _answered = False

    def dismiss(self, result=None) -> AwaitComplete:  # type: ignore[no-untyped-def]
        if self._answered or not self.is_active:  # type: ignore[attr-defined]
            return AwaitComplete(_nothing())
        self._answered = True
        return super().dismiss(result)  # type: ignore[misc]


class Dialog(DismissedOnce, ModalScreen[ResultType]):
    """chat-tui's modal screens."""
