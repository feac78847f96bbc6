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
from typing import Any

from ..reasons import StopReason
from . import memory
from .errors import EngineError
from .generation import GenerationResult
from .local import LocalEngine
from .progress import Progress
from .protocol import ChatRequest
from .provenance import Provenance, differences
from .spec import ModelSpec
from .trust import from_file, same_model

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
    saved_reasoning: str | None = None,
    engine: LocalEngine | None = None,
    progress: Progress | None = None,
    stop_event: threading.Event | None = None,
    on_text: Callable[[str], None] | None = None,
    spec: ModelSpec | None = None,
    allow_download: bool = False,
) -> ReplayReport:
    """Generate the reply to ``messages`` again from ``snapshot`` and compare it with
    ``saved_text``.

    ``engine``: the app's engine. It is used as it is when it has exactly the snapshot's
    model loaded; otherwise the snapshot's model loads into an engine of its own,
    beside it when the memory estimate says both fit, or while its weights are set
    aside (:meth:`LocalEngine.set_aside`; loaded again afterwards, KV caches kept), and is
    unloaded after. Without ``engine``, the snapshot's model is simply loaded.
    ``saved_stop_reason``: a reply that was cut short (stopped, interrupted) is
    identical when the replay begins with it. ``saved_reasoning``: a reasoning model's
    thinking before the answer, which must be made again too (None: not compared).
    Raises :class:`EngineError` (one
    sentence) when the snapshot cannot be replayed or its model cannot be loaded.

    ``spec``: the model to replay with, as the caller decided it with the user (see
    :mod:`.trust`); by default the snapshot's own, made safe (no remote code, no
    template file, a local attention implementation). ``allow_download``: the user
    asked, at this moment, for a model that is not on this machine to be downloaded;
    otherwise such a model is refused in one sentence."""
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
    chosen = spec is not None
    spec = spec if spec is not None else saved.model_spec()
    event = stop_event or threading.Event()
    run = _Replay(saved, messages, system_prompt, event, on_text, progress, allow_download)
    notes: list[str] = []
    loaded = engine.loaded if engine is not None else None
    if not allow_download and not (loaded is not None and same_model(loaded.spec, spec)):
        from .loader import on_this_machine

        if not on_this_machine(spec):
            raise EngineError(
                f"This reply was made by {spec.source}, which is not on this machine; chat-tui "
                "downloads a model that a file names only when you ask (load it with ctrl+l "
                "or --model, then replay)."
            )
    if engine is None:
        result, tokenizer = run.on_own_engine(spec)
    else:
        with engine.exclusive(event, "a replay", run.waiting) as held:
            if not held:
                return ReplayReport(False, "", saved_text, stopped=True)
            loaded = engine.loaded
            if not chosen and loaded is not None and same_model(loaded.spec, spec):
                # the user allowed (or not) this model's code when they loaded it
                spec = spec.with_changes(trust_remote_code=loaded.spec.trust_remote_code)
            if loaded is not None and loaded.model is not None and loaded.spec == spec:
                result, tokenizer = run.on(engine)
            else:
                from .compare import PLACEMENT_SEQUENTIAL, plan_placement

                budget = saved.settings.get("max_new_tokens")
                budget = budget if isinstance(budget, int) and not isinstance(budget, bool) else 0
                tokens = (saved.prompt_tokens or 0) + max(0, min(budget, 2**31))
                where, why = plan_placement(engine, spec, tokens)
                if where == PLACEMENT_SEQUENTIAL and loaded is not None:
                    notes.append(why)
                    with engine.set_aside(progress):
                        result, tokenizer = run.on_own_engine(spec)
                else:
                    result, tokenizer = run.on_own_engine(spec)
    if result is None:
        return ReplayReport(False, "", saved_text, stopped=True, notes=notes)

    report = ReplayReport(False, result.text, saved_text, result=result, notes=notes)
    if result.stats.stop_reason == StopReason.STOPPED and event.is_set():
        report.stopped = True
        return report
    now = result.stats.provenance
    report.reasons = differences(saved, now) if now is not None else []
    if result.stats.error:
        report.reasons.insert(0, f"generation failed: {result.stats.error}")
    if saved_reasoning is not None and result.reasoning != saved_reasoning:
        if (
            saved_stop_reason in _CUT_SHORT
            and not saved_text
            and saved_reasoning
            and result.reasoning.startswith(saved_reasoning)
        ):
            report.identical = True
            report.notes.append(
                f"the saved reply was {saved_stop_reason} while thinking, after "
                f"{len(saved_reasoning)} characters of reasoning; the replay matches it up to there"
            )
            return report
        report.reasons.append("the reasoning before the answer differs")
        if result.text == saved_text:
            return report
    elif result.text == saved_text:
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


class _Replay:
    """The generation of one replay, on whichever engine holds the model."""

    def __init__(
        self,
        saved: Provenance,
        messages: Sequence[dict[str, str]],
        system_prompt: str | None,
        event: threading.Event,
        on_text: Callable[[str], None] | None,
        progress: Progress | None,
        allow_download: bool = False,
    ) -> None:
        self.allow_download = allow_download
        self.saved = saved
        self.messages = list(messages)
        self.system_prompt = system_prompt
        self.event = event
        self.on_text = on_text
        self.progress = progress

    def waiting(self, what: str) -> None:
        """Replies streaming in other tabs end first: said as progress."""
        if self.progress is not None:
            self.progress(0.0, f"waiting for {what}")

    def on(self, engine: LocalEngine) -> tuple[GenerationResult | None, Any]:
        """Generate on ``engine`` with the snapshot's settings, seed and speculation."""
        saved = self.saved
        with engine.exclusive(self.event, "a replay", self.waiting) as held:
            if not held:
                return None, None
            previous = engine.prompt_lookup
            wanted = saved.speculative.get("prompt_lookup")
            engine.prompt_lookup = wanted if isinstance(wanted, int) else None
            try:
                request = ChatRequest(
                    self.messages,
                    self.system_prompt,
                    settings=saved.generation_settings(),
                    speculative=bool(saved.speculative),
                )
                result = engine.chat(request, stop_event=self.event, on_text=self.on_text)
            finally:
                engine.prompt_lookup = previous
            return result, engine.require_model().tokenizer

    def on_own_engine(self, spec: ModelSpec) -> tuple[GenerationResult | None, Any]:
        """Load ``spec`` (and the snapshot's draft model) in an engine of its own,
        generate, unload."""
        own = LocalEngine()
        own.reuse_cache = False
        try:
            own.load(spec, self.progress, allow_download=self.allow_download)
            draft = self.saved.speculative.get("assistant_model")
            if isinstance(draft, str):
                # the draft is named by the file: it gets no code of its own, no template
                draft_spec = from_file(
                    {**spec.to_dict(), "source": draft, "trust_remote_code": False},
                    what="this reply's draft model",
                ).spec.with_changes(revision=None, chat_template_file=None)
                own.load_assistant(draft_spec, self.progress, allow_download=self.allow_download)
            return self.on(own)
        finally:
            loaded, own.loaded, own.assistant = own.loaded, None, None
            if loaded is not None:
                loaded.unload()
            del loaded
            memory.release()
