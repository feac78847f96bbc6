"""First paint and model ready: chat-tui against a bare Textual app, in tmux.

Each round launches, in a fresh tmux session of 100x30, a bare Textual app (a Header, a
Static and a Footer, run the same way: ``python FILE``) and then ``chat-tui`` (``python
-m tui.cli``), and polls ``tmux capture-pane`` every 10 ms until the window shows its
footer (first paint), and for chat-tui also until the main screen (tabs, prompt, side
panel) replaces the start screen and until the status line names the loaded model
(model ready). Rounds alternate the two, so a busy machine slows both alike.

    python bench/first_paint.py [--rounds 7] [--model DIR]

Prints each figure's median and range, and the ratio chat-tui / bare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BARE = """
from textual.app import App
from textual.widgets import Footer, Header, Static


class Bare(App):
    BINDINGS = [("ctrl+q", "quit", "Quit")]

    def compose(self):
        yield Header()
        yield Static("bare textual app")
        yield Footer()


Bare().run()
"""


def _capture(session: str) -> str:
    done = subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
    )
    return done.stdout


def launch(command: list[str], marks: list[str], env: dict[str, str], limit: float = 120.0):
    """Seconds until each of ``marks`` is on screen (None if it never showed). The
    command runs under ``env`` (a running tmux server would otherwise give it its own
    environment, not ours)."""
    import shlex
    import uuid

    session = f"fp-{uuid.uuid4().hex[:12]}"
    settings = [f"{k}={v}" for k, v in env.items() if k.startswith(("CHAT_TUI_", "HF_", "PYTHON"))]
    shell = shlex.join(["env", *settings, *command])
    started = time.monotonic()
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", shell],
        env=env,
        check=True,
    )
    found: list[float | None] = [None] * len(marks)
    try:
        while time.monotonic() - started < limit and None in found:
            screen = _capture(session)
            now = time.monotonic() - started
            for index, mark in enumerate(marks):
                if found[index] is None and mark in screen:
                    found[index] = now
            time.sleep(0.01)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--model", default=None, help="model for chat-tui (default: bundled)")
    ns = parser.parse_args()
    from bench.engine import machine

    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare.py"
        bare.write_text(BARE)
        env = dict(
            os.environ,
            CHAT_TUI_DATA_DIR=f"{tmp}/data",
            CHAT_TUI_CONFIG_DIR=f"{tmp}/config",
            CHAT_TUI_STATE_DIR=f"{tmp}/state",
            HF_HUB_OFFLINE="1",
            CHAT_TUI_CACHE_DIR=os.environ.get("CHAT_TUI_CACHE_DIR", f"{tmp}/cache"),
            PYTHONPATH=str(ROOT),
            TERM="xterm-256color",
        )
        chat = [sys.executable, "-m", "tui.cli"] + (["--model", ns.model] if ns.model else [])
        bare_times, paint_times, main_times, ready_times = [], [], [], []
        for _ in range(ns.rounds):
            (b,) = launch([sys.executable, str(bare)], ["^q Quit"], env)
            paint, shown, ready = launch(chat, ["^q Quit", "backend", "· cpu · ctx"], env)
            pairs = (
                (bare_times, b),
                (paint_times, paint),
                (main_times, shown),
                (ready_times, ready),
            )
            for values, value in pairs:
                if value is not None:
                    values.append(value)
            print(f"bare {b}  chat-tui paint {paint}  main {shown}  ready {ready}", flush=True)

    def show(name: str, values: list[float]) -> str:
        if not values:
            return f"{name:22s}  never"
        return (
            f"{name:22s}{statistics.median(values):8.2f} s  "
            f"({min(values):.2f}–{max(values):.2f}, n={len(values)})"
        )

    print(f"\nmachine: {machine()}")
    print(show("bare Textual app", bare_times))
    print(show("chat-tui first paint", paint_times))
    print(show("chat-tui main screen", main_times))
    print(show("chat-tui model ready", ready_times))
    if bare_times and paint_times:
        ratio = statistics.median(paint_times) / statistics.median(bare_times)
        main = statistics.median(main_times) / statistics.median(bare_times) if main_times else 0
        print(f"summary first_paint_ratio={ratio:.2f} main_screen_ratio={main:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
