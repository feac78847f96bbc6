"""The app switches one conversation between the local model and an endpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tui.app import ChatApp
from tui.engine.spec import ModelSpec
from tui.widgets.settings_panel import SettingsPanel


async def wait_for(condition, timeout: float = 120) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_switch_between_local_and_endpoint(
    serve, tiny_llama_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("CHAT_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("CHAT_TUI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-saved")
    local_spec = ModelSpec(source=str(tiny_llama_dir))
    app = ChatApp(spec=local_spec, data_dir=str(tmp_path / "data"))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(app.controller.ready.is_set)
        pane = app.main_screen.active_pane
        pane.conversation.settings = {"do_sample": False, "max_new_tokens": 4}

        async def ask(text: str):
            before = len(pane.conversation.transcript)
            await pane.send(text)
            await wait_for(
                lambda: not pane.generating and len(pane.conversation.transcript) == before + 2
            )
            return pane.conversation.transcript[-1]

        local_reply = await ask("hello local")
        assert local_reply.stop_reason in ("eos", "length") and not app.controller.on_endpoint

        panel = app.main_screen.query_one(SettingsPanel)
        panel.post_message(
            SettingsPanel.Applied(
                ModelSpec(source=serve["model"]), "", [], "endpoint", serve["url"]
            )
        )
        await wait_for(lambda: app.controller.on_endpoint and app.controller.model is not None)
        await pilot.pause()
        remote_reply = await ask("hello server")
        assert remote_reply.error is None and remote_reply.new_tokens == 4
        assert pane.conversation.model["endpoint"] == serve["url"]
        app.main_screen.sample_memory()
        await wait_for(
            lambda: "remote" in str(app.main_screen.query_one("#memory .memory-lines").render())
        )

        panel.post_message(SettingsPanel.Applied(local_spec, "", [], "local", ""))
        await wait_for(lambda: not app.controller.on_endpoint)
        back = await ask("local again")
        assert back.stop_reason in ("eos", "length")
        assert [m.role for m in pane.conversation.transcript] == ["user", "assistant"] * 3

    saved = app.sessions.store.load(pane.conversation.id)
    assert len(saved.transcript) == 6
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"sk-never-saved" not in path.read_bytes()
