"""The ``serve`` fixture: ``chat-tui --serve`` processes that leave nothing behind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.serve.helpers import START_LIMIT, Served, start_server


@pytest.fixture
def serve(test_env, tmp_path) -> Iterator[Callable[..., Served]]:
    """``serve(*args)`` starts ``chat-tui --serve --port 0 ARGS`` on a fresh data folder
    and waits for its link. At the end every server is stopped, and none may leave an
    app process behind."""
    started: list[Served] = []

    def start(*args: str, data_dir: Path | None = None) -> Served:
        served = start_server(args, test_env, data_dir or tmp_path / f"data{len(started)}")
        started.append(served)
        return served

    yield start
    for served in started:
        apps = served.apps()
        served.stop()
        _gone, alive = psutil.wait_procs(apps, timeout=START_LIMIT)
        for process in alive:
            process.kill()
        assert not alive, f"app processes left behind: {[p.pid for p in alive]}"
