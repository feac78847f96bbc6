"""Compare one turn across precisions or models: both replies, their costs, and how far
they agree.

:func:`compare_turn` answers one turn (messages + system prompt) with the loaded
model (the *reference*) and with each SPEC (``@bf16``, ``./other@8bit``,
``@same-no-draft``; see :func:`.spec.parse_compare_spec`), and measures each reply:
weights memory, peak memory during the turn, time to first token, tokens/s, new
tokens, stop reason; then how far it agrees with the reference: the first token where
they diverge, a token-level similarity, and (greedy runs) the mean log-probability of
its tokens under the reference model, against the reference's own.

Memory: before loading a compared model the memory estimate is checked. When both fit,
the second model loads into its own :class:`~.local.LocalEngine` beside the reference;
when they do not, the reference's weights are set aside while the other runs and
loaded again afterwards (:meth:`LocalEngine.set_aside`). Either way the reference engine
ends as it began: same ``loaded`` object, same draft model and settings, every
conversation's KV cache kept (the comparison itself never touches them: it runs
without a conversation id).

No Textual here. Blocking: call from a worker thread.
"""

from __future__ import annotations

import difflib
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..reasons import StopReason
from . import loader, memory
from .errors import EngineError
from .generation import GenerationStats
from .local import LocalEngine
from .protocol import ChatRequest
from .settings import SAMPLING, GenerationSettings
from .spec import CompareSpec, ModelSpec, parse_compare_spec, precision_tag

PLACEMENT_REFERENCE = "reference"
PLACEMENT_SAME = "same model"  # the reference engine itself (same spec, @same-no-draft)
PLACEMENT_TOGETHER = "together"  # a second engine beside the reference
PLACEMENT_SEQUENTIAL = "one after the other"  # the reference set aside meanwhile
PLACEMENTS = ("auto", PLACEMENT_TOGETHER, PLACEMENT_SEQUENTIAL)

MARGIN = 1.2  # head-room on the estimate: activations, allocator slack
MARGIN_BYTES = 64 * memory.MiB


@dataclass(frozen=True)
class CompareProgress:
    """One step of a comparison, for a status line.

    ``stage``: ``"generating"``, ``"loading"`` (``fraction`` 0..1), ``"scoring"``,
    ``"unloading"``, ``"restoring"`` (the reference loading again, ``fraction`` 0..1).
    ``index`` is the reply concerned (0: the reference), ``label`` its spec."""

    stage: str
    index: int
    label: str
    message: str
    fraction: float | None = None


OnProgress = Callable[[CompareProgress], None]
OnReplyText = Callable[[int, str], None]


@dataclass
class ComparedReply:
    """One side of a comparison (``index`` 0 is the reference)."""

    index: int
    label: str
    """The spec as written: ``@bf16``, ``./other@4bit``, ``@same-no-draft``; for the
    reference, its own precision (``@fp32``)."""
    model_name: str
    spec: ModelSpec | None
    placement: str
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    stats: GenerationStats = field(default_factory=GenerationStats)
    weights_bytes: int | None = None
    """The model's weights in memory (parameters and buffers)."""
    peak_bytes: int | None = None
    """Weights plus the most the turn added on top (peak process RSS, or CUDA allocated
    memory, during the turn minus the reading just before it): what this model needed
    for this turn, the same whether or not the other model was in memory too."""
    turn_bytes: int | None = None
    """The turn's own share of ``peak_bytes`` (activations, KV cache, buffers)."""
    first_divergence: int | None = None
    """Index of the first token that differs from the reference (None: identical)."""
    similarity: float | None = None
    """Token-level similarity with the reference, 0..1 (difflib's ratio: 2·matches /
    total tokens)."""
    mean_logprob: float | None = None
    """Greedy runs: mean log-probability of this reply's tokens under the reference
    model (teacher-forced on the same prompt)."""
    logprob_gap: float | None = None
    """Greedy runs: the reference reply's ``mean_logprob`` minus this one's; 0 for the
    reference, larger when the reference model finds this reply less likely."""
    error: str | None = None
    notices: list[str] = field(default_factory=list)
    reasoning: str = ""
    """A reasoning model's thinking before ``text`` (kept, not compared)."""

    @property
    def is_reference(self) -> bool:
        return self.index == 0

    @property
    def answer_ids(self) -> list[int]:
        """The answer's tokens: what similarity and divergence compare."""
        return self.token_ids[self.stats.reasoning_tokens or 0 :]

    def message_fields(self) -> dict[str, Any]:
        """Keyword arguments for ``tui.store`` ``Conversation.append`` /
        ``add_child``: the reply's stats, snapshot, label and memory."""
        fields = self.stats.message_fields()
        fields.update(
            model=self.model_name,
            label=self.label,
            weights_bytes=self.weights_bytes,
            peak_bytes=self.peak_bytes,
            reasoning=self.reasoning or None,
        )
        if self.error and not fields.get("error"):
            fields["error"] = self.error
        return fields


@dataclass
class Comparison:
    replies: list[ComparedReply]
    """The reference first, then one per spec, in the order given."""
    greedy: bool
    settings: GenerationSettings
    """What every side generated with (greedy: do_sample=false and one max_new_tokens)."""
    notes: list[str] = field(default_factory=list)
    """Sentences for the user: greedy or not, models run one after the other, ..."""
    stopped: bool = False

    @property
    def reference(self) -> ComparedReply | None:
        return self.replies[0] if self.replies else None

    def table(self) -> str:
        return format_table(self.replies)


# -- agreement ------------------------------------------------------------------------


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The first index where ``a`` and ``b`` differ (the shorter one's length when one is
    a prefix of the other); None when they are equal."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return None if len(a) == len(b) else n


def similarity(a: Sequence[int], b: Sequence[int]) -> float:
    """2·(matching tokens) / (total tokens), by difflib's longest matching blocks;
    1.0 for two empty replies."""
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, list(a), list(b), autojunk=False).ratio()


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _same_vocabulary(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return len(a) == len(b) and a.get_vocab() == b.get_vocab()
    except Exception:
        return False


# -- settings and placement -----------------------------------------------------------


def comparison_settings(
    engine: LocalEngine,
    messages: Sequence[dict[str, str]],
    system_prompt: str | None,
    base: GenerationSettings,
    use_turn_settings: bool = False,
) -> tuple[GenerationSettings, bool]:
    """The settings every side uses, and whether they are greedy.

    Default: greedy (``do_sample=false``, one beam, no seed) with the reference turn's
    ``max_new_tokens`` written out, so every model gets the same budget. With
    ``use_turn_settings`` the turn's own settings; a sampled turn without a seed gets
    one drawn here, so every side samples from the same seed."""
    values = dict(base.values)
    if not use_turn_settings:
        for name in (*SAMPLING, "seed", "do_sample", "num_beams"):
            values.pop(name, None)
        values["do_sample"] = False
        values["num_beams"] = 1
    _prompt, info = engine.prepare_turn(messages, system_prompt, GenerationSettings(values))
    if info.max_new_tokens is not None:
        values["max_new_tokens"] = info.max_new_tokens
    effective = engine.effective_settings(GenerationSettings(values))
    if use_turn_settings and effective.values.get("do_sample") and values.get("seed") is None:
        values["seed"] = secrets.randbelow(2**32)
    greedy = not effective.values.get("do_sample") and (effective.values.get("num_beams") or 1) == 1
    return GenerationSettings(values), greedy


def plan_placement(reference: LocalEngine, spec: ModelSpec, tokens: int) -> tuple[str, str]:
    """Whether ``spec`` can be loaded beside the reference (``PLACEMENT_TOGETHER``) or
    must run while the reference is set aside (``PLACEMENT_SEQUENTIAL``), with the
    sentence that says why (from the memory estimate, for ``tokens`` of context)."""
    ref_name = reference.loaded.name if reference.loaded else "the loaded model"
    try:
        report = loader.estimate_for(spec)
    except Exception as exc:  # an estimate is advice: any failure means "not known"
        return (
            PLACEMENT_SEQUENTIAL,
            f"No memory estimate for {spec.display_name} before loading it ({exc.__class__.__name__}"
            f"), so it runs while {ref_name} is set aside; {ref_name} is loaded again afterwards.",
        )
    needed = int(report.estimate.total_bytes(tokens) * MARGIN) + MARGIN_BYTES
    if needed <= report.available:
        return (
            PLACEMENT_TOGETHER,
            f"{spec.display_name} {spec.precision_label} (about {memory.human_bytes(needed)}) "
            f"fits beside {ref_name} ({memory.human_bytes(report.available)} free).",
        )
    return (
        PLACEMENT_SEQUENTIAL,
        f"{spec.display_name} {spec.precision_label} needs about {memory.human_bytes(needed)} "
        f"but {memory.human_bytes(report.available)} is free beside {ref_name}: they run one "
        f"after the other, and {ref_name} is loaded again afterwards.",
    )


# -- the comparison -------------------------------------------------------------------


class _Run:
    """State shared by the steps of one :func:`compare_turn` call."""

    def __init__(
        self,
        engine: LocalEngine,
        request: ChatRequest,
        event: threading.Event,
        on_progress: OnProgress | None,
        on_text: OnReplyText | None,
        warm_up: bool = True,
    ) -> None:
        self.warm_up = warm_up
        self.engine = engine
        self.request = request  # the turn every side answers, without a conversation id
        self.event = event
        self.on_progress = on_progress
        self.on_text = on_text

    def report(
        self, stage: str, index: int, label: str, message: str, fraction: float | None = None
    ) -> None:
        if self.on_progress is not None:
            self.on_progress(CompareProgress(stage, index, label, message, fraction))

    def loading(self, stage: str, index: int, label: str) -> Callable[[float, str], None]:
        def progress(fraction: float, what: str) -> None:
            self.report(stage, index, label, f"{label}: {what}", fraction)

        return progress

    def generate(
        self,
        engine: LocalEngine,
        index: int,
        label: str,
        placement: str,
        speculative: bool = True,
    ) -> ComparedReply:
        loaded = engine.require_model()
        self.report("generating", index, label, f"{label}: generating")
        send = self.on_text
        if self.warm_up and not self.event.is_set():
            self._warm_up(engine, speculative)

        def on_text(chunk: str) -> None:
            if send is not None:
                send(index, chunk)

        with memory.PeakSampler(str(loaded.device)) as sampler:
            result = engine.chat(
                replace(self.request, speculative=speculative),
                stop_event=self.event,
                on_text=on_text,
            )
        growth = sampler.growth_bytes
        weights = loaded.footprint_bytes
        return ComparedReply(
            index=index,
            label=label,
            model_name=loaded.name,
            spec=loaded.spec,
            placement=placement,
            text=result.text,
            reasoning=result.reasoning,
            token_ids=list(result.token_ids),
            stats=result.stats,
            weights_bytes=weights,
            peak_bytes=weights + growth if growth is not None else None,
            turn_bytes=growth,
            error=result.stats.error,
            notices=list(result.notices),
        )

    def _warm_up(self, engine: LocalEngine, speculative: bool) -> None:
        """A two-token reply to a short question before the measured one: the first
        forward passes of a model (or of a dtype's kernels) pay one-time costs that
        would otherwise land on whichever side runs first."""
        warm = GenerationSettings({"max_new_tokens": 2, "min_new_tokens": 2, "do_sample": False})
        try:
            engine.chat(
                ChatRequest(
                    [{"role": "user", "content": "Hi"}], settings=warm, speculative=speculative
                ),
                stop_event=self.event,
            )
        except EngineError:
            pass

    def on_other(
        self, spec: ModelSpec, index: int, label: str, placement: str
    ) -> tuple[ComparedReply, bool]:
        """Load ``spec`` in an engine of its own, answer, unload. (reply, whether its
        tokenizer has the reference's vocabulary)."""
        reference = self.engine
        other = LocalEngine(settings=reference.settings, prompt_lookup=reference.prompt_lookup)
        other.reuse_cache = False
        other.assistant = reference.assistant  # the same draft, shared, not loaded twice
        self.report("loading", index, label, f"loading {label}", 0.0)
        try:
            other.load(spec, self.loading("loading", index, label))
        except EngineError as exc:
            other.assistant = None
            return _failed(index, label, spec, placement, exc), False
        try:
            reply = self.generate(other, index, label, placement)
            same = _same_vocabulary(other.require_model().tokenizer, reference.loaded.tokenizer)
        finally:
            self.report("unloading", index, label, f"unloading {label}")
            loaded, other.loaded, other.assistant = other.loaded, None, None
            if loaded is not None:
                loaded.unload()
            del loaded, other
            memory.release()
        return reply, same


def compare_turn(
    engine: LocalEngine,
    messages: Sequence[dict[str, str]],
    specs: Sequence[str | CompareSpec],
    *,
    system_prompt: str | None = None,
    settings: GenerationSettings | None = None,
    use_turn_settings: bool = False,
    placement: str = "auto",
    stop_event: threading.Event | None = None,
    on_progress: OnProgress | None = None,
    on_text: OnReplyText | None = None,
    on_reply: Callable[[ComparedReply], None] | None = None,
    warm_up: bool = True,
) -> Comparison:
    """Answer one turn with the loaded model and with each of ``specs``; measure and
    compare the replies. Blocking: call it from a worker thread.

    ``messages`` are the turn's role/content dicts up to and including the user's
    message (as for :meth:`LocalEngine.chat`); ``settings`` default to the engine's.
    Greedy unless ``use_turn_settings``. ``placement``: ``"auto"`` (by the memory
    estimate), ``"together"`` or ``"one after the other"``.

    Callbacks run in the calling thread: ``on_progress`` (a :class:`CompareProgress`
    per step), ``on_text(index, chunk)`` as each reply streams (0: the reference),
    ``on_reply`` once a reply is measured. Setting ``stop_event`` stops the reply being
    generated and skips the rest; the reference model is restored whatever happens.
    ``warm_up``: each model first answers a two-token question, unmeasured, so one-time
    start-up costs do not land on the first side measured.

    Raises :class:`EngineError` (one sentence) before anything runs for a bad spec or
    an engine that cannot compare, and if the reference model cannot be loaded again
    after running one after the other (the engine is then without a model)."""
    if not isinstance(engine, LocalEngine):
        raise EngineError(
            "Comparing runs models on this machine; switch back to a local model first."
        )
    if placement not in PLACEMENTS:
        raise EngineError(
            f"Unknown placement {placement!r}; choose one of {', '.join(PLACEMENTS)}."
        )
    parsed = [s if isinstance(s, CompareSpec) else parse_compare_spec(s) for s in specs]
    if not parsed:
        raise EngineError("Give at least one spec to compare with, e.g. @bf16.")
    base = settings or engine.settings
    speculating = bool(
        engine.assistant is not None
        or engine.prompt_lookup
        or base.values.get("prompt_lookup_num_tokens")
    )
    if any(p.no_draft for p in parsed) and not speculating:
        raise EngineError(
            "@same-no-draft measures speculative decoding, but this model runs without it; "
            "start with --assistant-model or --prompt-lookup."
        )
    event = stop_event or threading.Event()
    engine.require_model()

    def waiting(what: str) -> None:  # replies streaming in other tabs end first
        if on_progress is not None:
            on_progress(CompareProgress("waiting", 0, "", f"waiting for {what}"))

    with engine.exclusive(event, "a comparison", waiting) as held:
        if not held:
            return Comparison([], True, base, stopped=True)
        reference = engine.require_model()
        turn, greedy = comparison_settings(engine, messages, system_prompt, base, use_turn_settings)
        # never the conversation's KV cache: no conversation id
        request = ChatRequest(messages, system_prompt, settings=turn)
        run = _Run(engine, request, event, on_progress, on_text, warm_up)
        prompt, _info = engine.prepare_turn(messages, system_prompt, turn)
        notes = [
            f"Every reply is greedy (do_sample=false, max_new_tokens="
            f"{turn.values.get('max_new_tokens')}) for a fair comparison."
            if greedy
            else "Every reply uses the turn's own settings"
            + (f" and seed {turn.values['seed']}." if "seed" in turn.values else ".")
        ]
        comparison = Comparison([], greedy, turn, notes)
        ref_label = precision_tag(reference.spec, reference.dtype)
        ref = run.generate(engine, 0, ref_label, PLACEMENT_REFERENCE)
        ref.first_divergence, ref.similarity = None, 1.0
        ref_ok = ref.stats.stop_reason not in (StopReason.ERROR,) and not event.is_set()
        if greedy and ref_ok and ref.token_ids:
            run.report("scoring", 0, ref_label, "scoring the reference reply")
            ref.mean_logprob = _mean(engine.score(prompt.ids, ref.token_ids))
            ref.logprob_gap = 0.0
        comparison.replies.append(ref)
        if on_reply is not None:
            on_reply(ref)

        for index, wanted in enumerate(parsed, 1):
            if event.is_set() or ref.stats.stop_reason == StopReason.STOPPED:
                comparison.stopped = True
                break
            reply = _compare_one(run, wanted, index, placement, prompt.ids, ref, comparison)
            comparison.replies.append(reply)
            if on_reply is not None:
                on_reply(reply)
        if event.is_set() or any(
            r.stats.stop_reason == StopReason.STOPPED for r in comparison.replies
        ):
            comparison.stopped = True
        return comparison


def _failed(
    index: int, label: str, spec: ModelSpec, placement: str, exc: EngineError
) -> ComparedReply:
    """The reply of a side whose model could not be loaded: its error, nothing else."""
    failed = ComparedReply(index, label, spec.display_name, spec, placement, error=str(exc))
    failed.stats.stop_reason = StopReason.ERROR
    failed.stats.error = str(exc)
    return failed


def _compare_one(
    run: _Run,
    wanted: CompareSpec,
    index: int,
    placement: str,
    prompt_ids: list[int],
    ref: ComparedReply,
    comparison: Comparison,
) -> ComparedReply:
    engine = run.engine
    reference = engine.require_model()
    label = wanted.label
    target = wanted.resolve(reference.spec)
    same_vocab = True
    if wanted.no_draft:
        reply = run.generate(engine, index, label, PLACEMENT_SAME, speculative=False)
    elif target in (reference.spec, reference.spec.with_changes(dtype=reference.dtype)):
        # what is loaded already (``@fp32`` for a model loaded with dtype auto on CPU)
        reply = run.generate(engine, index, label, PLACEMENT_SAME)
    else:
        try:  # a missing folder fails here, before the reference is set aside for it
            loader.check_local_source(target)
        except EngineError as exc:
            return _failed(index, label, target, placement, exc)
        where = placement
        if where == "auto":
            tokens = len(prompt_ids) + int(run.request.settings.values.get("max_new_tokens") or 0)
            where, why = plan_placement(engine, target, tokens)
            if where == PLACEMENT_SEQUENTIAL:
                comparison.notes.append(why)
        elif where == PLACEMENT_SEQUENTIAL:
            comparison.notes.append(
                f"{ref.label} and {label} ran one after the other (as asked): "
                f"{reference.name} was set aside meanwhile and loaded again afterwards."
            )
        if where == PLACEMENT_SEQUENTIAL:
            with engine.set_aside(run.loading("restoring", 0, ref.label)):
                reply, same_vocab = run.on_other(target, index, label, where)
        else:
            reply, same_vocab = run.on_other(target, index, label, where)
    if reply.error or reply.stats.stop_reason == StopReason.ERROR:
        return reply

    tokenizer = reference.tokenizer
    if same_vocab:  # the answers are compared; the reasoning is kept, not compared
        mine, theirs = reply.answer_ids, ref.answer_ids
    else:  # another tokenizer: compare both texts in the reference's tokens
        mine = tokenizer(reply.text, add_special_tokens=False)["input_ids"]
        theirs = tokenizer(ref.text, add_special_tokens=False)["input_ids"]
        reply.notices.append(
            f"{label} has another tokenizer: agreement is measured on both texts in "
            f"{reference.name}'s tokens."
        )
    reply.first_divergence = first_divergence(theirs, mine)
    reply.similarity = similarity(theirs, mine)
    stopped = run.event.is_set() or reply.stats.stop_reason == StopReason.STOPPED
    if comparison.greedy and ref.mean_logprob is not None and mine and not stopped:
        run.report("scoring", index, label, f"scoring {label} under {ref.label}")
        scored = reply.token_ids if same_vocab else mine  # the whole reply, as written
        reply.mean_logprob = _mean(engine.score(prompt_ids, scored))
        if reply.mean_logprob is not None:
            reply.logprob_gap = ref.mean_logprob - reply.mean_logprob
    return reply


# -- a table for the command line and the benchmark ---------------------------------------


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds is not None else "-"


def _num(value: float | None, pattern: str) -> str:
    return pattern.format(value) if value is not None else "-"


def table_rows(replies: Sequence[ComparedReply]) -> tuple[list[str], list[list[str]]]:
    speculative = any(r.stats.speculative for r in replies)
    header = ["spec", "weights", "peak", "TTFT", "tok/s", "new", "stop"]
    if speculative:
        header += ["accepted", "tok/fwd"]
    header += ["diverges at", "similarity", "logprob gap"]
    rows: list[list[str]] = []
    for r in replies:
        stats = r.stats
        row = [
            r.label + (" (reference)" if r.is_reference else ""),
            memory.human_bytes(r.weights_bytes),
            memory.human_bytes(r.peak_bytes),
            _ms(stats.time_to_first_token),
            _num(stats.tokens_per_second, "{:.1f}"),
            str(stats.new_tokens) if not r.error else "-",
            stats.stop_reason if not r.error else "error",
        ]
        if speculative:
            rate = stats.acceptance_rate
            row += [
                f"{rate * 100:.0f}%" if rate is not None else "-",
                _num(stats.tokens_per_forward if stats.speculative else None, "{:.2f}"),
            ]
        if r.is_reference or r.error or r.similarity is None:
            divergence = "-"
        else:
            divergence = (
                "identical" if r.first_divergence is None else f"token {r.first_divergence}"
            )
        row += [
            divergence,
            _num(r.similarity, "{:.2f}"),
            _num(r.logprob_gap, "{:+.3f}"),
        ]
        rows.append(row)
    return header, rows


def format_table(replies: Sequence[ComparedReply]) -> str:
    """One row per reply (the reference first), aligned columns, plain text."""
    header, rows = table_rows(replies)
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    lines = []
    for n, row in enumerate([header, *rows]):
        cells = [
            cell.ljust(w) if c == 0 else cell.rjust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
