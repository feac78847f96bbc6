"""``chat-tui``'s entry point: parse and check the command line, then run the mode it
asks for (a store command, a replay, a one-shot prompt, or the app)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .model_choice import choose_spec, spec_overrides
from .output import EXIT_INTERRUPTED, EXIT_USAGE, error, note
from .parser import UsageError, build_parser, not_utf8, split_positionals


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before a reply started (e.g. while loading)
        error("Interrupted.")
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    bad = not_utf8(args)
    if bad is not None:
        error(f"An argument is not valid UTF-8 text ({bad!r}); chat-tui takes UTF-8.")
        return EXIT_USAGE
    parser = build_parser()
    ns = parser.parse_intermixed_args(args)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ..config import AppConfig
    from ..engine.errors import EngineError

    try:
        model, settings_args = split_positionals(ns.args)
        if ns.think is not None:  # the chat template's switch, as enable_thinking=...
            settings_args = [*settings_args, f"enable_thinking={str(ns.think).lower()}"]
        given = spec_overrides(ns, model)
        config = AppConfig.load()
        spec = choose_spec(given, None if ns.endpoint else config.model)
        if ns.prompt_lookup is not None and ns.prompt_lookup < 1:
            raise UsageError("--prompt-lookup takes a whole number of at least 1.")
        if ns.endpoint and ns.timeout <= 0:
            raise UsageError("--timeout takes a number of seconds above 0.")
        if ns.compare and ns.prompt is None:
            raise UsageError("--compare goes with --prompt (in the app, use /compare).")
        if ns.compare and ns.endpoint:
            raise UsageError("--compare runs models on this machine; it cannot use --endpoint.")
        if ns.compare:
            from ..engine.loader import check_source
            from ..engine.spec import ModelSpec, parse_compare_spec

            for text in ns.compare:
                source = parse_compare_spec(text).source
                if source is not None:  # refused now, not after the reference loads
                    check_source(ModelSpec(source=source))
    except (UsageError, EngineError) as exc:
        parser.print_usage(sys.stderr)
        error(str(exc))
        return EXIT_USAGE
    if ns.prompt is not None or ns.replay is not None:  # (the app shows them itself)
        for problem in filter(None, [config.problem, *config.warnings]):
            note(problem)  # the user's config file is wrong: said, then ignored
    if ns.serve:
        from ..serve import serve

        return serve(ns, args, settings_args)
    if ns.list or ns.search is not None or ns.export is not None or ns.import_file is not None:
        from .store_commands import run_store_command

        return run_store_command(ns)
    if ns.replay is not None:
        from .replay import run_replay

        return run_replay(ns, spec, given)
    if ns.prompt is not None:
        from .one_shot import run_one_shot

        return run_one_shot(ns, spec, settings_args)
    from .launch import launch_app

    return launch_app(ns, given, config, settings_args)
