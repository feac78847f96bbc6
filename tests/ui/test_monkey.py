"""Random keys through the whole app (``bench/monkey.py``): under fixed seeds, keys a
person could press, in bursts, on every screen they reach. The app must keep running
with no failed worker, every conversation file must read back, and every message that
was on screen must be on disk at the end.

400 keys a seed: with 1,000, every screen, focus target and tab count the keys ever
reached was first reached by key 160 (seed 11: the last, a text prompt, at key 140;
seed 12: the side panel at 160), so the other 600 keys of each run added time, not
places. ``bench/monkey.py`` runs many more keys with fresh seeds."""

from __future__ import annotations

import pytest

from bench.monkey import describe, drive


@pytest.mark.parametrize(("seed", "size", "keys"), [(11, (80, 24), 400), (12, (100, 30), 400)])
async def test_random_keys_never_crash_or_lose_a_word(
    make_app, engine, dirs, ui, seed, size, keys, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # an export to the default folder lands here
    engine.delay = 0.002
    app = make_app()
    async with app.run_test(size=size) as pilot:
        outcome = await drive(app, pilot, seed, keys, dirs.data)
    assert outcome.ok, describe(outcome)
    assert len(outcome.keys) == keys, "the keys chose Quit early: pick a seed that does not"


async def test_random_keys_with_a_real_tiny_model(
    make_app, dirs, ui, tiny_llama_dir, tmp_path, monkeypatch
) -> None:
    from tui.engine.spec import ModelSpec

    monkeypatch.chdir(tmp_path)
    app = make_app(
        spec=ModelSpec(source=str(tiny_llama_dir), dtype="fp32"),
        engine=None,
        load_on_start=True,
        settings_args=["max_new_tokens=12"],
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await ui.wait_until(pilot, app.controller.ready.is_set, "the model", timeout=120)
        outcome = await drive(app, pilot, 21, 150, dirs.data)
    assert outcome.ok, describe(outcome)
