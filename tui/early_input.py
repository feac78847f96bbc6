"""Keys typed before the window is ready.

chat-tui paints a start screen first and builds the tabs right after; a person who
types ``ctrl+n``, a question and Enter meanwhile loses nothing: the keys (and pastes)
are kept here and sent again, in order, once the main screen has its tabs, so none of
them acts on a half-built screen.
"""

from __future__ import annotations

from textual import events
from textual._context import active_message_pump
from textual.app import App


class EarlyInput:
    def __init__(self) -> None:
        self._kept: list[events.Key | events.Paste] = []

    def keep(self, event: events.Event, *, ready: bool) -> bool:
        """Keep ``event`` if it is typed input arriving before the tabs are ``ready``."""
        if ready or not isinstance(event, (events.Key, events.Paste)) or event.is_forwarded:
            return False
        self._kept.append(event)
        return True

    def replay(self, app: App) -> None:
        """What was typed meanwhile, as if typed now. An Enter typed before the terminal
        was switched to raw mode reached us as a newline (the terminal turns CR into LF
        until then), so an early ctrl+j is the Enter it was."""
        kept, self._kept = self._kept, []
        type_again(app, [events.Key("enter", "\r") if _is_ctrl_j(e) else e for e in kept])


def _is_ctrl_j(event: events.Key | events.Paste) -> bool:
    return isinstance(event, events.Key) and event.key == "ctrl+j"


def type_again(app: App, typed: list[events.Key | events.Paste]) -> None:
    """Send ``typed`` again as the terminal's keys, to whatever has the focus by then.

    Sent as the app's, as the terminal's keys are: a message bubbles no higher than its
    sender, so a key sent from a screen or a pane would never reach the app's bindings
    (f1, ctrl+q, a TextArea's backspace)."""
    token = active_message_pump.set(app)
    try:
        for event in typed:
            if isinstance(event, events.Paste):
                again: events.Event = events.Paste(event.text)
            else:
                again = events.Key(event.key, event.character)
            again.handed_over = True  # type: ignore[attr-defined]  # (see MessageView)
            app.post_message(again)
    finally:
        active_message_pump.reset(token)
