"""Start the app with what the command line decided: the model (or endpoint), the
generation settings, the data folder."""

from __future__ import annotations

import argparse

from .backend import make_endpoint
from .model_choice import choose_spec
from .output import EXIT_USAGE, error


def launch_app(ns: argparse.Namespace, given: dict[str, object], config, settings_args) -> int:
    from ..app import LaunchOptions, run_app
    from ..engine import EngineError, GenerationSettings
    from ..state import AppState
    from ..store import SessionStore

    try:
        GenerationSettings().update(settings_args)
        endpoint = make_endpoint(ns) if ns.endpoint else None
        remembered = AppState.load(SessionStore(ns.data_dir).root).last_model
        spec = choose_spec(given, config.model, remembered)
    except EngineError as exc:
        error(str(exc))
        return EXIT_USAGE
    options = LaunchOptions(
        spec=spec if endpoint is None else choose_spec({}, config.model, remembered),
        endpoint=endpoint,
        endpoint_model=str(given.get("source") or "default"),
        settings_args=settings_args,
        system_prompt=ns.system_prompt,
        data_dir=ns.data_dir,
        prompt_lookup=ns.prompt_lookup,
        assistant_model=ns.assistant_model,
    )
    return run_app(options)
