"""Kill a writer with SIGKILL at random points: every file must stay whole."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tui.store import SessionStore

ROOT = Path(__file__).resolve().parents[2]
KILLS = 200

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


def check(store: SessionStore) -> int:
    conv = store.load("victim")  # parses, or the test fails
    content = conv.transcript[-1].content
    version_text, body, end = content.split(":")
    version = int(version_text)
    assert end == "end" and body == "x" * (1 + (version * 7919) % 20000) if version else True
    return version


def test_sigkill_never_leaves_a_broken_file(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    conv = store.new(name="victim")
    conv.id = "victim"
    conv.append("user", "0:x:end")
    store.save(conv)
    rng = random.Random(1234)
    last = 0
    advanced = 0
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, 0.03))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        version = check(store)
        assert version >= last  # old or new, never older than what was there
        advanced += version > last
        last = version
    assert advanced > KILLS // 2  # the kills really landed mid-way through writing
    infos, problems = store.scan()
    assert problems == [] and [i.id for i in infos] == ["victim"]
