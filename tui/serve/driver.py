"""The driver of an app served to a browser (``chat-tui --serve``): Textual's web
driver, with the server going away treated as the terminal going away.

The server talks to each app process over its stdin and stdout. If the server ends
without ending the app (killed, crashed), stdin reaches EOF and writes fail: Textual's
web driver would then keep the app, and its model, alive with nobody to talk to. Here
each of those is one SIGHUP to this process, which the app handles like a real hangup
(:meth:`tui.app.ChatApp.save_and_exit`): every tab saved, partial replies included,
then exit. A ``quit`` from the server takes the same path, so nothing being written
is lost.
"""

from __future__ import annotations

import os
from typing import Any

from textual.drivers.web_driver import WebDriver

from ..terminal import report_hangup


class ServedDriver(WebDriver):
    """Textual's web driver; losing the server is a hangup, never an orphan."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lost = False
        self._write = self._guarded_write

    def _guarded_write(self, data: bytes) -> int:
        if self._lost:
            return len(data)
        try:
            return os.write(self.fileno, data)
        except OSError:  # EPIPE: the server is gone
            self._lose()
            return len(data)

    def _lose(self) -> None:
        if not self._lost and not self.exit_event.is_set():
            self._lost = True
            report_hangup()

    def run_input_thread(self) -> None:
        super().run_input_thread()
        self._lose()  # input ended (EOF) while the app still runs: the server is gone

    def on_meta(self, packet_type: str, payload: dict[str, object]) -> None:
        if packet_type == "quit":
            self._lose()  # save like a hangup, rather than Textual's plain exit
            return
        super().on_meta(packet_type, payload)
