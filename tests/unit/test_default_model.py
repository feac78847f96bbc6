"""The real bundled model: SmolLM2-135M-Instruct, converted once from its GGUF."""

from __future__ import annotations

from tui.engine import ChatRequest, GenerationSettings, LocalEngine, ModelSpec, default_model


def test_default_model_knows_the_capital_of_france(default_model_dir) -> None:
    engine = LocalEngine()
    loaded = engine.load(ModelSpec())
    assert loaded.source.folder == default_model_dir
    assert loaded.spec.display_name == "SmolLM2-135M-Instruct (bundled)"
    assert loaded.model.config.model_type == "llama"
    settings = GenerationSettings()
    settings.update(["do_sample=false", "max_new_tokens=30"])
    chunks: list[str] = []
    result = engine.chat(
        ChatRequest(
            [{"role": "user", "content": "What is the capital of France?"}], settings=settings
        ),
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


def test_the_bundled_model_ships_its_model_card_sampling_settings(default_model_dir) -> None:
    """The GGUF has no generation config; the converted folder gets the card's sampling
    settings (plus the authors' repeat penalty), as the model's own defaults."""
    import json

    saved = json.loads((default_model_dir / "generation_config.json").read_text())
    for name, value in default_model.GENERATION_DEFAULTS.items():
        assert saved[name] == value
    assert saved["eos_token_id"] == 2  # the token ids the conversion wrote are kept
    assert "_from_model_config" not in saved

    engine = LocalEngine()
    engine.load(ModelSpec())
    effective = engine.effective_settings(GenerationSettings())
    assert effective.values["do_sample"] is True
    assert effective.values["temperature"] == 0.2
    assert effective.values["top_p"] == 0.9
    assert effective.values["repetition_penalty"] == 1.1
    assert {effective.sources[k] for k in ("temperature", "top_p", "do_sample")} == {"model"}
    assert effective.describe().startswith(
        "sampling: temperature=0.2 top_p=0.9 repetition_penalty=1.1 (model)"
    )
    user = GenerationSettings()
    user.set("temperature=0")
    assert engine.effective_settings(user).values["do_sample"] is False


def test_an_older_conversion_gets_the_settings_without_converting_again(
    default_model_dir, tmp_path, monkeypatch
) -> None:
    """On a copy of the converted folder: other tests (and xdist workers) read the
    shared one meanwhile."""
    import json
    import shutil

    monkeypatch.setenv("CHAT_TUI_CACHE_DIR", str(tmp_path))
    copy = default_model.converted_dir()
    shutil.copytree(default_model_dir, copy, copy_function=shutil.copy2)
    default_model_dir = copy
    config = default_model_dir / "generation_config.json"
    marker = default_model_dir / "chat-tui-source.json"
    weights = default_model_dir / "model.safetensors"
    before = (marker.stat().st_mtime_ns, weights.stat().st_mtime_ns)
    old = {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    try:
        config.write_text(json.dumps(old))
        assert default_model.ensure_converted() == default_model_dir
        saved = json.loads(config.read_text())
        assert saved == {k: v for k, v in old.items() if k != "_from_model_config"} | dict(
            default_model.GENERATION_DEFAULTS
        )
        config.unlink()  # a folder with no generation_config.json at all
        default_model.ensure_converted()
        assert json.loads(config.read_text()) == dict(default_model.GENERATION_DEFAULTS)
        # up to date: left alone
        assert default_model.ensure_generation_defaults(default_model_dir) is False
    finally:
        config.write_text(json.dumps(old))
        default_model.ensure_converted()
    assert (marker.stat().st_mtime_ns, weights.stat().st_mtime_ns) == before
    assert not list(default_model_dir.glob(".generation_config-*"))


def test_a_conversion_parses_the_gguf_once_and_leaves_gguf_as_it_was(tmp_path) -> None:
    """transformers opens the file three times in a conversion (tokenizer, config,
    weights); inside ``_gguf_read_once`` all three get one parse, and afterwards gguf's
    own reader and name table are back for everyone else."""
    import gguf
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.ones((4, 2), dtype="float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map

    with default_model._gguf_read_once():
        first = gguf.GGUFReader(path)
        assert gguf.GGUFReader(str(path)) is first  # the same file, either spelling
        assert first.tensors[0].name == "token_embd.weight"
        table = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is table
        assert table.get_name("model.layers.1.mlp.up_proj") == "blk.1.ffn_up"

    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader, name_map)
    assert gguf.GGUFReader(path) is not first
