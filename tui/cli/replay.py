"""``--replay CONVERSATION[:MESSAGE]``: make a saved reply again from its snapshot and
say whether it is identical, or where it diverges and why."""

from __future__ import annotations

import argparse
import threading

from .output import EXIT_ERROR, EXIT_OK, StderrProgress, Stdout, StdoutFailed, error, note
from .signals import Interrupts


def replay_target(store, text: str):
    """(conversation, reply) for ``CONVERSATION[:MESSAGE]``."""
    from ..store import StoreError

    info = store.find(text)
    selector: str | None = None
    if info is None and ":" in text:
        name, _, selector = text.rpartition(":")
        info = store.find(name)
    if info is None:
        raise StoreError(store.not_found(text))
    conv = store.load(info.id)
    transcript = conv.transcript
    if selector is None:
        message = next((m for m in reversed(transcript) if m.role == "assistant"), None)
        if message is None:
            raise StoreError(f"{info.label} has no reply to replay.")
        return conv, message
    message = conv.get(selector)
    if message is None:
        try:
            number = int(selector)
        except ValueError:
            raise StoreError(
                f"{info.label} has no message {selector!r} (give its id, or its number in the "
                "conversation)."
            ) from None
        if number == 0 or abs(number) > len(transcript):
            raise StoreError(
                f"{info.label} has {len(transcript)} messages; there is no message {number}."
            )
        message = transcript[number - 1 if number > 0 else number]
    if message.role != "assistant":
        raise StoreError(f"Message {selector} of {info.label} is not a reply; pick a reply.")
    return conv, message


def replay_spec(snapshot: object, start, given: dict[str, object]):  # -> ModelSpec | None
    """The model ``--replay`` may load for a reply's ``snapshot``, and the sentences to
    say first. The file describes; only the command line authorizes: the snapshot's
    model loads when it is the one chat-tui starts with (``start``: the default or
    config.toml's model) or when the user names a model (``--model``), and remote code
    runs only with ``--trust-remote-code``. ``None`` spec: no snapshot (``replay`` says
    so). Raises :class:`EngineError` (one sentence) when the reply's model is another
    one the user did not name."""
    from ..engine.errors import EngineError
    from ..engine.provenance import Provenance
    from ..engine.trust import same_model

    saved = Provenance.from_dict(snapshot)
    if saved is None or not saved.spec:
        return None, []
    recorded = saved.recorded()
    if "source" not in given and not same_model(recorded.spec, start):
        raise EngineError(
            f"This reply was made by {recorded.spec.display_name} ({recorded.source}), not the "
            f"model chat-tui starts with; to replay it with that model, name it: --model "
            f"{recorded.source}."
        )
    said = list(recorded.refused)
    if recorded.remote_code and given.get("trust_remote_code") is True:
        said = said[1:]  # the user allowed it, now, on the command line
    return recorded.spec.with_changes(**given), said


def run_replay(ns: argparse.Namespace, start, given: dict[str, object]) -> int:
    """--replay: make a saved reply again from its snapshot; print "identical" or where
    it diverges and why (stdout). Exit 0 when identical, 1 otherwise."""
    from ..engine import EngineError
    from ..engine.replay import replay
    from ..safe_text import one_line
    from ..store import SessionStore, StoreError

    store = SessionStore(ns.data_dir)
    try:
        conv, message = replay_target(store, ns.replay)
        spec, said = replay_spec(message.provenance, start, given)
    except (StoreError, EngineError) as exc:
        error(str(exc))
        return EXIT_ERROR
    for sentence in said:
        note(sentence)
    history = [m.as_chat() for m in conv.path(message.parent) if m.role != "system"]
    if message.parent is None:
        history = []
    progress = StderrProgress()
    stop = threading.Event()
    try:
        with Interrupts(stop) as interrupts:
            report = replay(
                history,
                message.content,
                message.provenance or {},
                system_prompt=conv.system_prompt or None,
                saved_stop_reason=message.stop_reason,
                saved_reasoning=message.reasoning or "",
                progress=progress,
                stop_event=stop,
                spec=spec,
                allow_download=True,  # the model chat-tui starts with, or one the user named
            )
    except EngineError as exc:
        progress.clear()
        error(str(exc))
        return EXIT_ERROR
    progress.clear()
    if interrupts.received:
        error("Interrupted.")
        return interrupts.exit_code
    try:
        Stdout(raw=True).write(one_line(report.describe()) + "\n", flush=True)
    except StdoutFailed as exc:
        return exc.report()
    if ns.stats and report.result is not None:
        note(report.result.stats.describe())
    return EXIT_OK if report.identical else EXIT_ERROR
