"""``chat-tui --serve``: the app in a browser, private by default.

A web server (textual-serve, see :mod:`tui.serve.server`) runs one chat-tui per
browser tab, each a ``chat-tui`` process started with the same command line (so the
same model, data, config and state folders), each with its own copy of the model.
The server binds to 127.0.0.1 unless told otherwise and prints one link that carries
a random token, as Jupyter does; the token is the password.

No Textual, torch or web-server import at module top: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import secrets
import socket
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

# options that do something else than run the app: they cannot be served
_NOT_SERVED = {
    "prompt": "--prompt",
    "list": "--list",
    "search": "--search",
    "export": "--export",
    "import_file": "--import",
    "replay": "--replay",
    "compare": "--compare",
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def link(host: str, port: int, token: str) -> str:
    """The URL to print: the host as given (this machine's name for a wildcard)."""
    shown = socket.gethostname() if is_wildcard(host) else host.strip("[]")
    if ":" in shown:  # an IPv6 address
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={token}"


def app_command(argv: Sequence[str]) -> list[str]:
    """The command each browser tab's app runs: this command line, in the app mode.

    ``-P`` keeps the current folder off ``sys.path`` (a ``tui`` folder there must not
    be imported); ``--no-serve`` at the end turns ``--serve`` off (the last one wins),
    so no option needs to be picked out of ``argv``."""
    return [sys.executable, "-P", "-m", "tui.cli", *argv, "--no-serve"]


def say(message: str) -> None:
    """One sentence on stderr, as the rest of chat-tui's command line says things."""
    from ..safe_text import one_line

    print(f"chat-tui: {one_line(message)}", file=sys.stderr, flush=True)


def _usage(message: str) -> int:
    say(message)
    return EXIT_USAGE


def check(ns: argparse.Namespace) -> str | None:
    """Why these options cannot be served, or ``None``."""
    for name, option in _NOT_SERVED.items():
        value = getattr(ns, name, None)
        if value not in (None, False, []):
            return f"--serve runs the app in a browser; it does not go with {option}."
    if not 0 <= ns.port <= 65535:
        return "--port takes a number from 0 to 65535 (0: any free port)."
    if ns.max_sessions < 1:
        return "--max-sessions takes a whole number of at least 1."
    return None


def banner(url: str, host: str, port: int, max_sessions: int) -> str:
    tabs = "one tab" if max_sessions == 1 else f"{max_sessions} tabs"
    lines = [
        "chat-tui is serving the app to a browser. Open:",
        "",
        f"    {url}",
        "",
        "The link is the password: anyone who has it can use chat-tui here as you.",
        "Each browser tab runs its own chat-tui, with its own copy of the model in memory;",
        f"at most {tabs} at once (--max-sessions). Closing a tab ends its app; Ctrl-C",
        "ends them all, after saving every conversation.",
    ]
    if is_loopback(host):
        lines.append(
            f"From another machine: ssh -L {port}:127.0.0.1:{port} "
            f"{socket.gethostname()}, then open the link there."
        )
    return "\n".join(lines)


def warnings_for(host: str, port: int) -> list[str]:
    if is_loopback(host):
        return []
    where = "every network interface" if is_wildcard(host) else host
    return [
        f"listening on {where}: anyone who can reach port {port} and has the link can use "
        "chat-tui as you. The link is the password; keep it private.",
        "this is plain http: the link, your messages and the replies cross the network "
        "unencrypted. An SSH tunnel to 127.0.0.1 (see the README) encrypts them.",
    ]


def serve(ns: argparse.Namespace, argv: Sequence[str], settings_args: Sequence[str]) -> int:
    """Run the server until SIGINT, SIGTERM or SIGHUP; every app saves and ends first.
    ``argv`` is the whole command line (each app runs it), ``settings_args`` its
    ``key=value`` generation settings."""
    import asyncio

    from ..engine import EngineError, GenerationSettings

    problem = check(ns)
    if problem:
        return _usage(problem)
    try:  # refuse what each app would refuse, once, before anyone opens the page
        GenerationSettings().update(settings_args)
        if ns.endpoint:
            from ..engine.remote import Endpoint

            endpoint = Endpoint(
                ns.endpoint,
                api_key_env=ns.api_key_env,
                timeout=ns.timeout,
                verify_tls=not ns.insecure,
            )
            for warning in endpoint.warnings:  # once here, not once per tab
                say(f"warning: {warning}")
    except EngineError as exc:
        return _usage(str(exc))

    from .server import ChatServer, quiet_logging

    token = secrets.token_urlsafe(32)
    handler = quiet_logging(token)
    server = ChatServer(
        app_command(argv),
        token=token,
        host=ns.host,
        port=ns.port,
        max_sessions=ns.max_sessions,
    )

    def started(port: int) -> None:
        for warning in warnings_for(ns.host, port):
            print(f"chat-tui: warning: {warning}", file=sys.stderr, flush=True)
        print(banner(link(ns.host, port, token), ns.host, port, ns.max_sessions), flush=True)

    try:
        asyncio.run(server.run(started))
    except OSError as exc:  # the port is taken, the address is not this machine's
        from ..store.errors import describe_os_error

        say(f"Cannot serve on {ns.host} port {ns.port}: {describe_os_error(exc)}.")
        return EXIT_ERROR
    finally:
        logging.getLogger().removeHandler(handler)
    print("chat-tui: stopped; every browser session has ended.", file=sys.stderr, flush=True)
    return EXIT_OK
