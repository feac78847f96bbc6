"""``--prompt ... --compare SPEC``: the turn answered by the loaded model and by each
SPEC, each reply printed under its label as it streams, then one table."""

from __future__ import annotations

import argparse

from .output import EXIT_ERROR, EXIT_USAGE, StderrProgress, error
from .turn import Turn


def run_compare(ns: argparse.Namespace, engine, turn: Turn, progress: StderrProgress) -> int:
    """The replies and the table on stdout, notes on stderr. The replies are saved as
    sibling branches of the turn, each labelled with its spec; the loaded model's
    reply stays on the active branch."""
    from ..engine import EngineError
    from ..engine.compare import compare_turn
    from ..engine.reasoning import Reasoning
    from ..engine.spec import parse_compare_spec, precision_tag
    from ..reasons import StopReason
    from ..safe_text import one_line, visible

    conv = turn.conv
    labels: dict[int, str] = {}
    try:
        parsed = [parse_compare_spec(text) for text in ns.compare]
        if engine.capabilities.kind == "local" and engine.loaded is not None:
            loaded = engine.loaded
            labels[0] = precision_tag(loaded.spec, loaded.dtype) + " (reference)"
        for number, wanted in enumerate(parsed, 1):
            labels[number] = wanted.label
    except EngineError as exc:
        error(str(exc))
        return EXIT_USAGE

    shown = {"index": -1, "open": False}

    def end_reply() -> None:
        if shown["open"]:
            turn.finish_text()
            turn.write("\n\n", raw=True)
        shown["open"] = False

    def on_text(index: int, chunk: str) -> None:
        if isinstance(chunk, Reasoning):  # stderr with --show-thinking; never stdout
            turn.think(chunk, f"[{one_line(labels.get(index, f'#{index}'))} thinking]")
            return
        turn.thinking_done()
        if index != shown["index"]:
            end_reply()
            shown["index"] = index
        if not shown["open"]:
            turn.write(f"[{one_line(labels.get(index, f'#{index}'))}]\n", raw=True)
            shown["open"] = True
        turn.write(chunk)

    def on_reply(_reply) -> None:
        turn.thinking_done()  # the next reply's reasoning gets its own heading
        end_reply()

    def on_progress(step) -> None:
        if step.stage in ("loading", "restoring") and step.fraction is not None:
            progress(step.fraction, step.message)
        elif step.stage == "generating":
            progress.clear()

    def run():
        return compare_turn(
            engine,
            conv.chat_messages(),
            parsed,
            system_prompt=conv.system_prompt or None,
            use_turn_settings=ns.compare_settings == "turn",
            placement={"sequential": "one after the other"}.get(ns.compare_load, ns.compare_load),
            stop_event=turn.stop,
            on_progress=on_progress,
            on_text=on_text,
            on_reply=on_reply,
        )

    try:
        comparison = turn.generate(run)
    except EngineError as exc:
        progress.clear()
        end_reply()
        error(str(exc))
        return EXIT_ERROR
    progress.clear()
    end_reply()
    replies = comparison.replies if comparison is not None else []
    if replies:
        turn.write(visible(comparison.table()) + "\n", raw=True)

    failures: list[str] = []
    user = conv.head
    for reply in replies:
        fields = reply.message_fields()
        if reply.stats.stop_reason == StopReason.STOPPED and turn.cut_short:
            fields["stop_reason"] = StopReason.INTERRUPTED
        if reply.error:
            failures.append(f"{reply.label}: {reply.error}")
            if not reply.text and not reply.reasoning:
                continue
        conv.add_child(user, "assistant", reply.text, make_head=reply.is_reference, **fields)
    notes: list[str] = list(comparison.notes) if comparison is not None else []
    for reply in replies:
        notes += [f"{reply.label}: {notice}" for notice in reply.notices]
        if ns.stats:
            notes.append(f"{reply.label}: {reply.stats.describe()}")
    return turn.end("the replies so far were", notes, failures, changed=bool(replies))
