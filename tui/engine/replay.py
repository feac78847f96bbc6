"""Make a saved reply again from its snapshot and say whether it came out the same.

:func:`replay` takes the turn's messages (everything before the reply), the system
prompt, the saved text and the saved :class:`~.provenance.Provenance`; loads the
snapshot's model at its precision (or uses an engine that already has exactly that
model loaded), generates with the snapshot's settings and seed, and reports
``identical`` or the first point of divergence, with the reasons it can find: a
different device, dtype, attention implementation, library versions, weights files or
prompt.

No Textual here. Blocking: call from a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .engine import Engine
from .errors import EngineError
from .generation import STOP_STOPPED, GenerationResult
from .progress import Progress
from .provenance import Provenance, differences
from .spec import ModelSpec

_CUT_SHORT = ("stopped", "interrupted", "error")


@dataclass
class ReplayReport:
    identical: bool
    text: str
    """The reply made again."""
    saved_text: str
    first_token: int | None = None
    """Index of the first differing token (in the model's tokens), None if identical."""
    first_char: int | None = None
    """Index of the first differing character, None if identical."""
    reasons: list[str] = field(default_factory=list)
    """Recorded conditions that differ now (device, versions, weights, prompt ...)."""
    notes: list[str] = field(default_factory=list)
    result: GenerationResult | None = None
    stopped: bool = False

    def describe(self) -> str:
        """One or two sentences: ``identical`` or where and (when known) why not."""
        if self.stopped:
            return "Replay stopped before the reply was made again."
        if self.identical:
            text = "identical"
            if self.notes:
                text += " (" + "; ".join(self.notes) + ")"
            return text
        where = (
            f"diverges at token {self.first_token}" if self.first_token is not None else "differs"
        )
        if self.first_char is not None:
            saved = _snippet(self.saved_text, self.first_char)
            new = _snippet(self.text, self.first_char)
            where += f" (character {self.first_char}: saved {saved!r}, now {new!r})"
        if self.reasons:
            why = "; reasons: " + "; ".join(self.reasons)
        else:
            why = "; no recorded condition differs (device, dtype, versions and weights match)"
        return where + why + "."


def _snippet(text: str, at: int, width: int = 24) -> str:
    return text[at : at + width]


def _first_char(a: str, b: str) -> int | None:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return None if len(a) == len(b) else n


def replay(
    messages: Sequence[dict[str, str]],
    saved_text: str,
    snapshot: Provenance | dict,
    *,
    system_prompt: str | None = None,
    saved_stop_reason: str | None = None,
    engine: Engine | None = None,
    progress: Progress | None = None,
    stop_event: threading.Event | None = None,
    on_text: Callable[[str], None] | None = None,
) -> ReplayReport:
    """Generate the reply to ``messages`` again from ``snapshot`` and compare it with
    ``saved_text``.

    ``engine``: an engine to use if it has exactly the snapshot's model loaded (the
    app's); otherwise a new engine loads the snapshot's model and is unloaded after.
    (For the app: when the loaded model differs, :func:`.compare.compare_turn`'s
    memory rules apply too; this function only loads a model of its own.)
    ``saved_stop_reason``: a reply that was cut short (stopped, interrupted) is
    identical when the replay begins with it. Raises :class:`EngineError` (one
    sentence) when the snapshot cannot be replayed or its model cannot be loaded."""
    saved = snapshot if isinstance(snapshot, Provenance) else Provenance.from_dict(snapshot)
    if saved is None or not saved.spec:
        raise EngineError(
            "This reply has no snapshot of how it was made (it predates them, or came from "
            "a server), so it cannot be replayed."
        )
    if saved.continue_final:
        raise EngineError(
            "This reply was continued after it was first made; it cannot be replayed."
        )
    spec = saved.model_spec()
    settings = saved.generation_settings()
    event = stop_event or threading.Event()

    own: Engine | None = None
    if engine is not None and engine.loaded is not None and engine.loaded.spec == spec:
        target = engine
    else:
        own = target = Engine(prompt_lookup=saved.speculative.get("prompt_lookup"))
        target.reuse_cache = False
        target.load(spec, progress)
        draft = saved.speculative.get("assistant_model")
        if isinstance(draft, str):
            target.load_assistant(spec.with_changes(source=draft), progress)
    try:
        with target.exclusive(event) as held:
            if not held:
                return ReplayReport(False, "", saved_text, stopped=True)
            prompt_lookup = target.prompt_lookup
            wanted_lookup = saved.speculative.get("prompt_lookup")
            target.prompt_lookup = wanted_lookup if isinstance(wanted_lookup, int) else None
            try:
                result = target.chat(
                    messages,
                    system_prompt=system_prompt,
                    conversation_id=None,
                    settings=settings,
                    stop_event=event,
                    on_text=on_text,
                    speculative=bool(saved.speculative),
                )
            finally:
                target.prompt_lookup = prompt_lookup
            tokenizer = target.require_model().tokenizer
    finally:
        if own is not None:
            loaded, own.loaded, own.assistant = own.loaded, None, None
            if loaded is not None:
                loaded.unload()
            from . import memory

            memory.release()

    report = ReplayReport(False, result.text, saved_text, result=result)
    if result.stats.stop_reason == STOP_STOPPED and event.is_set():
        report.stopped = True
        return report
    now = result.stats.provenance
    report.reasons = differences(saved, now) if now is not None else []
    if result.stats.error:
        report.reasons.insert(0, f"generation failed: {result.stats.error}")
    if result.text == saved_text:
        report.identical = True
        return report
    if saved_stop_reason in _CUT_SHORT and saved_text and result.text.startswith(saved_text):
        report.identical = True
        report.notes.append(
            f"the saved reply was {saved_stop_reason} after {len(saved_text)} characters; the "
            "replay matches it up to there"
        )
        return report
    saved_ids = tokenizer(saved_text, add_special_tokens=False)["input_ids"]
    new_ids = tokenizer(result.text, add_special_tokens=False)["input_ids"]
    from .compare import first_divergence

    report.first_token = first_divergence(saved_ids, new_ids)
    report.first_char = _first_char(saved_text, result.text)
    return report


def spec_of(snapshot: dict) -> ModelSpec:
    """The model a stored snapshot names (raises :class:`EngineError`)."""
    saved = Provenance.from_dict(snapshot)
    if saved is None:
        raise EngineError("This reply has no snapshot of how it was made.")
    return saved.model_spec()
