"""The commands on saved conversations: ``--list``, ``--search``, ``--export`` and
``--import``.

Everything printed that comes from a file (names, titles, reasons, file names) goes
through the sanitizer as the text is built; store errors and a stdout that fails are
one sentence on stderr and exit 1.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..safe_text import one_line
from .output import EXIT_ERROR, EXIT_OK, EXIT_USAGE, Stdout, StdoutFailed, error

if TYPE_CHECKING:
    from ..store import SessionStore


def run_store_command(ns: argparse.Namespace) -> int:
    from ..store import SessionStore, StoreError
    from ..store import export as exporter

    store = SessionStore(ns.data_dir)
    try:
        if ns.list:
            text = _listing(store)
        elif ns.search is not None:
            text = _search(store, ns.search)
        elif ns.export is not None:
            info = store.find(ns.export)
            if info is None:
                error(one_line(store.not_found(ns.export)))
                return EXIT_ERROR
            text = exporter.export(store.load(info.id), ns.format)
        elif ns.import_file is not None:
            conv = store.import_conversation(exporter.import_file(ns.import_file))
            text = one_line(
                f"Imported {ns.import_file} as {conv.name or conv.id}: {conv.title} "
                f"({conv.message_count} messages)."
            )
            text += "\n"
        else:
            return EXIT_USAGE
        Stdout(raw=True).write(text, flush=True)  # sanitized as it was built
    except StoreError as exc:
        error(one_line(str(exc)))
        return EXIT_ERROR
    except StdoutFailed as exc:
        return exc.report()
    return EXIT_OK


def _listing(store: SessionStore) -> str:
    """A table of the saved conversations, then the files that could not be read."""
    infos, problems = store.scan()
    lines: list[str] = []
    if not infos:
        lines.append(one_line(f"No saved conversations in {store.folder}."))
    else:
        rows = [
            (
                one_line(i.label),
                one_line(i.title),
                one_line(i.model or "-"),
                _short_time(one_line(i.updated)),
                str(i.messages),
            )
            for i in infos
        ]
        header = ("NAME", "TITLE", "MODEL", "UPDATED", "MESSAGES")
        widths = [min(40, max(len(r[c]) for r in rows + [header])) for c in range(5)]
        for row in [header, *rows]:
            cells = (cell[:w].ljust(w) for cell, w in zip(row, widths, strict=True))
            lines.append("  ".join(cells).rstrip())
    lines += [one_line(f"unreadable: {problem} (left unchanged)") for problem in problems]
    return "".join(line + "\n" for line in lines)


def _search(store: SessionStore, text: str) -> str:
    """Each conversation that mentions ``text``, with the snippets that do."""
    hits = store.search(text)
    lines: list[str] = []
    for hit in hits:
        lines.append(f"{one_line(hit.info.label)}  {one_line(hit.info.title)}")
        lines += [f"    {one_line(snippet)}" for snippet in hit.snippets]
    if not hits:
        lines.append(one_line(f"No conversation mentions {text!r}."))
    return "".join(line + "\n" for line in lines)


def _short_time(iso: str) -> str:
    return iso.replace("T", " ")[:16]
