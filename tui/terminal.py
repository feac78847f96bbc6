"""The terminal going away must end the process, always.

Over SSH the terminal can vanish at any moment: the link drops (a hangup, SIGHUP), or
the pty is closed under a writer (EIO on output), or stdin reaches EOF. Textual's own
driver copes badly: its writer thread dies on EIO while its queue of 30 writes is
full, and at exit the main thread waits forever to put one more write in; its input
thread dies on EIO (and the app panics without saving) or spins on EOF. A process left
like that holds the model's memory (a whole GPU) until someone finds it.

:class:`GuardedDriver` turns each of those into one SIGHUP to this process, which the
app handles like a real hangup: save every tab (partial replies included), then exit.
:func:`exit_soon` is the last resort: once the data is on disk, the process ends within
a few seconds even if the shutdown does not finish.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from typing import Any

from textual.drivers.linux_driver import LinuxDriver

EXIT_GRACE = 3.0  # seconds a clean shutdown gets once the data is saved
_POLL_MASK = select.POLLHUP | select.POLLERR | select.POLLNVAL | getattr(select, "POLLRDHUP", 0)


def report_hangup() -> None:
    """Tell this process its terminal is gone, as the kernel does with a hangup. Safe
    from any thread: the signal is handled on the app's own loop."""
    try:
        os.kill(os.getpid(), signal.SIGHUP)
    except OSError:
        pass


class _GuardedFile:
    """The terminal's output file. A failed write means the terminal is gone: it is
    reported once, and later writes are dropped, so the writer thread keeps draining
    its queue and nobody blocks putting into it."""

    def __init__(self, file: Any) -> None:
        self._file = file
        self.lost = False

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            report_hangup()

    def write(self, text: str) -> int:
        if self.lost:
            return len(text)
        try:
            return self._file.write(text)
        except (OSError, ValueError):  # EIO, EPIPE, or a file closed under us
            self._lose()
            return len(text)

    def flush(self) -> None:
        if self.lost:
            return
        try:
            self._file.flush()
        except (OSError, ValueError):
            self._lose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class GuardedDriver(LinuxDriver):
    """Textual's Linux driver, with every way of losing the terminal reported as a
    hangup instead of a dead thread, a panic or a spin."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._file = _GuardedFile(self._file)
        self._watching = threading.Event()

    def start_application_mode(self) -> None:
        super().start_application_mode()
        self._watching.set()
        threading.Thread(target=self._watch, name="chat-tui-terminal-watch", daemon=True).start()

    def stop_application_mode(self) -> None:
        self._watching.clear()
        super().stop_application_mode()

    def _run_input_thread(self) -> None:
        try:
            self.run_input_thread()
        except OSError:  # EIO: the pty is gone; not a bug to panic over
            report_hangup()
        except BaseException:
            super()._run_input_thread()  # Textual's own handling (a panic with a traceback)

    def _watch(self) -> None:
        """Poll the terminal's files for a hangup, an error or EOF (a pipe or socket
        whose other end closed), without reading from them."""
        poller = select.poll()
        fds = {self.fileno}
        try:
            fds.add(self._file.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        for fd in fds:
            try:
                poller.register(fd, _POLL_MASK)
            except (OSError, ValueError):
                pass
        while self._watching.is_set():
            try:
                events = poller.poll(500)
            except OSError:
                events = []
            if any(mask & _POLL_MASK for _fd, mask in events):
                self._watching.clear()
                report_hangup()
                return


_exiting = threading.Lock()


def exit_soon(code: int, grace: float = EXIT_GRACE) -> None:
    """Call once the data is on disk: if the process is still alive ``grace`` seconds
    from now (a shutdown stuck on a terminal that is gone, a worker thread that cannot
    be interrupted), it ends with ``code`` regardless."""
    if not _exiting.acquire(blocking=False):
        return

    def last_resort() -> None:
        time.sleep(grace)
        try:
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)

    threading.Thread(target=last_resort, name="chat-tui-exit", daemon=True).start()
