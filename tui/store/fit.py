"""A conversation that outgrows its file: the longest texts are cut, with a marker.

A conversation file is read back only up to :data:`~.schema.MAX_FILE_BYTES` (a larger
file is refused as hostile), so a conversation is never written larger than that. When
several long replies (each within the reply bound) together pass it, the longest texts
are cut where they are, each keeping its beginning and a marker that says how much was
cut and why, until the file fits: every other message is still saved, and the window
shows what the file holds. Nothing is cut below :data:`KEEP_CHARS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .model import ChatMessage, Conversation
from .schema import MAX_FILE_BYTES

KEEP_CHARS = 16 * 1024  # a cut text keeps at least its first 16 Ki characters
SLACK = 4096  # room for the markers and the escaping of what stays
MAX_ROUNDS = 64  # each round cuts one text; a conversation needing more is refused


@dataclass(frozen=True)
class Cut:
    """``chars`` characters were cut from the end of a message's ``part``."""

    message_id: str
    part: str  # "content" or "reasoning"
    chars: int


def marker(chars: int, limit: int) -> str:
    return (
        f"\n\n[… {chars:,} more characters were cut here: the conversation reached "
        f"its file's limit of {limit // (1024 * 1024)} MiB]"
    )


def _longest(conv: Conversation) -> tuple[ChatMessage, str, int] | None:
    best: tuple[ChatMessage, str, int] | None = None
    for message in conv.messages:
        for part in ("content", "reasoning"):
            size = len(getattr(message, part) or "")
            if size > KEEP_CHARS and (best is None or size > best[2]):
                best = (message, part, size)
    return best


def fit(
    conv: Conversation, limit: int, encode: Callable[[Conversation], bytes], data: bytes
) -> tuple[list[Cut], bytes]:
    """Cut the longest texts of ``conv`` (in place) until its encoding is at most
    ``limit`` bytes; ``data`` is its encoding now. The cuts made and the encoding after
    them. If it cannot fit (no text left above :data:`KEEP_CHARS`), it is left as far
    as it got and the caller refuses to write."""
    cuts: list[Cut] = []
    for _ in range(MAX_ROUNDS):
        over = len(data) - limit
        if over <= 0:
            break
        found = _longest(conv)
        if found is None:
            break
        message, part, size = found
        # every character stored takes at least one byte: cutting ``over`` of them
        # frees at least ``over`` bytes
        keep = max(KEEP_CHARS, size - over - SLACK)
        text = getattr(message, part)
        setattr(message, part, text[:keep] + marker(size - keep, limit))
        cuts.append(Cut(message.id, part, size - keep))
        data = encode(conv)
    return cuts, data


def describe(cuts: list[Cut], limit: int = MAX_FILE_BYTES) -> str:
    """One notice for the cuts of a save."""
    chars = sum(cut.chars for cut in cuts)
    if len(cuts) == 1:
        texts, marked = "its longest text was", "it is marked where it was cut"
    else:
        texts, marked = f"its {len(cuts)} longest texts were", "each is marked where it was cut"
    return (
        f"This conversation reached its file's limit ({limit >> 20} MiB): {texts} cut "
        f"to fit ({chars:,} characters) and {marked}; everything else is saved. Start a "
        "new conversation (ctrl+n) to go on."
    )
