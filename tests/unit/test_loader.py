"""Loading through the public path, in every precision, and every failure as a sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tui.engine import ChatRequest, LocalEngine, ModelSpec, loader
from tui.engine.errors import (
    DeviceUnavailableError,
    EngineError,
    MissingFilesError,
    ModelNotFoundError,
    NotCachedOfflineError,
    OutOfMemoryError,
    TemplateError,
)

HELLO = [{"role": "user", "content": "Hello there, how are you?"}]


def assert_sentence(error: BaseException) -> None:
    message = str(error)
    assert message.strip()
    assert "\n" not in message
    assert "Traceback" not in message


@pytest.fixture(scope="module")
def fp32_footprint(tiny_llama_dir: Path) -> int:
    return loader.load(ModelSpec(source=str(tiny_llama_dir), dtype="fp32")).footprint_bytes


@pytest.mark.parametrize(
    ("dtype", "torch_dtype"), [("fp32", "float32"), ("bf16", "bfloat16"), ("fp16", "float16")]
)
def test_load_in_each_dtype_and_generate(tiny_llama_dir, greedy, dtype, torch_dtype) -> None:
    import torch

    engine = LocalEngine()
    loaded = engine.load(ModelSpec(source=str(tiny_llama_dir), dtype=dtype))
    assert loaded.model.dtype == getattr(torch, torch_dtype)
    assert loaded.dtype == dtype
    assert loaded.device == "cpu"
    assert loaded.context_limit == 2048
    result = engine.chat(
        ChatRequest(HELLO, settings=greedy("max_new_tokens=3", "min_new_tokens=3"))
    )
    assert result.stats.new_tokens == 3
    assert result.stats.error is None


def test_auto_dtype_is_fp32_on_cpu(tiny_llama_dir) -> None:
    loaded = loader.load(ModelSpec(source=str(tiny_llama_dir)))
    assert loaded.dtype == "fp32"


@pytest.mark.parametrize(
    ("changes", "module_name"),
    [
        ({"quantization": "8bit"}, "Linear8bitLt"),
        ({"quantization": "4bit", "bnb_4bit_quant_type": "nf4"}, "Linear4bit"),
        ({"quantization": "4bit", "bnb_4bit_quant_type": "fp4"}, "Linear4bit"),
    ],
)
def test_load_quantized_on_cpu_and_generate(
    tiny_llama_dir, greedy, fp32_footprint, changes, module_name
) -> None:
    import bitsandbytes as bnb

    engine = LocalEngine()
    loaded = engine.load(ModelSpec(source=str(tiny_llama_dir), device="cpu", **changes))
    quantized = [m for m in loaded.model.modules() if isinstance(m, getattr(bnb.nn, module_name))]
    # 2 layers x (q, k, v, o, gate, up, down); the tied LM head stays in full precision
    assert len(quantized) == 14
    if "bnb_4bit_quant_type" in changes:
        assert {m.weight.quant_type for m in quantized} == {changes["bnb_4bit_quant_type"]}
    assert loaded.footprint_bytes < fp32_footprint
    assert loaded.estimate.weight_bytes < fp32_footprint
    result = engine.chat(
        ChatRequest(HELLO, settings=greedy("max_new_tokens=3", "min_new_tokens=3"))
    )
    assert result.stats.new_tokens == 3
    assert result.stats.error is None
    assert result.text


def test_missing_folder() -> None:
    with pytest.raises(MissingFilesError) as caught:
        loader.load(ModelSpec(source="./does-not-exist"))
    assert_sentence(caught.value)
    assert "./does-not-exist" in str(caught.value)


def test_folder_without_config(tmp_path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(MissingFilesError) as caught:
        loader.load(ModelSpec(source=str(tmp_path)))
    assert_sentence(caught.value)
    assert "config.json" in str(caught.value)


def test_folder_with_config_but_no_weights(tmp_path, tiny_llama_dir) -> None:
    shutil.copy(tiny_llama_dir / "config.json", tmp_path / "config.json")
    shutil.copy(tiny_llama_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    with pytest.raises(MissingFilesError) as caught:
        loader.load(ModelSpec(source=str(tmp_path)))
    assert_sentence(caught.value)
    assert "weights" in str(caught.value)


def test_file_that_is_not_a_model(tiny_llama_dir) -> None:
    with pytest.raises(MissingFilesError) as caught:
        loader.load(ModelSpec(source=str(tiny_llama_dir / "config.json")))
    assert_sentence(caught.value)


def test_missing_gguf_file(tmp_path) -> None:
    with pytest.raises(MissingFilesError) as caught:
        loader.load(ModelSpec(source=str(tmp_path / "model.Q4_K_M.gguf")))
    assert_sentence(caught.value)
    assert "model.Q4_K_M.gguf" in str(caught.value)


@pytest.mark.parametrize("hub_id", ["chat-tui-tests/not-a-cached-model", "not-a-cached-model"])
def test_hub_id_not_cached_while_offline(hub_id: str) -> None:
    with pytest.raises(NotCachedOfflineError) as caught:
        loader.load(ModelSpec(source=hub_id))
    assert_sentence(caught.value)
    message = str(caught.value)
    assert hub_id in message
    assert "local folder or .gguf file" in message


@pytest.mark.parametrize("bad_id", ["bad id!!", "org/bad name", "a--b"])
def test_invalid_hub_id(bad_id: str) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        loader.load(ModelSpec(source=bad_id))
    assert_sentence(caught.value)
    assert bad_id in str(caught.value)


@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_cuda_on_a_cpu_machine(tiny_llama_dir, device: str) -> None:
    with pytest.raises(DeviceUnavailableError) as caught:
        loader.load(ModelSpec(source=str(tiny_llama_dir), device=device))
    assert_sentence(caught.value)
    assert device in str(caught.value)
    assert "--device cpu" in str(caught.value)


def test_8bit_on_mps(tiny_llama_dir) -> None:
    with pytest.raises(EngineError) as caught:
        loader.load(ModelSpec(source=str(tiny_llama_dir), device="mps", quantization="8bit"))
    assert_sentence(caught.value)
    assert "mps" in str(caught.value)


def test_missing_chat_template_file(tiny_llama_dir, tmp_path) -> None:
    missing = tmp_path / "nope.jinja"
    with pytest.raises(TemplateError) as caught:
        loader.load(ModelSpec(source=str(tiny_llama_dir), chat_template_file=str(missing)))
    assert_sentence(caught.value)
    assert str(missing) in str(caught.value)


def test_out_of_memory_is_refused_before_reading_weights(tmp_path, tiny_llama_dir) -> None:
    from transformers import LlamaConfig

    LlamaConfig(
        vocab_size=256000,
        hidden_size=65536,
        num_hidden_layers=200,
        num_attention_heads=512,
        num_key_value_heads=64,
        intermediate_size=262144,
    ).save_pretrained(tmp_path)
    for tokenizer_file in tiny_llama_dir.glob("tokenizer*"):
        shutil.copy(tokenizer_file, tmp_path)
    # Not a safetensors file at all: reading it would fail with a different error.
    (tmp_path / "model.safetensors").write_bytes(b"not really weights")
    assert json.loads((tmp_path / "config.json").read_text())["num_hidden_layers"] == 200

    with pytest.raises(OutOfMemoryError) as caught:
        loader.load(ModelSpec(source=str(tmp_path)))
    assert_sentence(caught.value)
    message = str(caught.value)
    assert "GiB" in message
    assert "--load-in-4bit" in message


def test_failed_load_keeps_the_previous_model(tiny_llama_dir, greedy) -> None:
    engine = LocalEngine()
    first = engine.load(ModelSpec(source=str(tiny_llama_dir)))
    settings = greedy("max_new_tokens=4", "min_new_tokens=4")
    before = engine.chat(ChatRequest(HELLO, settings=settings))
    for bad in (
        ModelSpec(source="./does-not-exist"),
        ModelSpec(source=str(tiny_llama_dir), device="cuda"),
        ModelSpec(source="chat-tui-tests/not-a-cached-model"),
    ):
        with pytest.raises(EngineError):
            engine.load(bad)
        assert engine.loaded is first
        assert first.model is not None
    after = engine.chat(ChatRequest(HELLO, settings=settings))
    assert after.text == before.text
    assert after.stats.new_tokens == 4


def test_a_new_load_replaces_and_unloads_the_old_model(tiny_llama_dir, tiny_qwen_dir) -> None:
    engine = LocalEngine()
    first = engine.load(ModelSpec(source=str(tiny_llama_dir)))
    second = engine.load(ModelSpec(source=str(tiny_qwen_dir)))
    assert engine.loaded is second
    assert first.model is None
    assert second.model.config.model_type == "qwen2"


def test_load_progress_is_monotonic_and_ends_at_one(tiny_llama_dir) -> None:
    reports: list[tuple[float, str]] = []
    loader.load(ModelSpec(source=str(tiny_llama_dir)), lambda f, stage: reports.append((f, stage)))
    fractions = [fraction for fraction, _stage in reports]
    assert len(fractions) >= 3
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert all(stage for _fraction, stage in reports)


def test_progress_stays_monotonic_when_the_default_model_is_converted(monkeypatch) -> None:
    """The first launch converts the bundled GGUF, and the conversion reports its own
    progress (0.02 .. 0.85, see ``default_model.convert_gguf``) through the loader's
    callback. The overall bar must not then jump back to 0.1 for 'reading config'.

    The converter is wrapped to report as a first-run conversion does (then returns the
    already converted folder), so the test does not spend 20 s converting again."""
    from tui.engine import default_model

    convert = default_model.convert_gguf

    def first_run_convert(gguf, target=None, progress=None, hub_id=None):
        progress(0.02, "converting SmolLM2-135M-Instruct.Q4_1.gguf once")
        progress(0.85, "converted")
        return convert(gguf, target, progress, hub_id)

    monkeypatch.setattr(default_model, "convert_gguf", first_run_convert)
    fractions: list[float] = []
    loader.load(ModelSpec(), lambda fraction, _stage: fractions.append(fraction))
    assert len([f for f in fractions if 0 < f < 0.1]) >= 2  # the conversion's reports
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
