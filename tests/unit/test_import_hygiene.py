"""The engine, the store and the CLI module import without Textual, torch or
transformers: they stay usable without a terminal, and the UI paints first."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("textual", "torch", "transformers")


def test_engine_and_cli_import_no_ui_and_no_model_libraries() -> None:
    code = (
        "import json, sys\n"
        "import tui.engine, tui.engine.local, tui.engine.loader, tui.engine.generation\n"
        "import tui.engine.protocol, tui.engine.controller, tui.engine.remote\n"
        "import tui.engine.libs, tui.engine.devices, tui.engine.settings\n"
        "import tui.engine.compare, tui.engine.replay, tui.engine.provenance\n"
        "import tui.cli, tui.store, tui.store.store, tui.store.export, tui.store.codec\n"
        "import tui.store.sessions, tui.config, tui.state, tui.safe_text, tui.reasons\n"
        "import tui.slash_commands\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == []


def test_the_app_module_imports_without_model_libraries() -> None:
    """The window can paint before torch and transformers load (the load worker
    imports them off the UI thread)."""
    code = (
        "import json, sys\n"
        "import tui.app\n"
        "print(json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == []
