"""Memory: estimates from the config match what loading and generating really take."""

from __future__ import annotations

import pytest

from tui.engine import ChatRequest, LocalEngine, ModelSpec, memory

HELLO = [{"role": "user", "content": "Hello there, how are you?"}]


@pytest.fixture(scope="module")
def config(tiny_llama_dir):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(tiny_llama_dir)


def test_kv_bytes_per_token_formula(config) -> None:
    layers, kv_heads, head_dim = 2, 2, 64 // 4
    assert memory.kv_bytes_per_token(config, 4) == layers * 2 * kv_heads * head_dim * 4 == 512
    assert memory.kv_bytes_per_token(config, 2) == 256


def test_weight_estimate_matches_the_loaded_footprint(config, llama_engine) -> None:
    estimate = memory.estimate(config, "fp32")
    footprint = llama_engine.loaded.footprint_bytes
    assert abs(estimate.weight_bytes - footprint) <= 0.05 * footprint
    assert estimate.parameters * 4 == estimate.weight_bytes
    assert estimate.context_limit == 2048
    assert estimate.total_bytes(100) == estimate.weight_bytes + 100 * estimate.kv_bytes_per_token
    assert "parameters" in estimate.describe()


def test_smaller_precisions_are_estimated_smaller(config) -> None:
    fp32 = memory.estimate(config, "fp32").weight_bytes
    bf16 = memory.estimate(config, "bf16").weight_bytes
    eight = memory.estimate(config, "fp32", "8bit").weight_bytes
    four = memory.estimate(config, "fp32", "4bit").weight_bytes
    assert bf16 * 2 == fp32
    assert four < eight < fp32
    assert memory.estimate(config, "bf16", "4bit").weight_bytes < bf16


def test_snapshot() -> None:
    snap = memory.snapshot()
    assert snap.process_rss > 0
    assert snap.system_available > 0
    assert snap.system_total >= snap.system_available
    assert snap.accelerators == ()  # no GPU here


def test_human_bytes() -> None:
    assert memory.human_bytes(None) == "n/a"
    assert memory.human_bytes(512) == "512 B"
    assert memory.human_bytes(1536) == "1.5 KiB"
    assert memory.human_bytes(3 * memory.GiB) == "3.0 GiB"


def test_cache_bytes_after_a_turn(tiny_llama_dir, config, greedy) -> None:
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(tiny_llama_dir), dtype="fp32"))
    assert engine.cache_bytes() == 0
    result = engine.chat(
        ChatRequest(
            HELLO, conversation_id="c", settings=greedy("max_new_tokens=5", "min_new_tokens=5")
        )
    )
    cached = engine.kv_cache.tokens("c")
    # the last generated token has not been through the model yet
    assert cached == result.stats.prompt_tokens + result.stats.new_tokens - 1
    assert engine.cache_bytes("c") == memory.kv_bytes_per_token(config, 4) * cached > 0
    assert engine.loaded.estimate.kv_bytes(cached) == engine.cache_bytes("c")


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_kv_estimate_of_a_quantized_model_matches_its_cache(
    tiny_llama_dir, greedy, quantization
) -> None:
    """On CPU a quantized model computes (and caches) in fp32; the estimate the memory
    meter shows per token should say so."""
    engine = LocalEngine()
    loaded = engine.load(ModelSpec(source=str(tiny_llama_dir), quantization=quantization))
    engine.chat(ChatRequest(HELLO, conversation_id="c", settings=greedy("max_new_tokens=3")))
    per_token = engine.cache_bytes("c") // engine.kv_cache.tokens("c")
    assert loaded.estimate.kv_bytes_per_token == per_token


def _file_mappings(path) -> list[tuple[int, int]]:
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith(str(path)):
                start, end = line.split()[0].split("-")
                ranges.append((int(start, 16), int(end, 16)))
    return ranges


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_a_quantized_model_does_not_keep_its_checkpoint_mapped(
    tiny_llama_dir, greedy, quantization
) -> None:
    """Unquantized weights (embeddings, norms) are copied out of the safetensors memory
    map, which would otherwise stay resident in full (bench/swaps.py)."""
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/maps")
    engine = LocalEngine()
    loaded = engine.load(ModelSpec(source=str(tiny_llama_dir), quantization=quantization))
    model = loaded.model
    checkpoint = (tiny_llama_dir / "model.safetensors").resolve()
    ranges = _file_mappings(checkpoint)
    tensors = list(model.parameters()) + list(model.buffers())
    pointers = [t.untyped_storage().data_ptr() for t in tensors]
    assert not [p for p in pointers if any(a <= p < b for a, b in ranges)]
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    result = engine.chat(
        ChatRequest(HELLO, settings=greedy("max_new_tokens=3", "min_new_tokens=3"))
    )
    assert result.stats.new_tokens == 3


def test_a_swap_lets_the_old_model_go(tiny_llama_dir, tiny_qwen_dir, greedy) -> None:
    import gc
    import weakref

    engine = LocalEngine()
    engine.load(ModelSpec(source=str(tiny_llama_dir), quantization="4bit"))
    engine.chat(ChatRequest(HELLO, conversation_id="c", settings=greedy("max_new_tokens=3")))
    old = weakref.ref(engine.loaded.model)
    engine.load(ModelSpec(source=str(tiny_qwen_dir)))
    gc.collect()
    assert old() is None  # nothing (cache, engine, quantizer) holds the old model
    assert engine.cache_bytes() == 0


def test_the_estimate_says_whether_four_conversations_at_once_fit() -> None:
    """The side panel's "will it fit": the weights and one conversation, then four
    conversations streaming at once (their caches in one batch)."""
    from tui.engine.loader import EstimateReport

    estimate = memory.MemoryEstimate(1_000_000, 100 * memory.MiB, 1024, 8192)
    one = 100 * memory.MiB + 4 * memory.MiB  # weights + one conversation of 4,096 tokens

    def said(available: int) -> str:
        return EstimateReport(estimate, "fp32", "cpu", available).describe(4096)

    assert said(one + 20 * memory.MiB).endswith(
        ": fits; 4 such conversations streaming at once fit too"
    )
    assert said(one + 5 * memory.MiB).endswith(
        ": fits; 4 such conversations streaming at once do NOT fit (joins wait)"
    )
    assert said(one - memory.MiB).endswith(": does NOT fit")  # nothing said of four
