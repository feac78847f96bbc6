"""Every module of the store imports without Textual, torch or transformers."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import tui.store

ROOT = Path(__file__).resolve().parents[2]


def test_the_store_imports_no_ui_and_no_model_libraries() -> None:
    modules = [f"tui.store.{m.name}" for m in pkgutil.iter_modules(tui.store.__path__)]
    assert {"tui.store.merge", "tui.store.atomic", "tui.store.codec"} <= set(modules)
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps([m for m in ('textual', 'rich', 'torch', 'transformers') "
        "if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
