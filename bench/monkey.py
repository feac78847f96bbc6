"""Random keys through the whole app: no key sequence may crash it or lose a word.

A seeded stream of keys a person could press (the keymap's keys, printable text,
arrows, Tab and shift+Tab, Esc, Enter, ctrl+ combinations, pastes of sentences and of
slash commands) goes through Textual's Pilot to the real app (the tests' scripted
engine stands in for the model), across every screen the keys reach: several tabs
with versions, help, the model picker, the session browser, comparisons, dialogs, the
palette, the side panel. After the run the app must still be running, no worker may
have failed, every conversation file must read back, and every message that was ever
on screen must be in its conversation's file (or, if it was deleted, in the trash).

    python bench/monkey.py [--keys 50000] [--seeds N] [--size 100x30]

The suite runs 400 keys under each of two fixed seeds (``tests/ui/test_monkey.py``);
this runs many with fresh seeds and prints keys per second, and for a failure the seed
and the keys that led to it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAV = [
    "up", "down", "left", "right", "pageup", "pagedown", "home", "end",
    "tab", "shift+tab", "escape", "escape", "enter", "backspace", "delete",
]  # fmt: skip
CTRL = [
    "ctrl+n", "ctrl+w", "ctrl+pagedown", "ctrl+pageup", "alt+left", "alt+right",
    "ctrl+r", "ctrl+e", "ctrl+g", "ctrl+y", "ctrl+t", "ctrl+o", "ctrl+l", "ctrl+b",
    "ctrl+p", "f1", "ctrl+d", "ctrl+a", "ctrl+k", "ctrl+up", "ctrl+down",
    "alt+1", "alt+2", "alt+3", "alt+9", "ctrl+j",
]  # fmt: skip
TEXT = "abcdefghijklmnopqrstuvwxyz     ,.?!'-/:@0123456789"
PASTES = [
    "Summarize our chat so far",
    "Tell me about rivers and valleys",
    "/compare @bf16",
    "/replay",
    "/regenerate",
    "/clear",
    "/save monkey notes",
    "/rename A new title",
    "/set temperature=0.7 max_new_tokens=20",
    "/system Be brief.",
    "/stats",
    "/model @bf16",
    "/new",
    "/copy",
    "/continue",
    "//not a command",
    "/nosuchcommand",
    "line one\nline two",
    "\x1b[31mred\x1b[0m \u202e reversed",
]
NEVER = {"ctrl+q", "ctrl+c"}  # quitting ends the run; it is checked at the end instead


def next_key(rng: random.Random) -> str:
    """One key (or ``paste:TEXT``), weighted as a person types: mostly text."""
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(TEXT)
    if roll < 0.75:
        return rng.choice(NAV)
    if roll < 0.95:
        return rng.choice(CTRL)
    return "paste:" + rng.choice(PASTES)


@dataclass
class Outcome:
    seed: int
    keys: list[str] = field(default_factory=list)
    problem: str = ""
    seconds: float = 0.0
    quit_at: int | None = None  # the keys quit the app (a run's end, not a failure)

    @property
    def ok(self) -> bool:
        return not self.problem


def _seen(app) -> set[tuple[str, str]]:
    """(conversation id, message id) of every finished message on screen now."""
    from tui.widgets.chat_pane import ChatPane
    from tui.widgets.message_view import MessageView

    found = set()
    main = app._main
    if main is None:
        return found
    for pane in main.query(ChatPane):
        known = {m.id for m in pane.conversation.messages}
        for view in pane.query(MessageView):
            if not view.streaming and view.message.id in known:
                found.add((pane.conversation.id, view.message.id))
    return found


def check_files(data_dir: Path, seen: set[tuple[str, str]]) -> str:
    """'' if every conversation file reads and holds every message seen; else why."""
    from tui.store import SessionStore
    from tui.store.codec import loads_bytes

    store = SessionStore(data_dir)
    infos, problems = store.scan()
    if problems:
        return f"unreadable files: {problems}"
    on_disk: dict[str, set[str]] = {}
    for info in infos:
        on_disk[info.id] = {m.id for m in store.load(info.id).messages}
    trash = store.folder / ".trash"
    if trash.is_dir():
        for path in trash.iterdir():
            conv = loads_bytes(path.read_bytes(), str(path))
            on_disk.setdefault(path.name[: -len(".toml")].rpartition("-")[0], set()).update(
                m.id for m in conv.messages
            )
    lost = sorted((c, m) for c, m in seen if m not in on_disk.get(c, set()))
    return f"messages on screen but not on disk: {lost[:5]}" if lost else ""


def key_event(key: str):
    """The event a terminal sends for ``key`` (as Pilot makes it)."""
    import unicodedata

    from textual import events
    from textual.app import _character_to_key, _get_unicode_name_from_key
    from textual.keys import REPLACED_KEYS

    if len(key) == 1 and not key.isalnum():
        key = _character_to_key(key)
    original = REPLACED_KEYS.get(key, key)
    try:
        char = unicodedata.lookup(_get_unicode_name_from_key(original))
    except KeyError:
        char = key if len(key) == 1 else None
    return events.Key(key, char)


async def drive(
    app, pilot, seed: int, count: int, data_dir: Path, outcome: Outcome | None = None
) -> Outcome:
    """Send ``count`` keys from ``seed`` into a running app, in bursts of one to eight
    without waiting between them (a person typing fast, a held arrow key), the app let
    run after each burst; then check it and its files."""
    from textual import events

    rng = random.Random(seed)
    outcome = outcome or Outcome(seed)
    seen: set[tuple[str, str]] = set()
    started = time.monotonic()
    app.animation_level = "none"
    while len(outcome.keys) < count:
        burst = [next_key(rng) for _ in range(min(rng.randint(1, 8), count - len(outcome.keys)))]
        outcome.keys.extend(burst)
        try:
            for key in burst:
                if key.startswith("paste:"):
                    event = events.Paste(key[len("paste:") :])
                else:
                    event = key_event(key)
                event.set_sender(app)
                app._driver.send_message(event)
            await asyncio.wait_for(pilot.pause(), 30)
        except Exception as exc:  # the app hung, or raised through Pilot
            outcome.problem = f"{type(exc).__name__} after key {len(outcome.keys)}: {exc}"
            break
        if not app.is_running:
            if app.return_code == 0 and not getattr(app, "crashed", False):
                # the keys chose Quit (the palette's entry, /q): it saves every tab
                outcome.quit_at = len(outcome.keys)
            else:
                outcome.problem = f"the app stopped after key {len(outcome.keys)}"
            break
        failed = [n for n in getattr(app, "notes", []) if n.title == "Error"]
        if failed:
            outcome.problem = f"a worker failed after key {len(outcome.keys)}: {failed[0].message}"
            break
        if len(outcome.keys) % 10 == 0:
            seen |= _seen(app)
    if app.is_running:
        seen |= _seen(app)
    outcome.seconds = time.monotonic() - started
    if not outcome.problem:
        if app.is_running:
            # quit as a person does: everything is saved (an unsaved tab would ask)
            await app.action_quit()
            for _ in range(500):
                if not app.is_running:
                    break
                await asyncio.sleep(0.01)
        outcome.problem = check_files(data_dir, seen)
    return outcome


def describe(outcome: Outcome, last: int = 40) -> str:
    if outcome.ok:
        quit = f" (they chose Quit after key {outcome.quit_at}; saved)" if outcome.quit_at else ""
        return f"seed {outcome.seed}: {len(outcome.keys)} keys ok{quit}"
    tail = outcome.keys[-last:]
    return f"seed {outcome.seed}: {outcome.problem}\n  last keys: {tail!r}"


async def one_run(seed: int, keys: int, size: tuple[int, int]) -> Outcome:
    """A fresh app on fresh folders, the scripted engine, ``keys`` keys."""
    from tests.ui.conftest import FakeEngine
    from tui.app import ChatApp

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("DATA", "CONFIG", "STATE"):
            os.environ[f"CHAT_TUI_{name}_DIR"] = f"{tmp}/{name.lower()}"
        os.chdir(tmp)  # an export with the default folder lands here
        engine = FakeEngine(delay=0.002)
        app = ChatApp(engine=engine, load_on_start=False, data_dir=f"{tmp}/data")
        app.notes = []
        original = app.notify

        def notify(message, *, title="", severity="information", **rest):
            from tests.ui.conftest import Note

            app.notes.append(Note(str(message), title, severity))
            return original(message, title=title, severity=severity, **rest)

        app.notify = notify
        outcome = Outcome(seed)  # shared, so the keys are known if the app raises
        try:
            async with app.run_test(size=size) as pilot:
                return await drive(app, pilot, seed, keys, Path(tmp) / "data", outcome)
        except Exception as exc:
            outcome.problem = f"the app raised {type(exc).__name__}: {exc}"
            print(traceback.format_exc(limit=8), file=sys.stderr)
            return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=50000, help="keys in all")
    parser.add_argument("--per-run", type=int, default=2000, help="keys per app run")
    parser.add_argument("--size", default="100x30")
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: fresh)")
    ns = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    width, height = (int(v) for v in ns.size.split("x"))
    seed = ns.seed if ns.seed is not None else random.SystemRandom().randrange(10**9)
    done, failures, started = 0, [], time.monotonic()
    seeds = []
    while done < ns.keys:
        count = min(ns.per_run, ns.keys - done)
        outcome = asyncio.run(one_run(seed, count, (width, height)))
        seeds.append(seed)
        done += len(outcome.keys)
        print(describe(outcome), flush=True)
        if not outcome.ok:
            failures.append(outcome)
        seed += 1
    seconds = time.monotonic() - started
    from bench.engine import machine

    print(f"\nmachine: {machine()}")
    print(f"{'keys':>8}{'runs':>6}{'failed':>8}{'keys/s':>8}  seeds")
    print(f"{done:8d}{len(seeds):6d}{len(failures):8d}{done / seconds:8.1f}  "
          f"{seeds[0]}..{seeds[-1]}")  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
