"""Model swaps by keyboard alone: ``/model`` takes the SPEC grammar (``@bf16``,
``./other@8bit``), the picker (ctrl+l) has precision and device choices and takes a
server's URL, and ``/endpoint URL`` switches to a server."""

from __future__ import annotations

import socket

from textual.widgets import Select

from tui.screens.model_picker import ModelPicker

SIZE = (100, 30)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_model_takes_a_precision_and_a_model_at_a_precision(make_app, engine, ui) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "/model @bf16")
        await ui.wait_until(pilot, lambda: len(engine.loads) == 1, "the load")
        assert (engine.loads[-1].source, engine.loads[-1].dtype) == ("default", "bf16")
        await ui.send(pilot, "/model ./elsewhere@8bit")
        await ui.wait_until(pilot, lambda: len(engine.loads) == 2, "the second load")
        assert engine.loads[-1].source == "./elsewhere"
        assert engine.loads[-1].quantization == "8bit"
        await ui.send(pilot, "/model @fp8")
        error = ui.notes(app, "error")[-1]
        assert "@fp8" in error.message and len(engine.loads) == 2
        assert app.focused is app.main_screen.active_pane.prompt


async def test_the_picker_loads_at_the_chosen_precision_and_device(make_app, engine, ui) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+l")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ModelPicker), "the picker")
        screen = app.screen
        await pilot.press("tab")  # from the filter to the precision
        precision = screen.query_one("#picker-precision", Select)
        assert app.focused is precision
        await pilot.press("enter")  # open it
        await pilot.press("down", "down", "enter")  # as loaded -> fp32 -> bf16
        await ui.wait_until(pilot, lambda: precision.value == "bf16", "bf16 chosen")
        await pilot.press("tab")
        device = screen.query_one("#picker-device", Select)
        assert app.focused is device
        await pilot.press("enter", "down", "down", "enter")  # as loaded -> auto -> cpu
        await ui.wait_until(pilot, lambda: device.value == "cpu", "cpu chosen")
        await pilot.press("shift+tab", "shift+tab")  # back to the filter
        await pilot.press("enter")  # the highlighted model: the bundled one
        await ui.wait_until(pilot, lambda: len(engine.loads) == 1, "the load")
        spec = engine.loads[-1]
        assert (spec.source, spec.dtype, spec.device) == ("default", "bf16", "cpu")
        await ui.wait_until(
            pilot,
            lambda: app.focused is app.main_screen.active_pane.prompt,
            "the focus back at the prompt",
        )


async def test_a_url_in_the_picker_or_endpoint_switches_to_a_server(make_app, engine, ui) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"  # nothing listens: the load fails
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+l")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ModelPicker), "the picker")
        await ui.paste(pilot, url)
        assert f"[server] connect to {url}" in ui.screen_text(app)
        await pilot.press("enter")
        await ui.wait_until(pilot, lambda: ui.notes(app, "error"), "the server's answer")
        first = ui.notes(app, "error")[-1].message
        assert "No such folder" not in first and "127.0.0.1" in first
        assert "Still using fake-model" in first
        await ui.send(pilot, f"/endpoint {url}")
        await ui.wait_until(pilot, lambda: len(ui.notes(app, "error")) == 2, "the second")
        assert "127.0.0.1" in ui.notes(app, "error")[-1].message
        assert engine.loads == []  # the local model stayed as it was
        await ui.send(pilot, "/endpoint")
        assert "Give the server's URL" in ui.notes(app)[-1].message


async def test_the_picker_says_when_there_is_no_hub_cache(make_app, ui, monkeypatch) -> None:
    import huggingface_hub
    from textual.widgets import Static

    def missing():
        raise huggingface_hub.CacheNotFound("no cache", cache_dir="/nowhere")

    monkeypatch.setattr(huggingface_hub, "scan_cache_dir", missing)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+l")
        await ui.wait_until(pilot, lambda: isinstance(app.screen, ModelPicker), "the picker")
        note = app.screen.query_one("#picker-note", Static)
        await ui.wait_until(
            pilot, lambda: "no Hugging Face cache" in str(note.content), "the cache note"
        )


async def test_after_a_swap_the_status_line_has_no_figures_of_the_old_model(
    make_app, engine, ui
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ui.send(pilot, "hello")
        pane = app.main_screen.active_pane
        status = lambda: str(pane.query_one(".status").render())  # noqa: E731
        assert "40.0 tok/s" in status()
        await ui.send(pilot, "/model ./other")
        await ui.wait_until(pilot, lambda: app.controller.model.name == "other", "the swap")
        await ui.wait_until(pilot, lambda: "other" in status(), "the new model in the status")
        assert "tok/s" not in status(), status()
        await ui.send(pilot, "and now?")
        assert "40.0 tok/s" in status()  # this model's own figures
