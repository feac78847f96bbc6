"""What the command line prints, and how it ends: results on stdout (text from outside
sanitized; a failed write raised once, as :class:`StdoutFailed`), sentences on stderr
(:func:`error`, :func:`note`), a progress bar on a terminal's stderr, and the exit
codes."""

from __future__ import annotations

import os
import sys

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, what `git log | head -1` leaves in PIPESTATUS


def error(message: str) -> None:
    """One line on stderr (sanitized: messages quote files, servers and models); a
    stderr that is gone is not an error of its own."""
    from ..safe_text import one_line

    try:
        print(f"chat-tui: {one_line(message)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def note(message: str) -> None:
    error(f"note: {message}")


class StdoutFailed(Exception):
    """Writing to standard output failed (a full disk, a closed pipe)."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause

    def report(self) -> int:
        """A closed pipe: silence and 141, as a program killed by SIGPIPE ends (``git log |
        head -1``), so a script can tell "the reader stopped" from a failure. Anything
        else (a full disk): one sentence and 1."""
        silence_stdout()
        if isinstance(self.cause, BrokenPipeError):
            return EXIT_CLOSED_PIPE
        from ..store.errors import describe_os_error

        error(f"Could not write to standard output: {describe_os_error(self.cause)}.")
        return EXIT_ERROR


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class Stdout:
    """Results on stdout. Text from outside (a model's reply) goes through the
    sanitizer unless ``raw``; a failed write raises :class:`StdoutFailed`."""

    def __init__(self, raw: bool = False) -> None:
        from ..safe_text import StreamStripper

        self.stripper = None if raw else StreamStripper()

    def write(self, text: str, flush: bool = False) -> None:
        if self.stripper is not None:
            text = self.stripper.feed(text)
        self.write_raw(text, flush)

    def finish(self) -> None:
        self.write_raw(self.stripper.flush() if self.stripper is not None else "", True)

    @staticmethod
    def write_raw(text: str, flush: bool = False) -> None:
        """Our own text (labels, a table), already clean: written as it is."""
        try:
            try:
                sys.stdout.write(text)
            except UnicodeEncodeError:  # a stdout that cannot show every character
                encoding = getattr(sys.stdout, "encoding", None) or "ascii"
                sys.stdout.write(text.encode(encoding, "replace").decode(encoding))
            if flush:
                sys.stdout.flush()
        except OSError as exc:
            raise StdoutFailed(exc) from None


class StderrProgress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.drawn = False

    def __call__(self, fraction: float, stage: str) -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * max(0.0, min(1.0, fraction)))
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}% {stage}"
        sys.stderr.write(line[:120].ljust(80))
        sys.stderr.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()
            self.drawn = False
