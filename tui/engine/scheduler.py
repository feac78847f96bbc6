"""The thread that runs the batch (:mod:`.batch`), and each caller's side of its row.

One thread, the :class:`Scheduler`'s, runs the model for every row: it reads the
prompts of the rows that arrive, steps the batch, lets rows go, and ends when none is
left (the next row starts it again). Each caller waits in its own thread
(:class:`Caller`) and decodes its row's tokens there, so ``on_text`` is called in the
caller's thread as before. A caller that already holds the model alone (a comparison
generating inside its hold) makes its row in its own thread (:func:`run_alone`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ..reasons import StopReason
from . import libs
from .batch import Batch, Row, admit, advance, finish, plural
from .gate import ModelGate
from .generation import GenerationResult, GenerationStats, _Streamer, conclude, failure

MAX_ROWS = 8
"""Rows decoding together at most; more wait for a place."""


class Scheduler:
    """The thread that runs the batch: it admits rows (reads their prompts), steps the
    batch, lets rows go, and stops when no row is left (a new row starts it again)."""

    def __init__(self, gate: ModelGate, current: Callable[[], Any]) -> None:
        self.gate = gate
        self.current = current  # the engine's LoadedModel now
        self._cond = threading.Condition()
        self._pending: list[Row] = []
        self._thread: threading.Thread | None = None
        self.batch: Batch | None = None
        self.steps = 0  # batched steps run (for tests and the bench)
        self.widest = 0  # the most rows seen in one step

    # -- what callers see -----------------------------------------------------------------
    def streaming(self) -> int:
        batch = self.batch
        return len(batch.rows) if batch is not None else 0

    def cache_bytes(self, key: str | None = None) -> int:
        batch = self.batch
        return batch.cache_bytes(key) if batch is not None else 0

    def submit(self, row: Row) -> None:
        with self._cond:
            self._pending.append(row)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="batch", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def alive(self) -> bool:
        with self._cond:
            return self._thread is not None and self._thread.is_alive()

    # -- the thread -----------------------------------------------------------------------
    def _run(self) -> None:
        torch = libs.torch()
        holding = False
        try:
            with torch.inference_mode():
                while True:
                    with self._cond:
                        pending = self._settle()
                        if not pending and not (self.batch and self.batch.rows):
                            self._thread = None
                            self.batch = None  # nor keep the weights alive after a swap
                            return
                    if not holding:
                        holding = self.gate.try_acquire(self._describe(len(pending)))
                        if not holding:
                            for row in pending:
                                row.wait(f"{self.gate.holder or 'the model'} to finish")
                            with self._cond:
                                self._cond.wait(0.05)
                            continue
                    admitted = self._admit(pending)
                    if self.batch is not None and self.batch.rows:
                        self._step()
                    elif not admitted:  # rows wait for a caller that runs alone: let it
                        self.gate.release()
                        holding = False
                        with self._cond:
                            self._cond.wait(0.05)
        except BaseException as exc:  # never leave a caller waiting
            self._fail_all(failure(exc))
            raise
        finally:
            if holding:
                self.gate.release()
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _describe(self, extra: int = 0) -> str:
        count = (len(self.batch.rows) if self.batch else 0) + extra
        return plural(max(1, count), "streaming reply", "streaming replies")

    def _settle(self) -> list[Row]:
        """Pending rows that still want the model (under the condition's lock): the
        stopped and abandoned ones end; those prepared for a model that has since been
        swapped or reloaded are sent back to be prepared again."""
        loaded = self.current()
        for row in list(self._pending):
            if row.event.is_set() or row.abandoned:
                self._pending.remove(row)
                self._finish(row)
            elif loaded is not row.loaded or loaded.model is not row.model:
                self._pending.remove(row)
                row.finished = True
                row.outbox.put(("retry", None))
        return list(self._pending)

    def _admit(self, pending: list[Row]) -> int:
        admitted = 0
        for row in pending:
            model = row.model
            if self.batch is None or self.batch.model is not model:
                if self.batch is not None and self.batch.rows:
                    row.wait("the replies on the previous weights to finish")
                    break
                self.batch = Batch(model)
            alone = self.gate.waiting_alone()
            blocker = None
            if alone:
                blocker = f"{alone} to run first"
            elif len(self.batch.rows) >= MAX_ROWS:
                blocker = (
                    f"a place: {plural(len(self.batch.rows), 'reply is', 'replies are')} streaming"
                )
            else:
                blocker = self.batch.fits(row)
            if blocker:
                row.wait(blocker)
                break
            with self._cond:
                if row not in self._pending:
                    continue
                self._pending.remove(row)
            admit(self.batch, row, pending)
            admitted += 1
            self.gate.holder = self._describe()
        return admitted

    def _step(self) -> None:
        batch = self.batch
        assert batch is not None
        self.widest = max(self.widest, len(batch.rows))
        self.steps += 1
        advance(batch)
        self.gate.holder = self._describe()

    def _finish(self, row: Row) -> None:
        finish(row)

    def _fail_all(self, error: str) -> None:
        with self._cond:
            rows = list(self._pending) + (list(self.batch.rows) if self.batch else [])
            self._pending.clear()
            if self.batch is not None:
                self.batch.rows, self.batch.cache, self.batch.pads = [], None, []
        for row in rows:
            if not row.finished:
                row.error = row.error or error
                finish(row)


RETRY = object()
"""What :meth:`Caller.result` returns when the model changed before the row started:
prepare the turn again."""


class Caller:
    """The waiting caller's half of a row, in the caller's thread: it tells ``on_wait``
    and ``on_start``, decodes the tokens (``on_text``) and makes the result."""

    def __init__(
        self,
        row: Row,
        tokenizer: Any,
        stop_strings: tuple[str, ...],
        on_text: Callable[[str], None] | None,
        on_start: Callable[[], None] | None,
        on_wait: Callable[[str], None] | None,
        decoder: Any = None,
    ) -> None:
        self.row = row
        self.streamer = _Streamer(tokenizer, on_text, stop_strings, decoder)
        self.streamer.prompt_seen = True
        self.on_start = on_start
        self.on_wait = on_wait
        self.retry = False
        self.done = False

    def handle(self, kind: str, payload: Any) -> None:
        row = self.row
        if kind == "done":
            self.done = True
            return
        if kind == "retry":
            self.retry = self.done = True
            return
        if row.abandoned:
            return
        try:
            if kind == "wait" and self.on_wait is not None:
                self.on_wait(payload)
            elif kind == "start" and self.on_start is not None:
                self.on_start()
            elif kind == "tokens":
                torch = libs.torch()
                self.streamer.put(torch.tensor(payload))
        except Exception as exc:  # the caller's own callback failed: the row ends
            row.abandoned = failure(exc)

    def drain(self) -> None:
        while not self.done:
            try:
                kind, payload = self.row.outbox.get_nowait()
            except queue.Empty:
                return
            self.handle(kind, payload)

    def wait(self, scheduler: Scheduler) -> None:
        """Until the row is done (from the scheduler's thread)."""
        while not self.done:
            try:
                kind, payload = self.row.outbox.get(timeout=0.5)
            except queue.Empty:
                if not scheduler.alive() and not self.row.finished:
                    self.row.error = "Generation failed: the batch's thread ended."
                    return
                continue
            self.handle(kind, payload)

    def result(self) -> GenerationResult | object:
        if self.retry:
            return RETRY
        row = self.row
        stats = GenerationStats(prompt_tokens=len(row.prompt_ids))
        if not row.abandoned and row.error is None:
            try:
                self.streamer.end()
            except Exception as exc:
                row.abandoned = failure(exc)
        if row.error is not None or row.abandoned:
            stats.stop_reason = StopReason.ERROR
            stats.error = row.error or row.abandoned
        self.streamer.first_token_at = row.first_token_at
        finished = row.finished_at or time.perf_counter()
        conclude(stats, self.streamer, row.config, row.event, row.submitted_at, finished)
        stats.reused_tokens = row.reused
        stats.target_forwards = row.forwards
        return GenerationResult(
            text=self.streamer.text, stats=stats, token_ids=list(self.streamer.token_ids)
        )


def run_alone(row: Row, caller: Caller) -> GenerationResult | object:
    """The row made in this thread, which holds the model (a comparison or a replay
    generating inside its hold, or batching turned off): the same steps, one row."""
    batch = Batch(row.model)
    admit(batch, row, [], caller.drain)
    caller.drain()
    while batch.rows:
        if caller.row.abandoned and not row.finished:
            batch.leave([row])
            finish(row)
            break
        advance(batch)
        caller.drain()
    caller.drain()
    return caller.result()
