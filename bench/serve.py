"""``chat-tui --serve`` as a person uses it, measured: the server started from the
command line, its link opened in headless Chromium, a question typed, the reply
read in the page and in the conversation's file, the page closed, the server stopped.

    python bench/serve.py [--model MODEL] [--question TEXT] [--shots DIR] [key=value ...]

Without ``--model`` it uses the bundled default model. Needs Debian's ``chromium``
and ``chromium-driver`` (``apt-get install chromium chromium-driver``). Prints one
table (seconds) and where the screenshot went. The tests
(``tests/serve/``) use its server and page readers with a tiny model.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import psutil

ROOT = Path(__file__).resolve().parents[1]
URL = re.compile(r"(http://\S+/)\?token=(\S+)")
START_LIMIT = 120  # seconds: generous for a busy 2-core machine; never a measurement
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


def wait_for(condition: Callable[[], Any], what: str, timeout: float = START_LIMIT) -> Any:
    """Poll ``condition`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


@dataclass
class Served:
    """A running ``chat-tui --serve`` and everything it printed."""

    process: subprocess.Popen
    data_dir: Path
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    base: str = ""  # http://127.0.0.1:PORT/
    token: str = ""

    @property
    def url(self) -> str:
        return f"{self.base}?token={self.token}"

    def ws_url(self, token: str | None = None) -> str:
        return f"ws{self.base[4:]}ws/{self.token if token is None else token}"

    def apps(self) -> list[psutil.Process]:
        """The app processes the server runs (its children)."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=START_LIMIT)

    def conversations(self) -> list[dict[str, Any]]:
        folder = self.data_dir / "sessions"
        found = []
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            try:
                found.append(tomllib.loads(path.read_text(encoding="utf-8")))
            except (OSError, tomllib.TOMLDecodeError):
                continue  # being replaced this instant: read again on the next poll
        return found

    def replies(self) -> list[str]:
        return [
            m["content"]
            for conv in self.conversations()
            for m in conv.get("messages", [])
            if m.get("role") == "assistant"
        ]


def _drain(stream, into: list[str]) -> None:
    for line in iter(stream.readline, ""):
        into.append(line)


def start_server(args, env: dict[str, str], data_dir: Path) -> Served:
    """``chat-tui --serve --port 0 --data-dir DATA_DIR ARGS``, once its link is printed."""
    env = {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "tui.cli", "--serve", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--data-dir", str(data_dir), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    served = Served(process, data_dir)
    for stream, into in ((process.stdout, served.out), (process.stderr, served.err)):
        threading.Thread(target=_drain, args=(stream, into), daemon=True).start()

    def link():
        assert process.poll() is None, f"--serve ended: {''.join(served.err)}"
        return next((m for m in map(URL.search, served.out) if m), None)

    try:
        found = wait_for(link, "the printed link")
    except BaseException:
        process.kill()
        raise
    served.base, served.token = found.group(1), found.group(2)
    return served


class Screen:
    """What the page's terminal shows: the app's output fed to a VT emulator."""

    def __init__(self, columns: int = 120, rows: int = 36) -> None:
        import pyte

        self.columns, self.rows = columns, rows
        self._screen = pyte.Screen(columns, rows)
        self._stream = pyte.ByteStream(self._screen)
        self.received = 0

    def resize(self, columns: int, rows: int) -> None:
        self.columns, self.rows = columns, rows
        self._screen.resize(rows, columns)

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        self._stream.feed(data)

    @property
    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self._screen.display)

    def shows(self, text: str) -> bool:
        return text in self.text


# headless, and without the background traffic whose connections are refused here
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
)


def chromium(profile: Path):
    """Headless Chromium (Debian's, through Debian's chromedriver: nothing is
    downloaded), logging its network traffic for :class:`Page`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class Page:
    """What the browser fetched and what its terminal shows, from DevTools' log."""

    def __init__(self, driver, record: bool = False) -> None:
        self.driver = driver
        self.screen: Screen | None = None
        self.statuses: dict[str, int] = {}  # document URL -> HTTP status
        self._socket: str | None = None  # the app's websocket (DevTools request id)
        # with ``record``, (browser time, screen text) after each frame, and the keys sent
        self.record = record
        self.drawn: list[tuple[float, str]] = []
        self.typed: list[tuple[float, str]] = []

    def read(self) -> None:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            method, params = message["method"], message.get("params", {})
            if method == "Network.responseReceived" and params.get("type") == "Document":
                self.statuses[params["response"]["url"]] = params["response"]["status"]
            elif method == "Network.webSocketHandshakeResponseReceived":
                if params["response"]["status"] == 101:
                    self._socket = params["requestId"]
            elif method == "Network.webSocketCreated":
                query = parse_qs(urlparse(params["url"]).query)
                if "width" in query:
                    self.screen = Screen(int(query["width"][0]), int(query["height"][0]))
            elif params.get("requestId") != self._socket or self.screen is None:
                continue
            elif method == "Network.webSocketFrameReceived":
                if params["response"]["opcode"] == 2:  # binary: the app's output
                    self.screen.feed(base64.b64decode(params["response"]["payloadData"]))
                    if self.record:
                        self.drawn.append((params["timestamp"], self.screen.text))
            elif method == "Network.webSocketFrameSent":
                sent = json.loads(params["response"]["payloadData"])
                if sent[0] == "resize":
                    self.screen.resize(sent[1]["width"], sent[1]["height"])
                elif sent[0] == "stdin" and self.record:
                    self.typed.append((params["timestamp"], sent[1]))

    def shows(self, text: str) -> bool:
        self.read()
        return self.screen is not None and self.screen.shows(text)


def _reply(served: Served) -> dict[str, Any] | None:
    for conv in served.conversations():
        for message in conv.get("messages", []):
            if message.get("role") == "assistant":
                return message
    return None


def _first_shown(page: Page, word: str) -> float | None:
    """Seconds from the Enter key leaving the browser to the first frame after which
    ``word`` shows under the last "Assistant" header (the browser's own clock)."""
    enter = next((t for t, keys in page.typed if keys == "\r"), None)
    if enter is None:
        return None
    for when, text in page.drawn:
        if when < enter:
            continue
        lines = text.splitlines()
        headers = [i for i, line in enumerate(lines) if "Assistant" in line]
        if headers and any(word in line for line in lines[headers[-1] + 1 : headers[-1] + 4]):
            return when - enter
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model for the served app (default: the bundled one)")
    parser.add_argument("--question", default="What is the capital of France?")
    parser.add_argument("--shots", type=Path, help="folder for the screenshots (default: temp)")
    parser.add_argument("settings", nargs="*", help="key=value generation settings")
    ns = parser.parse_args(argv)
    if not (CHROMIUM and CHROMEDRIVER):
        print("needs chromium and chromedriver: apt-get install chromium chromium-driver")
        return 1
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    sys.path.insert(0, str(ROOT))
    from bench.engine import machine

    work = Path(tempfile.mkdtemp(prefix="chat-tui-serve-bench-"))
    shots = ns.shots or work
    shots.mkdir(parents=True, exist_ok=True)
    args = (["--model", ns.model] if ns.model else []) + list(ns.settings)
    times: dict[str, float] = {}
    started = time.monotonic()
    env = dict(os.environ)  # the user's model cache; config and state of its own
    env.setdefault("CHAT_TUI_CONFIG_DIR", str(work / "config"))
    env.setdefault("CHAT_TUI_STATE_DIR", str(work / "state"))
    served = start_server(args, env, work / "data")
    times["command to printed link"] = time.monotonic() - started
    browser = chromium(work / "profile")
    try:
        page = Page(browser, record=True)
        opened = time.monotonic()
        browser.get(served.url)
        wait_for(lambda: page.shows("chat-tui"), "the app's first screen")
        times["link opened to the app drawn"] = time.monotonic() - opened
        wait_for(lambda: page.shows("Loaded"), "the model to load")
        times["link opened to usable (model loaded)"] = time.monotonic() - opened
        times["command to usable page"] = time.monotonic() - started
        browser.save_screenshot(str(shots / "serve-loaded.png"))

        keys = browser.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
        keys.send_keys(ns.question)
        asked = time.monotonic()
        keys.send_keys(Keys.ENTER)
        reply = wait_for(lambda: _reply(served), "the reply in the file", timeout=600)
        times["Enter to the whole reply saved"] = time.monotonic() - asked
        first_words = " ".join(reply["content"].split()[:3])
        wait_for(lambda: page.shows(first_words), "the reply's words in the page")
        shown = _first_shown(page, reply["content"].split()[0])
        if shown is not None:
            times["Enter to the reply's first word in the page"] = shown
        time_to_first_token = reply.get("time_to_first_token")
        if time_to_first_token is not None:
            times["first token (the app's own measure)"] = time_to_first_token
        browser.save_screenshot(str(shots / "serve-reply.png"))

        (app,) = served.apps()
        closing = time.monotonic()
        browser.close()
        wait_for(lambda: not psutil.pid_exists(app.pid) or not served.apps(), "the app to end")
        times["page closed to its app ended"] = time.monotonic() - closing
    finally:
        browser.quit()
        stopping = time.monotonic()
        code = served.stop()
        times["SIGTERM to server exit"] = time.monotonic() - stopping
    print(f"chat-tui --serve, {ns.model or 'the bundled default model'}; {machine()}")
    width = max(map(len, times))
    for what, seconds in times.items():
        print(f"  {what:<{width}}  {seconds:7.2f} s")
    print(f"reply: {reply['content'][:200]!r}")
    print(f"server exit code {code}; screenshots: {shots}/serve-loaded.png, serve-reply.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
