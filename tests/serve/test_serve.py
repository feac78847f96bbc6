"""``chat-tui --serve`` without a browser: the token on every route, the session
cap, apps that end with their tab or their server, two tabs on one conversation,
and a token that never reaches a log or a file. Browser tabs are websocket clients
speaking textual.js's protocol (the real browser is ``test_browser.py``)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.serve.helpers import Served, Tab, async_wait_for, no_orphans, wait_for
from tests.store.helpers import run_cli

TINY = ("max_new_tokens=8", "do_sample=false")


def token_nowhere(served: Served, test_env: dict[str, str]) -> None:
    """The token is printed once, in the link, and appears in no log or saved file."""
    printed = "".join(served.out) + "".join(served.err)
    assert printed.count(served.token) == 1, "the token was printed more than once"
    folders = [served.data_dir] + [
        Path(test_env[name]) for name in ("CHAT_TUI_CONFIG_DIR", "CHAT_TUI_STATE_DIR")
    ]
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                assert served.token.encode() not in path.read_bytes(), f"token in {path}"


async def test_without_the_token_every_route_is_403_and_no_app_starts(serve, test_env):
    served = serve()
    base, token = served.base, served.token
    async with aiohttp.ClientSession(base) as client:
        for path in (
            "/",
            "/?token=wrong",
            f"/?token={token[:-1]}",
            f"/?token={token}x",
            "/?token=%C3%A9t%C3%A9",  # not ASCII: refused, not a server error
            "/static/js/textual.js",
            "/favicon.ico",
            f"/ws/{token[:-1]}",
            "/download/anything",
        ):
            async with client.get(path) as response:
                text = await response.text()
            assert response.status == 403, path
            assert token not in text
            assert "link it printed" in text
        async with client.get(f"/?token={token}") as page:
            text = await page.text()
        assert page.status == 200
        assert f"/ws/{token}" in text
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "googleapis" not in text  # nothing from another site
        async with client.get(f"/static/js/textual.js?token={token}") as script:
            assert script.status == 200
        # textual-serve's download route does not exist, even with the token
        async with client.get(f"/download/x?token={token}") as download:
            assert download.status == 404
    async with aiohttp.ClientSession() as session:
        for wrong in ("wrong", token.upper(), token[:-1]):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(served.ws_url(wrong))
            assert refused.value.status == 403
    assert served.apps() == []
    assert served.stop() == 0
    token_nowhere(served, test_env)


async def test_tabs_one_conversation_the_cap_and_sigterm(serve, bigram_dir, test_env):
    """A tab's app ends with its tab (having saved); two tabs reopen that conversation
    and both write to it, merged; a third tab is refused with a page that says why;
    SIGTERM on the server ends both apps, each saving first."""
    served = serve("--model", str(bigram_dir), "--max-sessions", "2", *TINY)

    async with Tab(served) as first:
        await first.shows("Loaded")
        (app,) = served.apps()
        await first.type("Capital of France?")
        await first.type("\r")
        await async_wait_for(served.replies, "the first reply in the file")
        await first.shows("Paris")
    await async_wait_for(lambda: no_orphans([app.pid]), "the first tab's app to end")
    await async_wait_for(lambda: not served.apps(), "the server to reap it")

    async with Tab(served) as second, Tab(served) as third:
        for tab in (second, third):  # each reopens the conversation left open
            await tab.shows("Capital of France?")
            await tab.shows("Loaded")
        apps = served.apps()
        assert len(apps) == 2
        async with aiohttp.ClientSession() as client, client.get(served.url) as busy:
            assert busy.status == 503
            assert "--max-sessions 2" in await busy.text()
        async with Tab(served) as refused:
            await asyncio.wait_for(refused.closed.wait(), 60)
            assert refused.screen.shows("--max-sessions 2")
        assert len(served.apps()) == 2

        await second.type("from the second tab\r")
        await third.type("from the third tab\r")
        await async_wait_for(lambda: len(served.replies()) == 3, "both replies in the file")
        (conversation,) = served.conversations()
        asked = [m["content"] for m in conversation["messages"] if m["role"] == "user"]
        assert sorted(asked) == ["Capital of France?", "from the second tab", "from the third tab"]

        assert served.stop(signal.SIGTERM) == 0
        assert no_orphans([p.pid for p in apps])
        for tab in (second, third):
            await asyncio.wait_for(tab.closed.wait(), 60)
    assert "every browser session has ended" in "".join(served.err)
    token_nowhere(served, test_env)


def _context_used(text: str) -> int:
    """The ``ctx USED/LIMIT`` figure of the status line on screen (0 if none)."""
    import re

    found = re.findall(r"ctx ([\d,]+)/", text)
    return int(found[-1].replace(",", "")) if found else 0


async def test_ctrl_c_on_the_server_keeps_the_reply_being_written(serve, tiny_llama_dir):
    """Ctrl-C (SIGINT) reaches the server only; it ends each app with SIGTERM, which
    saves a reply mid-stream as the terminal app does on a hangup: marked interrupted."""
    long = ("max_new_tokens=1500", "min_new_tokens=1500", "do_sample=false")
    served = serve("--model", str(tiny_llama_dir), *long)
    async with Tab(served) as tab:
        await tab.shows("Loaded")
        (app,) = served.apps()
        await tab.type("Tell me a long story\r")
        await tab.shows("generating…")
        # the reply has begun: once the turn has started the status line counts the
        # prompt (before, it shows 0 in a new conversation), then the reply's tokens
        await async_wait_for(lambda: _context_used(tab.screen.text) > 0, "the prompt counted")
        first = _context_used(tab.screen.text)
        await async_wait_for(
            lambda: _context_used(tab.screen.text) > first + 8, "the reply to stream"
        )
        assert served.stop(signal.SIGINT) == 0
        assert no_orphans([app.pid])
    (conversation,) = served.conversations()
    reply = conversation["messages"][-1]
    assert reply["role"] == "assistant"
    assert reply["content"]
    assert reply["stop_reason"] == "interrupted"


async def test_apps_end_when_the_server_is_killed(serve, bigram_dir):
    """No orphans even when the server cannot forward anything: the app sees its
    input end and exits like a hangup."""
    served = serve("--model", str(bigram_dir), *TINY)
    async with Tab(served) as tab:
        await tab.shows("chat-tui")
        (app,) = served.apps()
        served.stop(signal.SIGKILL)
        await async_wait_for(lambda: no_orphans([app.pid]), "the app to end")


async def test_a_non_local_host_warns_and_still_needs_the_token(serve):
    served = serve("--host", "0.0.0.0")
    # written before the link, but read by another thread than the link's
    said = wait_for(lambda: "unencrypted" in "".join(served.err) and "".join(served.err), "warning")
    assert "the link is the password" in said.lower()
    assert "unencrypted" in said
    assert socket.gethostname() in served.base
    port = served.base.rsplit(":", 1)[1].rstrip("/")
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
        async with client.get("/") as refused:
            assert refused.status == 403
        async with client.get(f"/?token={served.token}") as page:
            assert page.status == 200
    assert served.apps() == []


def test_the_loopback_link_says_how_to_tunnel(serve):
    served = serve()
    assert served.base.startswith("http://127.0.0.1:")
    # serve() returns once the link is read; the lines after it may still be on the way
    printed = wait_for(lambda: "ssh -L" in "".join(served.out) and "".join(served.out), "ssh -L")
    assert "its own copy of the model" in printed
    assert not served.err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--prompt", "hi"], "does not go with --prompt"),
        (["--list"], "does not go with --list"),
        (["--max-sessions", "0"], "--max-sessions takes"),
        (["--port", "70000"], "--port takes"),
        (["temperature=hot"], "temperature"),
    ],
)
def test_serve_refuses_what_it_cannot_serve(args, said):
    code, out, err = run_cli("--serve", *args)
    assert code == 2
    assert said in err
    assert "token" not in out


def test_a_taken_port_is_one_sentence():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run_cli("--serve", "--port", str(port))
    assert code == 1
    assert (
        err.strip() == f"chat-tui: Cannot serve on 127.0.0.1 port {port}: address already in use."
    )
    assert "token" not in out


def test_log_lines_never_carry_the_token(capsys):
    from tui.serve.server import quiet_logging

    token = "s3cret-token-value"
    handler = quiet_logging(token)
    try:
        logging.getLogger("aiohttp.access").warning("GET /?token=%s HTTP/1.1", token)
        try:
            raise ValueError(f"bad /ws/{token}")
        except ValueError:
            logging.getLogger("textual-serve").exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert "GET /?token=<token>" in err
    assert "bad /ws/<token>" in err
    assert token not in err


def test_each_tab_runs_the_same_command_line_as_an_app():
    from tui.serve import app_command, is_loopback

    command = app_command(["--model", "m", "--serve", "--port", "9"])
    assert command[1:4] == ["-P", "-m", "tui.cli"]
    assert command[-1] == "--no-serve"  # the last --serve/--no-serve wins
    from tui.cli.parser import build_parser

    assert build_parser().parse_intermixed_args(command[4:]).serve is False
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_the_server_imports_no_ui_and_no_model_libraries():
    """The server never runs the app itself: Textual, torch and transformers load in
    each tab's app process, not in the server."""
    code = (
        "import json, sys\n"
        "import tui.serve, tui.serve.server\n"
        "print(json.dumps([m for m in ('textual', 'torch', 'transformers') if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == []
