"""Reproducible turns: every reply carries a snapshot of how it was made; a sampled
reply without a seed draws one and keeps it; ``--replay`` makes a reply again from its
snapshot and says "identical" or where and why it diverges."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.store.helpers import run_cli
from tui.engine import ChatRequest, GenerationSettings, LocalEngine, ModelSpec
from tui.engine.errors import EngineError
from tui.engine.provenance import Provenance, differences, weights_fingerprint
from tui.engine.replay import replay
from tui.store import SessionStore

HELLO = [{"role": "user", "content": "Hello there, how are you today?"}]


def sampled(*assignments: str) -> GenerationSettings:
    settings = GenerationSettings()
    settings.update(["do_sample=true", "temperature=0.9", "max_new_tokens=10", *assignments])
    return settings


def test_every_reply_carries_a_snapshot(llama_engine, greedy, tiny_llama_dir) -> None:
    result = llama_engine.chat(ChatRequest(HELLO, settings=greedy("max_new_tokens=6")))
    snap = result.stats.provenance
    assert snap is not None
    assert snap.spec["source"] == str(tiny_llama_dir)
    assert snap.model_spec() == llama_engine.loaded.spec
    assert snap.dtype == "fp32" and snap.device == "cpu"
    assert snap.quantization == {"method": "none"}
    assert snap.attn_implementation in ("sdpa", "eager")
    assert snap.weights and snap.weights.startswith("files:")
    assert snap.settings["do_sample"] is False and snap.settings["max_new_tokens"] == 6
    assert snap.seed is None  # greedy: nothing to seed
    assert {"torch", "transformers", "chat-tui", "python"} <= set(snap.versions)
    assert snap.prompt_tokens == result.stats.prompt_tokens
    assert snap.prompt_sha256 and len(snap.prompt_sha256) == 16
    data = snap.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain values only
    assert Provenance.from_dict(data) == snap
    assert "fp32" in snap.describe() and "greedy" in snap.describe()


def test_a_sampled_reply_without_a_seed_keeps_the_one_it_drew(llama_engine) -> None:
    first = llama_engine.chat(ChatRequest(HELLO, settings=sampled()))
    snap = first.stats.provenance
    assert snap.seed is not None and snap.seed_drawn
    assert 0 <= snap.seed < 2**32
    again = llama_engine.chat(ChatRequest(HELLO, settings=snap.generation_settings()))
    assert again.text == first.text
    assert again.stats.provenance.seed == snap.seed and not again.stats.provenance.seed_drawn
    seeds = {
        llama_engine.chat(ChatRequest(HELLO, settings=sampled())).stats.provenance.seed
        for _ in range(3)
    }
    assert len(seeds) == 3  # drawn afresh each turn: sampling stays random


def test_the_weights_fingerprint_follows_the_files(tiny_llama_dir, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_llama_dir, copy)
    before = weights_fingerprint(copy)
    assert before == weights_fingerprint(copy)
    weights = copy / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert weights_fingerprint(copy) != before
    assert weights_fingerprint(tmp_path / "missing") is None


def test_differences_name_the_reasons() -> None:
    saved = Provenance(
        device="cuda:0",
        dtype="bf16",
        weights="files:a",
        prompt_sha256="x",
        versions={"torch": "2.12.0", "transformers": "5.0.0"},
    )
    now = Provenance(
        device="cpu",
        dtype="bf16",
        weights="files:b",
        prompt_sha256="y",
        versions={"torch": "2.13.0", "transformers": "5.0.0"},
    )
    reasons = differences(saved, now)
    assert any("device cpu, was cuda:0" in r for r in reasons)
    assert any("torch 2.13.0, was 2.12.0" in r for r in reasons)
    assert any("weights" in r for r in reasons)
    assert any("prompt" in r for r in reasons)
    assert not any("transformers" in r or "dtype" in r for r in reasons)
    assert differences(saved, saved) == []


def test_provenance_from_any_table_keeps_only_good_values() -> None:
    assert Provenance.from_dict(5) is None
    odd = Provenance.from_dict(
        {"seed": "7", "device": ["cpu"], "settings": 3, "versions": {"torch": 2}, "spec": []}
    )
    assert odd.seed is None and odd.device is None and odd.settings == {} and odd.versions == {}
    with pytest.raises(EngineError, match="which model"):
        odd.model_spec()
    with pytest.raises(EngineError, match="unusable model"):
        Provenance(spec={"source": "x", "dtype": "fp8"}).model_spec()


def test_replay_in_the_engine(llama_engine) -> None:
    first = llama_engine.chat(ChatRequest(HELLO, settings=sampled()))
    snapshot = first.stats.provenance.to_dict()
    same = replay(HELLO, first.text, snapshot, engine=llama_engine)
    assert same.identical and same.describe() == "identical"
    assert same.reasons == []

    # a changed reply: the first differing token and character are found
    changed = first.text[:3] + "#" + first.text[4:]
    report = replay(HELLO, changed, snapshot, engine=llama_engine)
    assert not report.identical
    assert report.first_char == 3
    assert report.first_token is not None
    assert "diverges at token" in report.describe() and "no recorded condition" in report.describe()

    # a reply stopped early is identical as far as it went
    cut = replay(HELLO, first.text[:5], snapshot, engine=llama_engine, saved_stop_reason="stopped")
    assert cut.identical and "stopped after 5 characters" in cut.describe()

    # a snapshot made with other weights files: the reason is named
    moved = dict(snapshot, weights="files:0000000000000000")
    report = replay(HELLO, changed, moved, engine=llama_engine)
    assert "different weights files" in report.describe()

    with pytest.raises(EngineError, match="no snapshot"):
        replay(HELLO, first.text, {})
    with pytest.raises(EngineError, match="continued"):
        replay(HELLO, first.text, dict(snapshot, continue_final=True))


def test_replay_loads_the_snapshot_model_when_another_is_loaded(
    llama_engine, qwen_engine, tiny_llama_dir
) -> None:
    first = llama_engine.chat(ChatRequest(HELLO, settings=sampled("seed=3")))
    report = replay(HELLO, first.text, first.stats.provenance.to_dict(), engine=qwen_engine)
    assert report.identical
    assert qwen_engine.loaded.spec.source != str(tiny_llama_dir)  # untouched


# -- the command line --------------------------------------------------------------------


@pytest.fixture()
def data_dir(tmp_path: Path) -> str:
    return str(tmp_path / "data")


def one_shot(model: Path, data_dir: str, *args: str) -> tuple[int, str, str]:
    return run_cli("--data-dir", data_dir, "--model", str(model), "--prompt", "hi", *args)


def test_two_one_shot_runs_with_a_seed_give_identical_text(tiny_llama_dir, data_dir) -> None:
    runs = [
        one_shot(tiny_llama_dir, data_dir, "temperature=0.9", "seed=7", "max_new_tokens=12")
        for _ in range(2)
    ]
    assert runs[0][0] == runs[1][0] == 0, runs[0][2]
    assert runs[0][1].strip() and runs[0][1] == runs[1][1]
    other = one_shot(tiny_llama_dir, data_dir, "temperature=0.9", "seed=8", "max_new_tokens=12")
    assert other[1] != runs[0][1]  # the seed is what made them equal


def test_a_one_shot_reply_stores_its_seed_and_replays_identically(tiny_llama_dir, data_dir) -> None:
    # --raw: the drawn seed may make a control character, which stdout would drop
    code, out, err = one_shot(
        tiny_llama_dir,
        data_dir,
        "temperature=0.9",
        "max_new_tokens=12",
        "--session",
        "notes",
        "--raw",
    )
    assert code == 0, err
    store = SessionStore(data_dir)
    conv = store.load(store.find("notes").id)
    reply = conv.transcript[-1]
    assert reply.content == out.rstrip("\n")
    snap = reply.provenance
    assert isinstance(snap["seed"], int) and snap["seed_drawn"] is True
    assert snap["settings"]["do_sample"] is True and snap["settings"]["temperature"] == 0.9
    assert snap["spec"]["source"] == str(tiny_llama_dir)

    # another model than the one chat-tui starts with: named on the command line
    code, out, err = run_cli("--data-dir", data_dir, "--replay", "notes")
    assert (code, out) == (1, "") and f"--model {tiny_llama_dir}" in err
    model = ("--model", str(tiny_llama_dir))
    code, out, err = run_cli("--data-dir", data_dir, "--replay", "notes", *model)
    assert (code, out) == (0, "identical\n"), err
    code, out, _ = run_cli("--data-dir", data_dir, "--replay", f"notes:{reply.id}", *model)
    assert (code, out) == (0, "identical\n")
    code, out, _ = run_cli("--data-dir", data_dir, "--replay", "notes:2", *model)
    assert (code, out) == (0, "identical\n")

    # an edited reply no longer matches: where, and (nothing recorded differs) no reason
    reply.content = "edited " + reply.content
    store.save(conv)
    code, out, _ = run_cli("--data-dir", data_dir, "--replay", "notes:-1", *model)
    assert code == 1
    # repr's quotes depend on the drawn reply (a ' in it makes them "), so build them the same way
    saved = repr(reply.content[:24])
    assert out.startswith(f"diverges at token 0 (character 0: saved {saved}, now ")


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("nobody", "No saved conversation called 'nobody'"),
        ("notes:1", "is not a reply"),
        ("notes:9", "there is no message 9"),
        ("notes:zz", "has no message 'zz'"),
    ],
)
def test_replay_mistakes_are_one_sentence(tiny_llama_dir, data_dir, target, says) -> None:
    one_shot(tiny_llama_dir, data_dir, "max_new_tokens=2", "--session", "notes")
    code, out, err = run_cli("--data-dir", data_dir, "--replay", target)
    assert code == 1 and out == ""
    assert says in err and len(err.strip().splitlines()) == 1


def test_a_reply_without_a_snapshot_cannot_be_replayed(data_dir) -> None:
    store = SessionStore(data_dir)
    conv = store.new(name="old")
    conv.append("user", "hi")
    conv.append("assistant", "hello")
    store.save(conv)
    code, out, err = run_cli("--data-dir", data_dir, "--replay", "old")
    assert code == 1 and out == ""
    assert "no snapshot of how it was made" in err


def test_replay_sets_the_loaded_model_aside_when_both_do_not_fit(
    llama_engine, tiny_qwen_dir, monkeypatch
) -> None:
    from tui.engine import compare

    first = llama_engine.chat(ChatRequest(HELLO, settings=sampled("seed=5")))
    other = LocalEngine()
    other.load(ModelSpec(source=str(tiny_qwen_dir)))
    short = sampled("max_new_tokens=4")
    other.chat(ChatRequest(HELLO, conversation_id="kept", settings=short))
    before = (other.loaded, other.kv_cache.tokens("kept"), other.cache_bytes("kept"))
    monkeypatch.setattr(
        compare,
        "plan_placement",
        lambda engine, spec, tokens: (compare.PLACEMENT_SEQUENTIAL, "They do not both fit."),
    )
    report = replay(HELLO, first.text, first.stats.provenance.to_dict(), engine=other)
    assert report.identical and report.notes == ["They do not both fit."]
    assert (other.loaded, other.kv_cache.tokens("kept"), other.cache_bytes("kept")) == before
    again = other.chat(ChatRequest(HELLO, conversation_id="kept", settings=short))
    assert again.stats.reused_tokens > 0
