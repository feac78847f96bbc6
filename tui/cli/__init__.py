"""Command line: ``chat-tui [MODEL] [key=value ...] [options]``.

One concern a module: ``entry`` (parse, check, run the mode asked for), ``parser``
(the grammar and help), ``model_choice`` (which model to start with), ``output``
(stdout, stderr, progress, exit codes), ``signals`` (Ctrl-C, SIGTERM, SIGHUP),
``backend`` (local engine or endpoint), ``one_shot`` and ``compare`` (``--prompt``),
``turn`` (the streaming and the one ending they share), ``replay``,
``store_commands`` (``--list``, ``--search``, ``--export``, ``--import``) and
``launch`` (the app).

No Textual (or torch) import at module top anywhere here: ``--help``, ``--version``
and one-shot mode never pay for the UI, and the UI paints before the model libraries
load.
"""

from .entry import main

__all__ = ["main"]
