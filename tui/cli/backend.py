"""The backend the command line asks for: the local engine, or a server's
(``--endpoint``)."""

from __future__ import annotations

import argparse
import sys


def make_endpoint(ns: argparse.Namespace):
    from ..engine.remote import Endpoint

    endpoint = Endpoint(
        ns.endpoint, api_key_env=ns.api_key_env, timeout=ns.timeout, verify_tls=not ns.insecure
    )
    for warning in endpoint.warnings:
        print(f"chat-tui: warning: {warning}", file=sys.stderr)
    return endpoint


def make_engine(ns: argparse.Namespace, settings):
    """The local engine, or the remote one when --endpoint is given."""
    if ns.endpoint:
        from ..engine.remote import RemoteEngine

        return RemoteEngine(make_endpoint(ns), settings=settings)
    from ..engine import LocalEngine

    return LocalEngine(settings=settings, prompt_lookup=ns.prompt_lookup)
