"""The real bundled model: SmolLM2-135M-Instruct, converted once from its GGUF."""

from __future__ import annotations

from tui.engine import Engine, GenerationSettings, ModelSpec, default_model


def test_default_model_knows_the_capital_of_france(default_model_dir) -> None:
    engine = Engine()
    loaded = engine.load(ModelSpec())
    assert loaded.source.folder == default_model_dir
    assert loaded.spec.display_name == "SmolLM2-135M-Instruct (bundled)"
    assert loaded.model.config.model_type == "llama"
    settings = GenerationSettings()
    settings.update(["do_sample=false", "max_new_tokens=30"])
    chunks: list[str] = []
    result = engine.chat(
        [{"role": "user", "content": "What is the capital of France?"}],
        settings=settings,
        on_text=chunks.append,
    )
    assert "Paris" in result.text
    assert "".join(chunks) == result.text
    assert result.stats.error is None


def test_conversion_happens_once(default_model_dir) -> None:
    marker = default_model_dir / "chat-tui-source.json"
    weights = default_model_dir / "model.safetensors"
    before = (marker.stat().st_mtime_ns, weights.stat().st_mtime_ns)
    assert default_model.is_converted()
    assert default_model.ensure_converted() == default_model_dir
    assert (marker.stat().st_mtime_ns, weights.stat().st_mtime_ns) == before
    assert default_model.bundled_gguf().name == default_model.GGUF_NAME
