"""Imports: any file gives a conversation or one sentence (StoreError), never a
traceback; `transformers chat` history files keep their generation settings."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.store.helpers import run_cli
from tui.store import SessionStore, StoreError
from tui.store import export as exporter


def write(tmp_path: Path, data: Any, name: str = "in.json") -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    elif isinstance(data, str):
        path.write_text(data)
    else:
        path.write_text(json.dumps(data))
    return path


def chat_tui_doc(**changes: Any) -> dict[str, Any]:
    doc = {
        "schema_version": 2,
        "id": "x",
        "title": "t",
        "model": {"source": "org/m"},
        "head": "a",
        "messages": [{"id": "a", "role": "user", "content": "hi"}],
    }
    doc.update(changes)
    return {"messages": [], "chat_tui": doc}


BAD: dict[str, Any] = {
    "deep_json": "[" * 100_000 + "]" * 100_000,
    "deep_json_in_chat_tui": '{"chat_tui": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "deep_settings": chat_tui_doc(settings={"x": json.loads("[" * 50 + "]" * 50)}),
    "not_json": "{nope",
    "empty": "",
    "not_utf8": b"\xff\xfe{}",
    "huge_number": '{"messages": [], "x": ' + "1" * 5000 + "}",
    "unknown_shape": {"foo": 1},
    "a_number": 5,
    "messages_not_a_list": {"messages": 5},
    "messages_of_numbers": {"messages": [1, 2]},
    "message_without_content": {"messages": [{"role": "user"}]},
    "message_content_list": {"messages": [{"role": "user", "content": ["x"]}]},
    "message_role_unknown": {"messages": [{"role": "robot", "content": "x"}]},
    "message_role_list": {"messages": [{"role": ["user"], "content": "x"}]},
    "system_content_null": {"messages": [{"role": "system", "content": None}]},
    "chat_history_not_a_list": {"chat_history": {}},
    "chat_tui_not_an_object": {"chat_tui": 5},
    "chat_tui_messages_number": chat_tui_doc(messages=5),
    "chat_tui_message_id_list": chat_tui_doc(
        messages=[{"id": [1], "role": "user", "content": "x"}]
    ),
    "chat_tui_model_nested_deep": chat_tui_doc(
        model={"a": json.loads('{"b": ' * 20 + "1" + "}" * 20)}
    ),
    "chat_tui_cycle": chat_tui_doc(
        messages=[
            {"id": "a", "parent": "b", "role": "user", "content": "x"},
            {"id": "b", "parent": "a", "role": "user", "content": "y"},
        ]
    ),
    "chat_tui_head_list": chat_tui_doc(head=["a"]),
    "chat_tui_time_number": chat_tui_doc(created=5),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_imports_are_one_sentence(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, BAD[name])
    with pytest.raises(StoreError) as raised:
        exporter.import_file(path)
    message = str(raised.value)
    assert "\n" not in message and message.endswith(".") and len(message) < 400
    assert str(path) in message or name in ("chat_tui_cycle",) or path.name in message


def test_cli_import_errors_have_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, BAD["deep_json"])
    code, out, err = run_cli("--data-dir", str(tmp_path / "d"), "--import", str(path))
    assert code == 1 and out == ""
    assert err.startswith("chat-tui: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "nested too deeply" in err


def test_files_that_cannot_be_imported(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="No such file"):
        exporter.import_file(tmp_path / "missing.json")
    with pytest.raises(StoreError, match="too large"):
        big = tmp_path / "big.json"
        with open(big, "wb") as handle:
            handle.truncate(exporter.MAX_IMPORT_BYTES + 1)
        exporter.import_file(big)
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(StoreError, match="not a regular file"):
        exporter.import_file(tmp_path / "fifo.json")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(StoreError, match="folder"):
        exporter.import_file(tmp_path / "dir.json")


def test_null_in_the_model_table_means_unset(store: SessionStore, tmp_path: Path) -> None:
    path = write(tmp_path, chat_tui_doc(model={"source": "org/m", "revision": None}))
    conv = store.import_conversation(exporter.import_file(path))
    assert store.load(conv.id).model == {"source": "org/m"}


def test_lone_surrogates_import_and_save(store: SessionStore, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"messages": [{"role": "user", "content": "a \\ud800 b"},'
        ' {"role": "assistant", "content": "\\udfff"}]}',
    )
    conv = store.import_conversation(exporter.import_file(path))
    assert [m.content for m in store.load(conv.id).transcript] == ["a \ud800 b", "\udfff"]


def test_a_chat_tui_export_round_trips_nested_settings(store: SessionStore, tmp_path: Path) -> None:
    conv = store.new(
        settings={"sequence_bias": {"[1]": -2.0}, "bad_words_ids": [[1, 2]], "seed": 3}
    )
    conv.append("user", "x")
    store.save(conv)
    path = write(tmp_path, exporter.to_json(conv), "export.json")
    back = store.import_conversation(exporter.import_file(path))
    assert store.load(back.id).settings == conv.settings


# -- `transformers chat` history files -------------------------------------------------


def history(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "settings": settings,
        "chat_history": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi!"},
        ],
    }


def understood(settings: dict[str, Any]) -> None:
    """chat-tui's own settings layer accepts every imported setting."""
    from tui.engine.settings import GenerationSettings, validate

    validate(dict(settings))
    GenerationSettings(dict(settings)).generation_kwargs()


def test_transformers_chat_config_keeps_every_setting(store: SessionStore, tmp_path: Path) -> None:
    """What `transformers chat` writes today: settings.config is the full
    GenerationConfig.to_dict() (unset fields are null)."""
    from transformers import GenerationConfig

    config = GenerationConfig()
    config.update(do_sample=True, max_new_tokens=256)  # what `chat` sets itself
    chosen = {
        "temperature": 0.6,
        "top_p": 0.9,
        "top_k": 20,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "no_repeat_ngram_size": 4,
        "stop_strings": ["END"],
        "eos_token_id": [2, 7],
        "max_time": 30.0,
    }
    config.update(**chosen)
    settings = {"base_url": "http://localhost:8000", "model_id": "Qwen/Qwen2.5-0.5B-Instruct"}
    settings["config"] = config.to_dict()
    path = write(tmp_path, history(settings))
    conv = store.import_conversation(exporter.import_file(path))
    loaded = store.load(conv.id)
    assert loaded.settings == {"do_sample": True, "max_new_tokens": 256, **chosen}
    assert loaded.model == {"source": "Qwen/Qwen2.5-0.5B-Instruct"}
    assert loaded.system_prompt == "sys"
    understood(loaded.settings)


def test_transformers_4_config_drops_unchosen_defaults(tmp_path: Path) -> None:
    """transformers 4.x wrote every default (max_length 20, use_cache true...)."""
    config = {
        "max_length": 20,
        "max_new_tokens": 256,
        "min_length": 0,
        "early_stopping": False,
        "do_sample": True,
        "num_beams": 1,
        "num_beam_groups": 1,
        "use_cache": True,
        "temperature": 0.7,
        "top_k": 50,
        "top_p": 1.0,
        "typical_p": 1.0,
        "epsilon_cutoff": 0.0,
        "repetition_penalty": 1.0,
        "length_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "num_return_sequences": 1,
        "output_scores": False,
        "return_dict_in_generate": False,
        "pad_token_id": None,
        "eos_token_id": None,
        "num_assistant_tokens": 20,
        "num_assistant_tokens_schedule": "constant",
        "generation_kwargs": {},
        "transformers_version": "4.46.0",
        "_from_model_config": False,
    }
    conv = exporter.import_file(write(tmp_path, history({"model_id": "m", "config": config})))
    assert conv.settings == {
        "max_new_tokens": 256,
        "do_sample": True,
        "num_beams": 1,
        "temperature": 0.7,
        "top_k": 50,
        "top_p": 1.0,
        "typical_p": 1.0,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
    }
    understood(conv.settings)


def test_transformers_chat_generate_flags_and_flat_settings(tmp_path: Path) -> None:
    middle = {
        "model_name_or_path": "org/model",
        "model_revision": "v2",
        "generate_flags": ["temperature=0.3", "do_sample=True", "top_k=5", "eos_token_id=[1,2]"],
        "generation_config": None,
        "save_folder": "./chat_history/",
    }
    conv = exporter.import_file(write(tmp_path, history(middle)))
    assert conv.settings == {
        "temperature": 0.3,
        "do_sample": True,
        "top_k": 5,
        "eos_token_id": [1, 2],
    }
    assert conv.model == {"source": "org/model", "revision": "v2"}
    understood(conv.settings)
    oldest = {
        "model_name_or_path": "org/old",
        "max_new_tokens": 128,
        "do_sample": False,
        "num_beams": 2,
        "temperature": 0.9,
        "top_k": 40,
        "top_p": 0.8,
        "repetition_penalty": 1.2,
        "eos_tokens": "<|end|>,###",
        "eos_token_ids": None,
        "model_revision": "main",
        "device": "cpu",
    }
    conv = exporter.import_file(write(tmp_path, history(oldest)))
    assert conv.settings == {
        "max_new_tokens": 128,
        "do_sample": False,
        "num_beams": 2,
        "temperature": 0.9,
        "top_k": 40,
        "top_p": 0.8,
        "repetition_penalty": 1.2,
        "stop_strings": ["<|end|>", "###"],
    }
    assert conv.model == {"source": "org/old"}
    understood(conv.settings)
