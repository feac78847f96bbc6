"""``--prompt``: one reply streamed to stdout and saved with its question (or, with
``--compare``, the same turn answered by other models: :mod:`.compare`)."""

from __future__ import annotations

import argparse
import sys

from .backend import make_engine
from .output import EXIT_ERROR, EXIT_USAGE, StderrProgress, error, note
from .turn import Turn


def open_conversation(ns: argparse.Namespace, spec, settings):
    """The conversation a one-shot prompt belongs to: named, the latest, or new."""
    from ..store import Conversation, SessionStore, StoreError

    fields = {
        "model": spec.to_dict(),
        "system_prompt": ns.system_prompt or "",
        "settings": dict(settings.values),
    }
    if ns.no_save and not (ns.session or ns.continue_last):
        return None, Conversation(id="unsaved", **fields)
    store = SessionStore(ns.data_dir)
    if ns.session:
        conv, _created = store.open_or_create(ns.session, **fields)
    elif ns.continue_last:
        info = store.most_recent()
        if info is None:
            raise StoreError("There is no saved conversation to continue.")
        conv = store.load(info.id)
    else:
        conv = store.new(**fields)
    if ns.system_prompt is not None:
        conv.system_prompt = ns.system_prompt
    conv.model = spec.to_dict()
    if ns.endpoint:  # the URL only: credentials in it are never written
        from ..engine.remote import redact_url

        conv.model["endpoint"] = redact_url(ns.endpoint)
    return (None if ns.no_save else store), conv


def read_prompt(ns: argparse.Namespace) -> str:
    if ns.prompt != "-":
        return ns.prompt
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def run_one_shot(ns: argparse.Namespace, spec, settings_args: list[str]) -> int:
    """Stream one reply to stdout and save the exchange.

    Every way the reply can end early (Ctrl-C, SIGTERM, SIGHUP, a closed stdout, an
    error) keeps and saves exactly the text already printed, with its stop reason, and
    says it was saved only when it was. A reply that cannot be saved is still printed;
    then one sentence says why, and the exit code is 1."""
    from ..engine import ChatRequest, EngineError, GenerationSettings
    from ..reasons import StopReason
    from ..store import StoreError

    prompt = read_prompt(ns)
    if not prompt.strip():
        error("The prompt is empty.")
        return EXIT_USAGE
    settings = GenerationSettings()
    try:
        engine = make_engine(ns, settings)
    except EngineError as exc:
        error(str(exc))
        return EXIT_ERROR
    progress = StderrProgress()
    try:
        settings.update(settings_args)
        engine.load(spec, progress)
        if ns.assistant_model:
            engine.load_assistant(spec.with_changes(source=ns.assistant_model), progress)
    except EngineError as exc:
        progress.clear()
        error(str(exc))
        return EXIT_ERROR
    progress.clear()

    try:
        store, conv = open_conversation(ns, spec, settings)
    except StoreError as exc:  # e.g. --session NAME whose file cannot be read
        error(str(exc))
        return EXIT_ERROR
    turn = Turn(ns, store, conv)
    conv.append("user", prompt)
    turn.save()  # answer even if this fails; the end says so
    if ns.compare:
        from .compare import run_compare

        return run_compare(ns, engine, turn, progress)

    from ..engine.reasoning import Reasoning, parts

    received: list[str] = []

    def on_text(chunk: str) -> None:
        received.append(chunk)
        if isinstance(chunk, Reasoning):
            turn.think(chunk)
        else:
            turn.thinking_done()
            turn.write(chunk)

    said_first: list[str] = []

    def on_start(info) -> None:  # what the turn's set-up found, said before the reply
        for notice in info.notices:
            note(notice)
            said_first.append(notice)

    request = ChatRequest(conv.chat_messages(), conv.system_prompt or None)
    try:
        result = turn.generate(
            lambda: engine.chat(request, stop_event=turn.stop, on_text=on_text, on_start=on_start)
        )
    except EngineError as exc:
        error(str(exc))
        return EXIT_ERROR
    thought, text = parts(received)
    if result is not None and not turn.interrupts.received:
        thought, text = result.reasoning, result.text
    turn.thinking_done()
    turn.finish_text()
    if text and not text.endswith("\n"):
        turn.write("\n")
    stats = result.stats if result is not None else None
    if turn.cut_short:
        reason = StopReason.INTERRUPTED
    else:
        reason = StopReason(stats.stop_reason) if stats else StopReason.ERROR
    fields = stats.message_fields() if stats else {}
    fields.update(stop_reason=reason, reasoning=thought or None)
    conv.append(
        "assistant",
        text,
        model=engine.loaded.name if engine.loaded else spec.display_name,
        **fields,
    )
    notes = [n for n in result.notices if n not in said_first] if result is not None else []
    if ns.stats and stats is not None:
        notes.append(stats.describe())
    failures = [stats.error] if stats is not None and stats.error else []
    return turn.end("the partial reply was", notes, failures)
