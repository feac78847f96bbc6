"""Ctrl-C, SIGTERM and SIGHUP while the command line generates."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

from .output import EXIT_INTERRUPTED

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupts:
    """Inside ``with Interrupts(stop):`` Ctrl-C, SIGTERM and SIGHUP (an SSH drop) set
    ``stop``, so generation ends after the token being computed and the text already
    printed can be saved, marked interrupted. A second Ctrl-C stops at once
    (KeyboardInterrupt), e.g. during a long prompt's prefill. The previous handlers
    are back when the block ends."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received: int | None = None  # the signal that stopped it, if any
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        for sig in _SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        self.stop.set()

    def second_ctrl_c(self) -> None:
        """A second Ctrl-C cut generation short (its KeyboardInterrupt was caught)."""
        self.stop.set()
        self.received = self.received or int(signal.SIGINT)

    @property
    def exit_code(self) -> int:
        return EXIT_INTERRUPTED if self.received == signal.SIGINT else 128 + (self.received or 0)
