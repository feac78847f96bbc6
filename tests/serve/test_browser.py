"""``chat-tui --serve`` in a real browser: Debian's Chromium, headless, driven by
Selenium through Debian's chromedriver (nothing is downloaded at run time).

What the page's terminal shows is read from the frames its websocket received (the
DevTools network log) drawn by a VT emulator, and a screenshot of the page is saved
in the test's temp folder."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.serve.helpers import Screen, no_orphans, wait_for

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no chromium/chromedriver on this machine (apt-get install chromium "
    "chromium-driver; .ci/run does)",
)

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


@pytest.fixture
def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """What the browser fetched and what its terminal shows, from DevTools' log."""

    def __init__(self, driver) -> None:
        self.driver = driver
        self.screen: Screen | None = None
        self.statuses: dict[str, int] = {}  # document URL -> HTTP status
        self._socket: str | None = None  # the app's websocket (DevTools request id)

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
            elif method == "Network.webSocketFrameSent":
                sent = json.loads(params["response"]["payloadData"])
                if sent[0] == "resize":
                    self.screen.resize(sent[1]["width"], sent[1]["height"])

    def shows(self, text: str) -> bool:
        self.read()
        return self.screen is not None and self.screen.shows(text)


def test_the_app_in_chromium(serve, bigram_dir, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    served = serve("--model", str(bigram_dir), "max_new_tokens=8", "do_sample=false")
    page = Page(browser)

    # without the token, or with a wrong one: 403, and no app
    for url in (served.base, f"{served.base}?token=wrong"):
        browser.get(url)
        assert "403 Forbidden" in browser.find_element(By.TAG_NAME, "body").text
        page.read()
        assert page.statuses[url] == 403
    opened = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        const socket = new WebSocket(arguments[0]);
        socket.onopen = () => done("open");
        socket.onerror = () => done("refused");""",
        served.ws_url("wrong"),
    )
    assert opened == "refused"
    assert served.apps() == []

    # with it: the app, in a tab of its own
    home = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(served.url)
    wait_for(lambda: page.shows("Loaded"), "the app to load its model, in the page")
    assert page.statuses[served.url] == 200
    (app,) = served.apps()

    keys = browser.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
    keys.send_keys("Capital of France?")
    keys.send_keys(Keys.ENTER)
    wait_for(served.replies, "the reply in the conversation's file")
    assert served.replies() == [" Paris"]
    wait_for(lambda: page.shows("Paris"), "the reply in the page")
    assert page.screen.shows("Capital of France?")

    screenshot = tmp_path / "chat-tui-in-chromium.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # closing the page ends its app
    browser.close()
    browser.switch_to.window(home)
    wait_for(lambda: no_orphans([app.pid]), "the app to end with its page")
    wait_for(lambda: not served.apps(), "the server to reap it")
    assert served.stop() == 0
