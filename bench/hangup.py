"""Close the terminal under chat-tui at random moments; count how fast it goes away.

Each trial starts the real app (``python -m tui.cli``) in a pseudo-terminal, waits for
one moment of its life (start-up, model load, a reply streaming, idle), then closes the
terminal as a dropped SSH link does (the kernel sends SIGHUP). The process must be gone
within 5 s, and every conversation file must still read back.

    python bench/hangup.py --model DIR [--trials 100]

``--model`` takes any model folder (a tiny one keeps each trial short); the tests use
:func:`run_trial` with a tiny random model.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import random
import select
import signal
import struct
import sys
import tempfile
import termios
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOMENTS = ("start-up", "load", "streaming", "idle")
LIMIT = 5.0


@dataclass
class Trial:
    moment: str
    delay: float
    seconds: float | None  # from closing the terminal to the process being gone
    exit_status: int | None
    files_ok: bool
    note: str = ""


def _drain(fd: int, seconds: float) -> None:
    """Read the app's output for ``seconds`` (a terminal that is not read blocks it)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], min(left, 0.05))
        if ready:
            try:
                if not os.read(fd, 65536):
                    return
            except OSError:
                return


def _wait_for(fd: int, condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        _drain(fd, 0.05)
    return condition()


def _state_has_model(state_dir: Path) -> bool:
    try:
        return "last_model" in tomllib.loads((state_dir / "state.toml").read_text())
    except (OSError, ValueError):
        return False


def _sessions(data_dir: Path) -> list[Path]:
    folder = data_dir / "sessions"
    return sorted(folder.glob("*.toml")) if folder.is_dir() else []


def _files_ok(data_dir: Path) -> tuple[bool, str]:
    from tui.store import SessionStore, StoreError

    store = SessionStore(data_dir)
    for path in _sessions(data_dir):
        try:
            conv = store.load(path.stem)
        except StoreError as exc:
            return False, str(exc)
        if conv.transcript and conv.transcript[0].role != "user":
            return False, f"{path.name}: starts with {conv.transcript[0].role}"
    return True, ""


def run_trial(model: str, moment: str, delay: float, env: dict[str, str], work: Path) -> Trial:
    data, state = work / "data", work / "state"
    env = dict(
        env,
        CHAT_TUI_DATA_DIR=str(data),
        CHAT_TUI_STATE_DIR=str(state),
        CHAT_TUI_CONFIG_DIR=str(work / "config"),
        TERM="xterm-256color",
        HF_HUB_OFFLINE="1",
    )
    args = [
        sys.executable, "-m", "tui.cli", model,
        "do_sample=false", "max_new_tokens=3000", "min_new_tokens=3000",
    ]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:  # the child: the app, on the pty
        os.chdir(ROOT)
        os.execve(sys.executable, args, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    note = ""
    try:
        if moment == "start-up":
            _drain(fd, delay)
        elif moment == "load":
            # as soon as the load is recorded, then a little later
            if not _wait_for(fd, lambda: _state_has_model(state), 120):
                note = "no load seen"
            _drain(fd, delay * 0.2)
        else:
            if not _wait_for(fd, lambda: _state_has_model(state), 120):
                note = "no load seen"
            _drain(fd, 0.5)
            os.write(fd, b"Tell me a long story\r")
            if not _wait_for(fd, lambda: bool(_sessions(data)), 30):
                note = "no message saved"
            _drain(fd, delay if moment == "streaming" else 0.2)
            if moment == "idle":  # stop the reply, let it settle
                os.write(fd, b"\x1b")
                _drain(fd, 1.0 + delay)
    finally:
        closed_at = time.monotonic()
        os.close(fd)  # the terminal goes away: the kernel hangs up the session
    seconds = status = None
    while time.monotonic() - closed_at < 30:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            seconds = time.monotonic() - closed_at
            break
        time.sleep(0.02)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    ok, why = _files_ok(data)
    return Trial(moment, delay, seconds, status, ok, note or why)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    ns = parser.parse_args()
    rng = random.Random(ns.seed)
    results: list[Trial] = []
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(ns.trials):
            moment = MOMENTS[number % len(MOMENTS)]
            trial = run_trial(
                ns.model, moment, rng.uniform(0, 1.5), dict(os.environ), Path(tmp) / str(number)
            )
            results.append(trial)
            gone = f"{trial.seconds:.2f} s" if trial.seconds is not None else "NOT GONE"
            print(f"{number:3d}  {moment:10s} delay {trial.delay:.2f}  {gone}  "
                  f"files {'ok' if trial.files_ok else 'BROKEN'} {trial.note}", flush=True)  # fmt: skip
    import platform

    from tui.engine.devices import cpu_name

    print()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"{'moment':12s}{'trials':>8s}{'gone <5 s':>11s}{'median s':>10s}{'max s':>8s}"
          f"{'files ok':>10s}")  # fmt: skip
    for moment in MOMENTS:
        group = [t for t in results if t.moment == moment]
        times = sorted(t.seconds for t in group if t.seconds is not None)
        within = sum(1 for t in group if t.seconds is not None and t.seconds < LIMIT)
        median = times[len(times) // 2] if times else float("nan")
        top = times[-1] if times else float("nan")
        ok = sum(t.files_ok for t in group)
        print(f"{moment:12s}{len(group):8d}{within:11d}{median:10.2f}{top:8.2f}{ok:10d}")
    failures = [t for t in results if t.seconds is None or t.seconds >= LIMIT or not t.files_ok]
    print(f"\n{len(results) - len(failures)} of {len(results)} trials: gone within {LIMIT:g} s "
          "with every conversation intact")  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
