"""Compare one turn across precisions: both replies with their costs, how far they
agree, memory-aware loading, and the reference model exactly as before afterwards."""

from __future__ import annotations

import threading

import pytest

from tests.store.helpers import run_cli
from tui.engine import ChatRequest, GenerationSettings, LocalEngine, ModelSpec
from tui.engine import compare as compare_module
from tui.engine.compare import (
    PLACEMENT_SAME,
    PLACEMENT_SEQUENTIAL,
    PLACEMENT_TOGETHER,
    compare_turn,
    first_divergence,
    format_table,
    plan_placement,
    similarity,
)
from tui.engine.errors import EngineError
from tui.store import Conversation, SessionStore

QUESTION = [{"role": "user", "content": "Tell me about the sea, one two three."}]
HISTORY = [{"role": "user", "content": "Hello there, how are you today?"}]


@pytest.fixture(scope="module")
def engine(tiny_llama_dir) -> LocalEngine:
    """A reference engine with a conversation in its KV cache."""
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(tiny_llama_dir)))
    engine.settings.update(["max_new_tokens=10"])
    engine.chat(ChatRequest(HISTORY, conversation_id="kept"))
    return engine


def kept_state(engine: LocalEngine) -> tuple[object, int, int]:
    return engine.loaded, engine.kv_cache.tokens("kept"), engine.cache_bytes("kept")


def next_turn(engine: LocalEngine) -> tuple[str, int]:
    """The kept conversation's next turn (which reuses its KV cache)."""
    first = engine.chat(ChatRequest(HISTORY, conversation_id="probe-free"))  # same reply, no cache
    messages = [*HISTORY, {"role": "assistant", "content": first.text}, *QUESTION]
    reply = engine.chat(ChatRequest(messages, conversation_id="kept"))
    engine.forget("probe-free")
    return reply.text, reply.stats.reused_tokens


def test_agreement_measures() -> None:
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert first_divergence([1, 2], [1, 2, 3]) == 2
    assert first_divergence([], []) is None
    assert similarity([1, 2, 3], [1, 2, 3]) == 1.0
    assert similarity([1, 2, 3, 4], [5, 6, 7, 8]) == 0.0
    assert similarity([1, 2, 3, 4], [1, 2, 9, 4]) == 0.75
    assert similarity([], []) == 1.0


def test_fp32_against_bf16_side_by_side(engine, tiny_llama_dir) -> None:
    before = kept_state(engine)
    texts: dict[int, str] = {0: "", 1: ""}
    stages: list[str] = []
    finished: list[int] = []

    def on_text(index: int, chunk: str) -> None:
        texts[index] += chunk

    comparison = compare_turn(
        engine,
        QUESTION,
        ["@bf16"],
        placement="together",
        on_text=on_text,
        on_progress=lambda step: stages.append(step.stage),
        on_reply=lambda reply: finished.append(reply.index),
    )
    ref, bf16 = comparison.replies
    assert comparison.greedy and not comparison.stopped
    assert "greedy" in comparison.notes[0] and "max_new_tokens=10" in comparison.notes[0]
    assert comparison.settings.values["do_sample"] is False
    assert (ref.label, bf16.label) == ("@fp32", "@bf16")
    assert ref.placement == "reference" and bf16.placement == PLACEMENT_TOGETHER
    assert bf16.spec.dtype == "bf16" and bf16.spec.source == str(tiny_llama_dir)
    assert finished == [0, 1]
    assert {"generating", "loading", "scoring", "unloading"} <= set(stages)
    for reply in (ref, bf16):
        assert texts[reply.index] == reply.text and reply.text
        assert reply.stats.new_tokens == len(reply.token_ids) > 0
        assert reply.stats.time_to_first_token > 0 and reply.stats.tokens_per_second > 0
        assert reply.stats.stop_reason in ("eos", "length")
        assert reply.peak_bytes >= reply.weights_bytes > 0
        assert reply.turn_bytes == reply.peak_bytes - reply.weights_bytes
        assert reply.stats.provenance.dtype == reply.spec.dtype.replace("auto", "fp32")
        assert reply.mean_logprob is not None and reply.mean_logprob <= 0
    assert bf16.weights_bytes < 0.6 * ref.weights_bytes  # half the bytes per weight
    assert ref.similarity == 1.0 and ref.first_divergence is None and ref.logprob_gap == 0.0
    assert 0.0 <= bf16.similarity <= 1.0
    assert bf16.logprob_gap == pytest.approx(ref.mean_logprob - bf16.mean_logprob)
    if bf16.token_ids == ref.token_ids:
        assert bf16.first_divergence is None and bf16.logprob_gap == pytest.approx(0.0)
    else:
        assert bf16.first_divergence == first_divergence(ref.token_ids, bf16.token_ids)

    # the reference is exactly as it was: same object, same KV caches, reused as before
    assert kept_state(engine) == before
    _text, reused = next_turn(engine)
    assert reused > 0

    table = comparison.table()
    assert table.splitlines()[0].split()[:3] == ["spec", "weights", "peak"]
    assert "@fp32 (reference)" in table and "@bf16" in table
    assert "logprob gap" in table and "similarity" in table


def test_8bit_one_after_the_other_restores_the_reference(engine, greedy) -> None:
    next_turn(engine)  # the kept cache at its next turn, whichever tests ran before here
    before = kept_state(engine)
    weights_before = engine.loaded.model
    expected = next_turn(engine)
    comparison = compare_turn(engine, QUESTION, ["@8bit"], placement="one after the other")
    _ref, eight = comparison.replies
    assert eight.placement == PLACEMENT_SEQUENTIAL and eight.label == "@8bit"
    assert eight.spec.quantization == "8bit" and not eight.error
    assert eight.stats.provenance.quantization["method"] == "8bit"
    assert "bitsandbytes" in eight.stats.provenance.versions
    assert eight.similarity is not None and eight.logprob_gap is not None
    # the weights went away and came back: a new module, the same loaded model and caches
    assert engine.loaded.model is not weights_before
    assert kept_state(engine) == before
    assert next_turn(engine) == expected


def test_placement_follows_the_memory_estimate(engine, monkeypatch) -> None:
    spec = engine.loaded.spec.with_changes(dtype="bf16")
    where, why = plan_placement(engine, spec, 100)
    assert where == PLACEMENT_TOGETHER and "fits beside" in why
    estimate_for = compare_module.loader.estimate_for

    def tight(wanted: ModelSpec):  # as if the reference took nearly all the memory
        report = estimate_for(wanted)
        report.available = report.estimate.weight_bytes // 2
        return report

    monkeypatch.setattr(compare_module.loader, "estimate_for", tight)
    where, why = plan_placement(engine, spec, 100)
    assert where == PLACEMENT_SEQUENTIAL
    assert "one after the other" in why and "loaded again afterwards" in why
    before = kept_state(engine)
    comparison = compare_turn(engine, QUESTION, ["@bf16"])
    assert comparison.replies[1].placement == PLACEMENT_SEQUENTIAL
    assert any("one after the other" in note for note in comparison.notes)
    assert kept_state(engine) == before
    where, why = plan_placement(engine, ModelSpec(source="/no/such/model"), 100)
    assert where == PLACEMENT_SEQUENTIAL and "No memory estimate" in why


def test_the_same_spec_agrees_completely(engine) -> None:
    comparison = compare_turn(engine, QUESTION, ["@fp32"])
    ref, same = comparison.replies
    assert same.placement == PLACEMENT_SAME
    assert same.text == ref.text and same.first_divergence is None
    assert same.similarity == 1.0 and same.logprob_gap == 0.0
    assert "identical" in comparison.table()


def test_same_no_draft_measures_speculation(tiny_llama_dir) -> None:
    looking_up = LocalEngine(prompt_lookup=3)
    looking_up.load(ModelSpec(source=str(tiny_llama_dir)))
    looking_up.settings.update(["max_new_tokens=16"])
    repetitive = [{"role": "user", "content": "one two three four, one two three four, one two"}]
    comparison = compare_turn(looking_up, repetitive, ["@same-no-draft"])
    ref, plain = comparison.replies
    assert ref.stats.speculative and ref.stats.acceptance_rate is not None
    assert not plain.stats.speculative and plain.placement == PLACEMENT_SAME
    assert plain.text == ref.text  # greedy: speculation changes the speed, not the text
    header = comparison.table().splitlines()[0]
    assert "accepted" in header and "tok/fwd" in header
    assert looking_up.prompt_lookup == 3

    plain_engine = LocalEngine()
    plain_engine.load(ModelSpec(source=str(tiny_llama_dir)))
    with pytest.raises(EngineError, match="runs without it"):
        compare_turn(plain_engine, repetitive, ["@same-no-draft"])


def test_the_turns_own_settings_share_one_seed(engine) -> None:
    settings = GenerationSettings()
    settings.update(["do_sample=true", "temperature=0.9", "max_new_tokens=8"])
    comparison = compare_turn(
        engine, QUESTION, ["@bf16"], settings=settings, use_turn_settings=True
    )
    ref, bf16 = comparison.replies
    assert not comparison.greedy
    seed = comparison.settings.values["seed"]
    assert ref.stats.provenance.seed == bf16.stats.provenance.seed == seed
    assert f"seed {seed}" in comparison.notes[0]
    assert ref.logprob_gap is None and bf16.logprob_gap is None  # only meaningful greedy
    assert bf16.similarity is not None


def test_a_stop_ends_the_comparison_and_restores(engine) -> None:
    before = kept_state(engine)
    stop = threading.Event()

    def on_text(index: int, chunk: str) -> None:
        stop.set()

    comparison = compare_turn(
        engine, QUESTION, ["@bf16", "@8bit"], stop_event=stop, on_text=on_text, warm_up=False
    )
    assert comparison.stopped
    assert [r.label for r in comparison.replies] == ["@fp32"]
    assert comparison.replies[0].stats.stop_reason == "stopped"
    assert kept_state(engine) == before


def test_a_model_that_cannot_load_is_one_reply_with_an_error(engine) -> None:
    before = kept_state(engine)
    steps = []
    comparison = compare_turn(
        engine, QUESTION, ["/no/such/model@bf16", "@bf16"], on_progress=steps.append
    )
    _ref, missing, bf16 = comparison.replies
    # found missing before anything was loaded or set aside for it
    assert not [s for s in steps if s.index == 1 and s.stage in ("loading", "restoring")]
    assert missing.error and "No such folder" in missing.error
    assert missing.stats.stop_reason == "error" and missing.text == ""
    assert not bf16.error and bf16.text
    assert kept_state(engine) == before
    assert "error" in format_table(comparison.replies)


def test_what_cannot_be_compared_is_one_sentence(engine) -> None:
    with pytest.raises(EngineError, match="Unknown precision @int3"):
        compare_turn(engine, QUESTION, ["@int3"])
    with pytest.raises(EngineError, match="at least one spec"):
        compare_turn(engine, QUESTION, [])
    with pytest.raises(EngineError, match="local model"):
        compare_turn(object(), QUESTION, ["@bf16"])  # e.g. a remote backend


def test_both_replies_save_as_labelled_siblings(engine) -> None:
    comparison = compare_turn(engine, QUESTION, ["@bf16"])
    conv = Conversation(id="c")
    user = conv.append("user", QUESTION[0]["content"])
    for reply in comparison.replies:
        conv.add_child(
            user.id, "assistant", reply.text, make_head=reply.is_reference, **reply.message_fields()
        )
    ref, bf16 = conv.children()[user.id]
    assert conv.head == ref.id
    assert (ref.label, bf16.label) == ("@fp32", "@bf16")
    assert bf16.provenance["dtype"] == "bf16" and bf16.weights_bytes > 0
    assert ref.new_tokens == comparison.replies[0].stats.new_tokens


# -- one-shot ---------------------------------------------------------------------------


def test_one_shot_compare_prints_each_reply_then_one_table(tiny_llama_dir, tmp_path) -> None:
    data = str(tmp_path / "data")
    code, out, err = run_cli(
        "--data-dir",
        data,
        "--model",
        str(tiny_llama_dir),
        "--prompt",
        "Tell me about the sea.",
        "max_new_tokens=8",
        "--compare",
        "@bf16",
        "--compare",
        "@8bit",
        "--session",
        "cmp",
    )
    assert code == 0, err
    assert "greedy" in err and "Traceback" not in err

    store = SessionStore(data)
    conv = store.load(store.find("cmp").id)
    user = conv.transcript[0]
    replies = conv.children()[user.id]
    assert [m.label for m in replies] == ["@fp32", "@bf16", "@8bit"]
    assert conv.head == replies[0].id  # the loaded model's reply stays active
    for reply in replies:
        assert reply.content and reply.provenance["settings"]["do_sample"] is False
    assert replies[2].provenance["quantization"]["method"] == "8bit"

    # each reply under its label, as saved, then the table
    labels = ["@fp32 (reference)", "@bf16", "@8bit"]
    printed = "".join(
        f"[{label}]\n{reply.content}\n\n" for label, reply in zip(labels, replies, strict=True)
    )
    assert out.startswith(printed)
    table = out[len(printed) :].splitlines()
    assert table[0].split()[:4] == ["spec", "weights", "peak", "TTFT"]
    assert [row.split()[0] for row in table[2:]] == ["@fp32", "@bf16", "@8bit"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--compare", "@bf16"], "--compare goes with --prompt"),
        (["--prompt", "hi", "--compare", "@int3"], "Unknown precision @int3"),
        (["--prompt", "hi", "--compare", "@bf16", "--endpoint", "http://x"], "--endpoint"),
        # models that cannot exist are refused before the reference is loaded
        (["--prompt", "hi", "--compare", "./no-such-model@bf16"], "No such folder or file"),
        (["--prompt", "hi", "--compare", "a/b/" + "z" * 300], "No such folder or file"),
        (["--prompt", "hi", "--compare", "not a hub id!"], "not a folder, a .gguf file"),
    ],
)
def test_one_shot_compare_mistakes(args, says, tmp_path, monkeypatch) -> None:
    from tui.engine import LocalEngine

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(LocalEngine, "load", no_load)
    code, out, err = run_cli("--data-dir", str(tmp_path), *args)
    assert code == 2 and out == ""
    assert says in err
