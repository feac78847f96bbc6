"""A one-shot turn as the command line runs it, for ``--prompt`` and ``--compare``
alike: the text streamed to stdout, the ways it can be cut short (Ctrl-C, SIGTERM,
SIGHUP, a stdout nobody reads), and one ending: save, notes, exit code."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ..safe_text import StreamStripper
from ..store.errors import StoreError
from .output import EXIT_ERROR, EXIT_OK, Stdout, StdoutFailed, error, note
from .signals import Interrupts

if TYPE_CHECKING:
    from ..store import Conversation, SessionStore

T = TypeVar("T")


class Turn:
    """One turn of ``conv`` (saved to ``store``, or not with ``--no-save``).

    Setting :attr:`stop` ends generation soon: a signal sets it (see
    :class:`.signals.Interrupts`), and so does a write to stdout that fails (nobody is
    reading: stop, keep what came). Every way the turn ends early keeps and saves what
    was made, and :meth:`end` says it was saved only when it was."""

    def __init__(
        self, ns: argparse.Namespace, store: SessionStore | None, conv: Conversation
    ) -> None:
        self.store = store
        self.conv = conv
        self.stop = threading.Event()
        self.interrupts = Interrupts(self.stop)
        self.save_error: StoreError | None = None  # the last save that failed
        self.closed: StdoutFailed | None = None  # stdout failed: nothing more is written
        self._stdout = Stdout(raw=ns.raw and not sys.stdout.isatty())
        self.show_thinking = bool(getattr(ns, "show_thinking", False))
        self._thinking: StreamStripper | None = None  # reasoning being shown on stderr

    @property
    def cut_short(self) -> bool:
        """Interrupted, or its stdout closed."""
        return bool(self.interrupts.received) or self.closed is not None

    # -- stdout -------------------------------------------------------------------------
    def write(self, text: str, raw: bool = False) -> None:
        """``text`` on stdout, flushed: sanitized unless ``raw`` (our own text, already
        clean). After a failed write, nothing more is written and :attr:`stop` is set."""
        if self.closed is not None:
            return
        try:
            if raw:
                Stdout.write_raw(text, flush=True)
            else:
                self._stdout.write(text, flush=True)
        except StdoutFailed as exc:
            self.closed = exc
            self.stop.set()

    def think(self, text: str, heading: str | None = None) -> None:
        """A piece of the model's reasoning: on stderr, sanitized, with
        ``--show-thinking``; else nowhere. ``heading`` (which reply thinks, for
        --compare) goes on a line of its own before a new run of reasoning."""
        if not self.show_thinking:
            return
        if self._thinking is None:
            self._thinking = StreamStripper()
            if heading:
                self._stderr(heading + "\n")
        self._stderr(self._thinking.feed(text))

    def thinking_done(self) -> None:
        """The reasoning ended (the answer begins, or the reply ended)."""
        if self._thinking is not None:
            self._stderr(self._thinking.flush() + "\n")
            self._thinking = None

    @staticmethod
    def _stderr(text: str) -> None:
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError, UnicodeEncodeError):
            pass

    def finish_text(self) -> None:
        """The end of one streamed text: what the sanitizer still holds."""
        if self.closed is not None:
            return
        try:
            self._stdout.finish()
        except StdoutFailed as exc:
            self.closed = exc
            self.stop.set()

    # -- generating ---------------------------------------------------------------------
    def generate(self, run: Callable[[], T]) -> T | None:
        """``run()`` with Ctrl-C, SIGTERM and SIGHUP setting :attr:`stop`; ``None`` when
        a second Ctrl-C cut it short. An :class:`EngineError` is the caller's."""
        with self.interrupts:
            try:
                return run()
            except KeyboardInterrupt:  # a second Ctrl-C
                self.interrupts.second_ctrl_c()
        return None

    # -- ending -------------------------------------------------------------------------
    def save(self) -> bool:
        """Save the conversation; a failure is kept for :meth:`end` to say."""
        if self.store is None:
            return False
        try:
            self.store.save(self.conv)
        except StoreError as exc:
            self.save_error = exc
            return False
        return True

    def end(
        self, kept: str, notes: Iterable[str], failures: Sequence[str], changed: bool = True
    ) -> int:
        """The one ending of a one-shot run: save what was made (if ``changed``), say the
        ``notes`` on stderr, then the exit code. A closed stdout, a failed save or an
        interrupt comes first (each said once; ``kept`` names what an interrupt kept,
        "the partial reply was"); otherwise each of ``failures`` is a sentence, and
        the exit code is 1 if there are any."""
        saved = changed and self.save()
        for text in notes:
            note(text)
        if self.closed is not None:
            code = self.closed.report()
            if self.save_error is not None:
                error(str(self.save_error))
            return code
        if self.save_error is not None:
            error(str(self.save_error))
            return EXIT_ERROR
        if self.interrupts.received:
            error(f"Interrupted; {kept} saved." if saved else "Interrupted.")
            return self.interrupts.exit_code
        for failure in failures:
            error(failure)
        return EXIT_ERROR if failures else EXIT_OK
