"""ThreadPerJob: each job in a thread of its own that ends with it, so a torch thread
team made by a job does not outlive it (see tui.engine.threads)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support import wait_until
from tui.engine.threads import ThreadPerJob


def test_each_job_has_its_own_thread_which_ends_with_it() -> None:
    pool = ThreadPerJob("test")
    first = pool.submit(threading.current_thread).result()
    second = pool.submit(threading.current_thread).result()
    assert first is not second and threading.main_thread() not in (first, second)
    assert not first.daemon  # as ThreadPoolExecutor's: the interpreter waits for a job
    wait_until(lambda: not first.is_alive() and not second.is_alive(), "the jobs' threads")
    assert pool.running() == 0


def test_results_and_errors_come_back_and_shutdown_waits() -> None:
    pool = ThreadPerJob("test")
    assert pool.submit(lambda a, b=0: a + b, 2, b=3).result() == 5
    with pytest.raises(KeyError):
        pool.submit({}.__getitem__, "missing").result()
    release = threading.Event()
    slow = pool.submit(release.wait)
    assert pool.running() == 1
    threading.Timer(0.2, release.set).start()
    pool.shutdown(wait=True)
    assert slow.done() and slow.result() is True
    with pytest.raises(RuntimeError):
        pool.submit(print)


TEAM = """
import os, threading
import torch
from tui.engine.threads import ThreadPerJob
from tests.support import wait_until

def native_threads():
    return len(os.listdir("/proc/self/task"))

assert torch.get_num_threads() >= 2, torch.get_num_threads()
weights = torch.randn(1024, 1024)
before = native_threads()

def products():
    for _ in range(3):
        weights @ weights
    return native_threads()

pool = ThreadPerJob("test")
during = pool.submit(products).result()
assert during > before + 1, (before, during)  # the job's thread and its team's helper(s)
wait_until(lambda: native_threads() <= before, "the job's thread and its team to end")
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
def test_a_torch_thread_team_made_in_a_job_ends_with_it(test_env) -> None:
    """The point of the class: torch's OpenMP helpers made by a job's products are gone
    once the job ends (a kept team slows other threads' products, see the module).

    In a process of its own, with torch's default threads: the suite's workers run
    torch on one thread (tests/conftest.py), which makes no team; libgomp reads that
    setting once, when torch loads."""
    env = {k: v for k, v in test_env.items() if k != "OMP_NUM_THREADS"}
    env["OMP_NUM_THREADS"] = "2"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", TEAM], env=env, cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
