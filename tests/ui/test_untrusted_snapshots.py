"""In the app, a reply's snapshot describes and never authorizes: replaying a reply
made by another model names it and asks before loading; one made with
``trust_remote_code`` asks, naming the folder and saying its code will run, and
replays without it unless the user allows it there and then. Comparing with another
model never inherits the loaded model's permission."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import evil_marker
from tui.engine.spec import ModelSpec
from tui.screens.comparison import ComparisonScreen
from tui.screens.dialogs import ChoiceScreen


@pytest.fixture
def marker(evil_model_dir: Path) -> Path:
    path = evil_marker(evil_model_dir)
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)


def _mailed(dirs, spec: dict) -> str:
    store = dirs.store()
    conv = store.new(name="mailed")
    conv.append("user", "Hello there")
    conv.append("assistant", "I am fine.", provenance={"format": 1, "spec": spec})
    store.save(conv)
    dirs.set_open_tabs([conv.id])
    return conv.id


@pytest.fixture
def llama_app(tiny_llama_dir: Path, make_app):
    """``llama_app()``: the app on the tiny llama, loaded with trust_remote_code (as if
    ``--trust-remote-code`` was given for it), made after the test wrote its files."""
    return lambda: make_app(
        spec=ModelSpec(source=str(tiny_llama_dir), dtype="fp32", trust_remote_code=True),
        engine=None,
        load_on_start=True,
    )


async def _question(app, pilot, ui) -> str:
    await ui.wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen), "the question")
    return app.screen.question


async def test_replaying_a_mailed_reply_asks_and_runs_no_code(
    llama_app, dirs, ui, evil_model_dir: Path, marker: Path
) -> None:
    _mailed(dirs, {"source": str(evil_model_dir), "trust_remote_code": True})
    app = llama_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.wait_until(pilot, app.controller.ready.is_set, "the model", timeout=120)
        pane = app.main_screen.active_pane
        assert pane.conversation.name == "mailed"

        await ui.send(pilot, "/replay")
        shown = await _question(app, pilot, ui)
        assert "not the loaded model" in shown and "trust_remote_code" in shown
        assert "with your rights" in shown
        await ui.press(pilot, "escape")  # cancel: nothing loads
        assert not pane.side_task and not marker.exists()

        await ui.send(pilot, "/replay")
        await _question(app, pilot, ui)
        await ui.press(pilot, "r")  # replay without its code
        await ui.wait_until(pilot, lambda: not pane.side_task, "the replay", timeout=60)
        failed = ui.notes(app, "error")[-1]
        assert failed.title == "Not replayed" and "ships its own code" in failed.message
        assert not marker.exists()

        # the only way its code runs: the user allows it, here, naming the folder
        await ui.send(pilot, "/replay")
        await _question(app, pilot, ui)
        await ui.press(pilot, "a")
        await ui.wait_until(pilot, lambda: not pane.side_task, "the replay", timeout=60)
        assert marker.exists()
        # the loaded model is the one it was
        assert app.controller.model.spec.source != str(evil_model_dir)


async def test_comparing_with_a_model_that_ships_code_does_not_inherit_trust(
    llama_app, dirs, ui, evil_model_dir: Path, marker: Path
) -> None:
    app = llama_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.wait_until(pilot, app.controller.ready.is_set, "the model", timeout=120)
        await ui.send(pilot, "/set do_sample=false max_new_tokens=4")
        await ui.send(pilot, "Hello")
        await ui.send(pilot, f"/compare {evil_model_dir}")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ComparisonScreen), "compare")
        screen = app.screen
        await ui.wait_until(pilot, lambda: screen.finished, "the comparison", timeout=120)
        await pilot.pause()
        assert "ships its own code" in ui.screen_text(app)
        assert not marker.exists()


async def test_a_reply_by_the_loaded_model_replays_without_a_question(
    make_app, dirs, ui, tiny_llama_dir: Path
) -> None:
    _mailed(
        dirs,
        {"source": str(tiny_llama_dir), "dtype": "fp32", "chat_template_file": "/etc/shadow"},
    )
    app = make_app(
        spec=ModelSpec(source=str(tiny_llama_dir), dtype="fp32"), engine=None, load_on_start=True
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.wait_until(pilot, app.controller.ready.is_set, "the model", timeout=120)
        pane = app.main_screen.active_pane
        await ui.send(pilot, "/replay")
        await ui.wait_until(pilot, lambda: not pane.side_task, "the replay", timeout=60)
        assert not isinstance(app.screen, ChoiceScreen)
        said = [n.message for n in ui.notes(app) if n.title == "Replay"]
        assert any("template file" in s for s in said)
