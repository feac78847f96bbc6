"""Who runs the model: the batch of streaming replies, or one caller alone.

A reply that cannot be batched (speculative decoding, beam search), a comparison, a
replay, scoring and a model load each run alone: they hold the :class:`ModelGate`,
which waits for the batch's replies to end, and replies that arrive meanwhile wait for
them. Whoever waits is told for what ("2 streaming replies to finish").
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class ModelGate:
    """Who runs the model: the batch (its rows share it) or one caller alone (a reply
    that is not batched, a comparison, a replay, scoring, swapping the weights).

    Re-entrant for a thread that holds it alone: a comparison holds it and generates
    inside. A caller waiting to run alone goes before rows that arrive after it, so it
    waits only for the replies already streaming."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._local = threading.local()
        self._state = threading.Lock()
        self._waiting: list[str] = []  # what waits to run alone, in order of arrival
        self.holder = ""  # what runs now, as a noun phrase ("2 streaming replies")

    def held_here(self) -> bool:
        return getattr(self._local, "depth", 0) > 0

    def waiting_alone(self) -> str | None:
        """What waits to run alone (the first), or ``None``."""
        with self._state:
            return self._waiting[0] if self._waiting else None

    def acquire(
        self,
        doing: str,
        stop_event: threading.Event | None = None,
        on_wait: Callable[[str], None] | None = None,
        why: str = "",
    ) -> bool:
        """Hold the model alone; ``False`` if ``stop_event`` is set while waiting. While
        it waits, ``on_wait`` is told what it waits for (and ``why``, its own reason)."""
        if self.held_here():
            self._local.depth += 1
            return True
        with self._state:
            self._waiting.append(doing)
        said = None
        try:
            while not self._lock.acquire(timeout=0.05):
                if stop_event is not None and stop_event.is_set():
                    return False
                holder = self.holder or "the model"
                if on_wait is not None and holder != said:
                    said = holder
                    on_wait(f"{holder} to finish{': ' + why if why else ''}")
        finally:
            with self._state:
                self._waiting.remove(doing)
        self._local.depth = 1
        self.holder = doing
        return True

    def try_acquire(self, doing: str) -> bool:
        """Hold the model for the batch, without waiting."""
        if not self._lock.acquire(blocking=False):
            return False
        self._local.depth = getattr(self._local, "depth", 0) + 1
        self.holder = doing
        return True

    def release(self) -> None:
        self._local.depth -= 1
        if self._local.depth == 0:
            self.holder = ""
            self._lock.release()

    @contextlib.contextmanager
    def alone(
        self,
        doing: str,
        stop_event: threading.Event | None = None,
        on_wait: Callable[[str], None] | None = None,
        why: str = "",
    ) -> Iterator[bool]:
        """``with gate.alone("a comparison", stop) as held:`` (``held`` is ``False`` if
        stopped while waiting; then nothing is held)."""
        held = self.acquire(doing, stop_event, on_wait, why)
        try:
            yield held
        finally:
            if held:
                self.release()
