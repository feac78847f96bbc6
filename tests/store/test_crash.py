"""Kill a writer with SIGKILL at random points: every file must stay whole.

Twenty kills, most landing mid-write, catch a non-atomic save (it breaks the file on
most of them); ``bench/kills.py`` runs a thousand for the rare interleavings."""

from __future__ import annotations

import random
from pathlib import Path

from bench.kills import run_kills
from tui.store import SessionStore

KILLS = 20


def test_sigkill_never_leaves_a_broken_file(tmp_path: Path) -> None:
    result = run_kills(tmp_path, KILLS, random.Random(1234))
    assert result.broken == []
    # the kills landed while it was writing (most do; a busy machine delays a few)
    assert result.advanced > KILLS // 4
    infos, problems = SessionStore(tmp_path).scan()
    assert problems == [] and [i.id for i in infos] == ["victim"]
