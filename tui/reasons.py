"""Why a reply ended: one enum for the engine, the store, the app and the CLI.

A ``StrEnum``: members compare equal to their text, which is what conversation files
hold (``stop_reason = "eos"``), so files written by any version read back the same.
"""

from __future__ import annotations

from enum import StrEnum


class StopReason(StrEnum):
    EOS = "eos"  # the model ended its reply (or a stop string was reached)
    LENGTH = "length"  # max_new_tokens reached
    STOPPED = "stopped"  # the user stopped it (Esc, /stop)
    INTERRUPTED = "interrupted"  # the process was interrupted (Ctrl-C, SIGTERM, SIGHUP)
    ERROR = "error"  # generation or the connection failed part way

    @property
    def cut_short(self) -> bool:
        """The reply did not end by itself: the text is partial."""
        return self in (StopReason.STOPPED, StopReason.INTERRUPTED, StopReason.ERROR)


def cut_short(reason: str | None) -> bool:
    """``True`` for a stored reason that marks a partial reply."""
    return reason in (StopReason.STOPPED, StopReason.INTERRUPTED, StopReason.ERROR)
