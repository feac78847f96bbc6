"""Kill a writer with SIGKILL at random moments; every conversation file must stay whole.

Each trial starts a process that saves one conversation over and over (each save a
different size), kills it at a random moment within 30 ms of it starting to write, and
reads the file back: it must parse, and hold the version from before the kill or a
later one, never a mix. ``tests/store/test_crash.py`` runs 20 trials; this runs many.

    python bench/kills.py [--trials 1000] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui.store import SessionStore

ROOT = Path(__file__).resolve().parents[1]

WRITER = r"""
import sys
from tui.store import SessionStore
store = SessionStore(sys.argv[1])
conv = store.load("victim")
version = int(conv.transcript[-1].content.split(":")[0])
print("ready", flush=True)
while True:
    version += 1
    size = 1 + (version * 7919) % 20000
    conv.messages[-1].content = f"{version}:" + ("x" * size) + ":end"
    conv.touch()
    store.save(conv)
"""


def make_victim(root: Path) -> SessionStore:
    store = SessionStore(root)
    conv = store.new(name="victim")
    conv.id = "victim"
    conv.append("user", "0:x:end")
    store.save(conv)
    return store


def version_on_disk(store: SessionStore) -> int:
    """The saved version; raises (or fails an assert) if the file is not whole."""
    conv = store.load("victim")  # parses, or raises
    version_text, body, end = conv.transcript[-1].content.split(":")
    version = int(version_text)
    assert end == "end" and (body == "x" * (1 + (version * 7919) % 20000) if version else True)
    return version


@dataclass
class Kills:
    trials: int
    advanced: int  # kills after which a newer version was on disk: they landed mid-run
    broken: list[str]


def run_kills(root: Path, trials: int, rng: random.Random) -> Kills:
    """``trials`` kills of a writer on a fresh conversation in ``root``."""
    store = make_victim(root)
    last, advanced, broken = 0, 0, []
    for number in range(trials):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            proc.kill()
            raise RuntimeError("the writer did not start")
        time.sleep(rng.uniform(0, 0.03))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        try:
            version = version_on_disk(store)
        except Exception as exc:
            broken.append(f"trial {number}: {type(exc).__name__}: {exc}")
            continue
        if version < last:
            broken.append(f"trial {number}: version {version} after {last}")
        advanced += version > last
        last = max(last, version)
    return Kills(trials, advanced, broken)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    ns = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_kills(Path(tmp), ns.trials, random.Random(ns.seed))
    from tui.engine.devices import cpu_name

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'trials':>8}{'mid-run':>10}{'broken':>8}{'seconds':>10}")
    print(f"{result.trials:8d}{result.advanced:10d}{len(result.broken):8d}"
          f"{time.monotonic() - started:10.1f}")  # fmt: skip
    for line in result.broken[:20]:
        print("  " + line)
    return 1 if result.broken else 0


if __name__ == "__main__":
    sys.exit(main())
