"""ModelSpec: normalisation, validation with helpful messages, labels, round trips."""

from __future__ import annotations

import pytest

from tui.engine.errors import EngineError
from tui.engine.spec import ATTN_IMPLEMENTATIONS, ModelSpec


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("bfloat16", "bf16"),
        ("BF16", "bf16"),
        ("float16", "fp16"),
        ("half", "fp16"),
        ("float32", "fp32"),
        ("float", "fp32"),
        (" fp32 ", "fp32"),
        ("auto", "auto"),
    ],
)
def test_dtype_aliases_normalize(given: str, expected: str) -> None:
    assert ModelSpec(dtype=given).dtype == expected
    assert ModelSpec(bnb_4bit_compute_dtype=given).bnb_4bit_compute_dtype == expected


@pytest.mark.parametrize(
    ("given", "expected"), [("CPU", "cpu"), ("cuda:1", "cuda:1"), ("MPS", "mps")]
)
def test_device_normalizes(given: str, expected: str) -> None:
    assert ModelSpec(device=given).device == expected


@pytest.mark.parametrize(
    ("field", "value", "choices"),
    [
        ("dtype", "fp8", ("auto", "bf16", "fp16", "fp32")),
        ("bnb_4bit_compute_dtype", "int4", ("bf16", "fp16", "fp32")),
        ("device", "gpu", ("cpu", "cuda", "cuda:N", "mps")),
        ("device", "cuda:x", ("cpu", "cuda", "mps")),
        ("quantization", "2bit", ("none", "8bit", "4bit")),
        ("bnb_4bit_quant_type", "int4", ("nf4", "fp4")),
        ("attn_implementation", "flash", ATTN_IMPLEMENTATIONS),
    ],
)
def test_bad_values_name_the_choices(field: str, value: str, choices: tuple[str, ...]) -> None:
    with pytest.raises(EngineError) as caught:
        ModelSpec(**{field: value})
    message = str(caught.value)
    assert value in message
    assert "\n" not in message
    for choice in choices:
        assert choice in message


@pytest.mark.parametrize(
    ("changes", "label"),
    [
        ({}, "auto"),
        ({"dtype": "bfloat16"}, "bf16"),
        ({"dtype": "fp32", "quantization": "8bit"}, "8-bit"),
        ({"quantization": "4bit"}, "4-bit nf4"),
        ({"quantization": "4bit", "bnb_4bit_quant_type": "fp4"}, "4-bit fp4"),
    ],
)
def test_precision_label(changes: dict, label: str) -> None:
    assert ModelSpec(**changes).precision_label == label


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(),
        ModelSpec(
            source="org/model",
            revision="v1",
            dtype="bfloat16",
            quantization="4bit",
            bnb_4bit_quant_type="fp4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype="fp16",
            device="cuda:1",
            attn_implementation="sdpa",
            trust_remote_code=True,
            chat_template_file="/tmp/template.jinja",
        ),
    ],
)
def test_to_dict_from_dict_round_trip(spec: ModelSpec) -> None:
    data = spec.to_dict()
    assert "extra" not in data
    assert all(value is not None for value in data.values())
    assert ModelSpec.from_dict(data) == spec


def test_from_dict_ignores_unknown_keys() -> None:
    data = {**ModelSpec(source="org/model").to_dict(), "schema_version": 1, "colour": "red"}
    assert ModelSpec.from_dict(data) == ModelSpec(source="org/model")


def test_specs_are_hashable_values() -> None:
    assert ModelSpec(dtype="bfloat16") == ModelSpec(dtype="bf16")
    assert len({ModelSpec(dtype="bfloat16"), ModelSpec(dtype="bf16")}) == 1
    assert ModelSpec().with_changes(dtype="half").dtype == "fp16"


def test_display_name(tmp_path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert ModelSpec().is_default
    assert ModelSpec(source=str(folder)).display_name == "my-model"
    assert ModelSpec(source="/x/y/Model.Q4.GGUF").is_gguf
    assert ModelSpec(source="org/name").display_name == "org/name"
