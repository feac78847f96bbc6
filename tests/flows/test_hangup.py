"""The terminal going away ends the app, always: the real app in a pseudo-terminal,
the terminal closed once in each phase (start-up, model load, a reply streaming, idle);
the process gone within 5 s and every conversation intact.

One trial per phase is what catches a defect here: each phase has its own way to hang
(the load's import lock, a worker thread mid-generation, the idle event loop), and a
phase that hangs does so on every trial. The many trials with random moments that find
rare interleavings are ``bench/hangup.py`` (100 by default)."""

from __future__ import annotations

import random

import pytest

from bench.hangup import LIMIT, MOMENTS, run_trial


@pytest.mark.parametrize("number", range(len(MOMENTS)), ids=MOMENTS)
def test_closing_the_terminal_ends_the_app(number, tiny_llama_dir, test_env, tmp_path):
    moment = MOMENTS[number]
    delay = random.Random(number).uniform(0, 1.5)
    trial = run_trial(str(tiny_llama_dir), moment, delay, test_env, tmp_path)
    assert trial.seconds is not None, f"still alive 30 s after the hangup ({moment})"
    assert trial.seconds < LIMIT, f"took {trial.seconds:.1f} s to go ({moment})"
    assert trial.files_ok, trial.note
    if moment in ("streaming", "idle"):
        assert not trial.note, trial.note
