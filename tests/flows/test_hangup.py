"""The terminal going away ends the app, always: the real app in a pseudo-terminal,
the terminal closed at random moments (start-up, model load, a reply streaming, idle)
over 20 trials; every process gone within 5 s and every conversation intact.
``bench/hangup.py`` runs the same trial 100 times."""

from __future__ import annotations

import random

import pytest

from bench.hangup import LIMIT, MOMENTS, run_trial

TRIALS = 20


@pytest.mark.parametrize("number", range(TRIALS))
def test_closing_the_terminal_ends_the_app(number, tiny_llama_dir, test_env, tmp_path):
    moment = MOMENTS[number % len(MOMENTS)]
    delay = random.Random(number).uniform(0, 1.5)
    trial = run_trial(str(tiny_llama_dir), moment, delay, test_env, tmp_path)
    assert trial.seconds is not None, f"still alive 30 s after the hangup ({moment})"
    assert trial.seconds < LIMIT, f"took {trial.seconds:.1f} s to go ({moment})"
    assert trial.files_ok, trial.note
    if moment in ("streaming", "idle"):
        assert not trial.note, trial.note
