from __future__ import annotations

from pathlib import Path

import pytest

from tui.store import SessionStore


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / "data")
