"""The line under a conversation: the model (name, precision, device), how much of its
context the conversation uses, the last reply's speed, and what the pane is doing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from textual.widgets import Static

from .. import safe_text

if TYPE_CHECKING:
    from ..engine.protocol import ModelInfo


class Speed(Protocol):
    """A reply's figures: its stats while in memory, the stored message after."""

    time_to_first_token: float | None
    tokens_per_second: float | None


@dataclass(frozen=True)
class Status:
    """What the status line says, gathered by the pane."""

    model: ModelInfo | None
    loading: str = ""  # without a model: the controller's status ("loading … (40%)")
    context_used: int = 0  # tokens: the prompt and the reply so far
    last: Speed | None = None  # the last reply
    outside_context: int = 0  # oldest messages the model did not see last turn
    unsaved: bool = False
    side_task: str | None = None  # "comparing", "replaying"
    side_status: str = ""  # its progress
    waiting: bool = False  # for the model (a comparison, a reply that runs alone)
    generating: bool = False
    waiting_for: str = ""  # what it waits for, as the engine says it
    streaming: int = 0  # replies streaming now in every tab

    def text(self) -> str:
        model, last = self.model, self.last
        parts: list[str] = []
        if model is not None:
            label = model.spec.precision_label
            precision = label if label == model.dtype else f"{label}/{model.dtype}"
            parts += [model.name.removesuffix(" (bundled)"), precision, model.device]
            limit, used = model.context_limit, self.context_used
            parts.append(f"ctx {used:,}/{limit:,}" if limit else f"ctx {used:,}")
        else:
            parts.append(self.loading or "no model")
        if last is not None and last.time_to_first_token:
            parts.append(f"first token {last.time_to_first_token * 1000:.0f} ms")
        if last is not None and last.tokens_per_second:
            parts.append(f"{last.tokens_per_second:.1f} tok/s")
        if self.outside_context:
            parts.append(f"{self.outside_context} earlier msgs outside the context")
        if self.unsaved:
            parts.append("NOT SAVED")
        if self.side_task:
            parts.append(f"{self.side_status or self.side_task + '…'} (esc stops)")
        elif self.waiting:
            parts.append(f"waiting for {self.waiting_for or 'the model'}… (esc stops)")
        elif self.generating:
            parts.append("generating… (esc stops)")
        if self.streaming > 1:
            parts.append(f"{self.streaming} replies streaming")
        return " · ".join(parts)


class StatusLine(Static):
    """Shows a :class:`Status` on one line (the model's name and the rest sanitized)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", markup=False, **kwargs)  # type: ignore[arg-type]

    def show(self, status: Status) -> None:
        self.update(safe_text.one_line(status.text()))
