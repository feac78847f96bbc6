"""Speculative decoding, measured: acceptance rate and tokens per forward pass in every
speculative reply's stats; and why speculative turns still prefill in full."""

from __future__ import annotations

import pytest

from tui.engine import ChatRequest, LocalEngine, ModelSpec

REPETITIVE = [
    {
        "role": "user",
        "content": "one two three four five, one two three four five, one two three four",
    }
]


@pytest.fixture(scope="module")
def lookup_engine(tiny_llama_dir) -> LocalEngine:
    engine = LocalEngine(prompt_lookup=3)
    engine.load(ModelSpec(source=str(tiny_llama_dir)))
    return engine


def test_a_prompt_lookup_reply_has_an_acceptance_rate(lookup_engine, llama_engine, greedy) -> None:
    settings = greedy("max_new_tokens=24")
    result = lookup_engine.chat(ChatRequest(REPETITIVE, settings=settings))
    stats = result.stats
    assert stats.speculative
    assert stats.draft_proposed is not None and stats.draft_proposed > 0
    assert 0 <= stats.draft_accepted <= stats.draft_proposed
    assert 0.0 <= stats.acceptance_rate <= 1.0
    assert stats.acceptance_rate == stats.draft_accepted / stats.draft_proposed
    # every target forward pass yields at least one token; accepted drafts add more
    assert stats.target_forwards is not None and 0 < stats.target_forwards <= stats.new_tokens
    assert stats.tokens_per_forward == stats.new_tokens / stats.target_forwards >= 1.0
    assert stats.new_tokens == stats.target_forwards + stats.draft_accepted
    assert "draft acceptance" in stats.describe() and "tokens per forward pass" in stats.describe()
    fields = stats.message_fields()
    assert fields["acceptance_rate"] == stats.acceptance_rate
    assert fields["tokens_per_forward"] == stats.tokens_per_forward
    assert fields["provenance"]["speculative"] == {"prompt_lookup": 3}
    # measured, and still the plain greedy reply
    assert result.text == llama_engine.chat(ChatRequest(REPETITIVE, settings=settings)).text


def test_a_draft_model_reply_has_an_acceptance_rate(tiny_llama_dir, greedy) -> None:
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(tiny_llama_dir)))
    engine.load_assistant(ModelSpec(source=str(tiny_llama_dir)))  # a perfect draft
    stats = engine.chat(ChatRequest(REPETITIVE, settings=greedy("max_new_tokens=16"))).stats
    assert stats.draft_proposed and stats.draft_proposed > 0
    assert stats.acceptance_rate == 1.0  # the draft is the target: every token accepted
    assert stats.tokens_per_forward > 1.0
    assert stats.provenance.speculative == {"assistant_model": str(tiny_llama_dir)}


def test_speculation_can_be_turned_off_for_one_turn(lookup_engine, greedy) -> None:
    stats = lookup_engine.chat(
        ChatRequest(REPETITIVE, settings=greedy("max_new_tokens=8"), speculative=False)
    ).stats
    assert not stats.speculative and stats.acceptance_rate is None
    assert "draft" not in stats.describe()
    assert stats.message_fields()["tokens_per_forward"] is None
    assert stats.provenance.speculative == {}


def test_a_plain_reply_takes_one_forward_pass_per_token(llama_engine, greedy) -> None:
    stats = llama_engine.chat(ChatRequest(REPETITIVE, settings=greedy("max_new_tokens=7"))).stats
    assert stats.draft_proposed is None and stats.acceptance_rate is None
    assert stats.target_forwards == stats.new_tokens
    assert stats.tokens_per_forward == 1.0


@pytest.mark.parametrize("speculation", ["prompt_lookup", "assistant"])
def test_assisted_decoding_with_a_partial_cache_goes_wrong(
    llama_engine, greedy, speculation
) -> None:
    """Why speculative turns prefill in full (see generation.generate): transformers'
    assisted decoding feeds the whole sequence on its first step whatever the cache
    holds. The same partial cache is fine for plain decoding. If this test fails,
    transformers handles it now, and speculative turns may reuse the KV cache too."""
    import torch
    from transformers import DynamicCache

    from tui.engine.generation import _cache_kwarg

    loaded = llama_engine.loaded
    model = loaded.model
    messages = [
        {"role": "user", "content": REPETITIVE[0]["content"]},
        {"role": "assistant", "content": "one two three four five six seven"},
        {"role": "user", "content": "one two three four five, again please"},
    ]
    ids = llama_engine.build_prompt(messages).ids
    input_ids = torch.tensor([ids])
    common = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "do_sample": False,
        "max_new_tokens": 12,
        "min_new_tokens": 12,
        "pad_token_id": loaded.tokenizer.eos_token_id,
    }
    extra = (
        {"prompt_lookup_num_tokens": 3}
        if speculation == "prompt_lookup"
        else {"assistant_model": model, "tokenizer": loaded.tokenizer}
    )

    def partial_cache() -> DynamicCache:
        cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            model(input_ids=input_ids[:, : len(ids) // 2], **{_cache_kwarg(): cache})
        return cache

    with torch.inference_mode():
        full = model.generate(**common)[0, len(ids) :].tolist()
        plain_reused = model.generate(**common, **{_cache_kwarg(): partial_cache()})
        speculative_full = model.generate(**common, **extra)
        speculative_reused = model.generate(**common, **extra, **{_cache_kwarg(): partial_cache()})
    assert plain_reused[0, len(ids) :].tolist() == full
    assert speculative_full[0, len(ids) :].tolist() == full
    assert speculative_reused[0, len(ids) :].tolist() != full
