"""``chat-tui --serve`` in a real browser: Debian's Chromium, headless, driven by
Selenium through Debian's chromedriver (nothing is downloaded at run time).

What the page's terminal shows is read from the frames its websocket received (the
DevTools network log) drawn by a VT emulator, and a screenshot of the page is saved
in the test's temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.serve import CHROMEDRIVER, CHROMIUM, Page, chromium
from tests.serve.helpers import no_orphans, wait_for

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no chromium/chromedriver on this machine (apt-get install chromium "
    "chromium-driver; .ci/run does)",
)


@pytest.fixture
def browser(tmp_path: Path):
    driver = chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


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
