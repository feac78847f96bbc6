"""Live memory: process RAM, system free, accelerator allocated/reserved, model weights
and the active conversation's KV cache, with a sparkline of RAM over time."""

from __future__ import annotations

from collections import deque

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from ..engine.memory import human_bytes
from ..worker_messages import MemorySample

HISTORY = 120


class MemoryMeter(Vertical):
    DEFAULT_CSS = """
    MemoryMeter { height: auto; }
    MemoryMeter Sparkline { height: 2; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rss_history: deque[float] = deque([0.0] * HISTORY, maxlen=HISTORY)
        self.remote = False

    def compose(self) -> ComposeResult:
        yield Static("Memory", classes="panel-title")
        yield Static("sampling…", classes="memory-lines")
        yield Sparkline(list(self.rss_history), summary_function=max)

    def show(self, sample: MemorySample) -> None:
        snap = sample.snapshot
        self.rss_history.append(float(snap.process_rss))
        lines = [
            f"RAM app  {human_bytes(snap.process_rss)}",
            f"free     {human_bytes(snap.system_available)} / {human_bytes(snap.system_total)}",
        ]
        for acc in snap.accelerators:
            lines.append(f"{acc.device:<8} {human_bytes(acc.allocated)} allocated")
            lines.append(f"{'':<8} {human_bytes(acc.reserved)} reserved")
        if self.remote:
            weights = "remote (on the server)"
        else:
            weights = human_bytes(sample.weights) if sample.weights else "—"
        lines.append(f"weights  {weights}")
        lines.append(f"KV cache {human_bytes(sample.cache)} (this tab)")
        if sample.all_caches > sample.cache:
            lines.append(f"{'':<9}{human_bytes(sample.all_caches)} (all tabs)")
        self.query_one(".memory-lines", Static).update("\n".join(lines))
        self.query_one(Sparkline).data = list(self.rss_history)
