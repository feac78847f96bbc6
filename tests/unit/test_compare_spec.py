"""The comparison SPEC ``[MODEL][@PRECISION]``: one parser, one sentence per mistake."""

from __future__ import annotations

import pytest

from tui.engine.errors import EngineError
from tui.engine.spec import CompareSpec, ModelSpec, parse_compare_spec, precision_tag

REFERENCE = ModelSpec(
    source="org/model", revision="v1", dtype="fp32", chat_template_file="/t.jinja"
)


@pytest.mark.parametrize(
    ("text", "fields", "label"),
    [
        ("@fp32", {"dtype": "fp32", "quantization": "none"}, "@fp32"),
        ("@bf16", {"dtype": "bf16", "quantization": "none"}, "@bf16"),
        ("@BFloat16", {"dtype": "bf16", "quantization": "none"}, "@bf16"),
        ("@fp16", {"dtype": "fp16", "quantization": "none"}, "@fp16"),
        ("@half", {"dtype": "fp16", "quantization": "none"}, "@fp16"),
        ("@8bit", {"dtype": "fp32", "quantization": "8bit"}, "@8bit"),
        ("@4bit", {"quantization": "4bit", "bnb_4bit_quant_type": "nf4"}, "@4bit"),
        ("@nf4", {"quantization": "4bit", "bnb_4bit_quant_type": "nf4"}, "@4bit"),
        ("@4bit-fp4", {"quantization": "4bit", "bnb_4bit_quant_type": "fp4"}, "@4bit-fp4"),
        (" @4BIT-FP4 ", {"quantization": "4bit", "bnb_4bit_quant_type": "fp4"}, "@4bit-fp4"),
    ],
)
def test_a_precision_alone_keeps_the_reference_model(text, fields, label) -> None:
    parsed = parse_compare_spec(text)
    assert parsed.source is None and not parsed.no_draft
    assert parsed.label == label == str(parsed)
    spec = parsed.resolve(REFERENCE)
    assert spec.source == "org/model" and spec.revision == "v1"
    assert spec.chat_template_file == "/t.jinja"
    for name, value in fields.items():
        assert getattr(spec, name) == value


def test_a_model_with_a_precision() -> None:
    parsed = parse_compare_spec("Qwen/Qwen2.5-0.5B-Instruct@4bit")
    assert parsed == CompareSpec(source="Qwen/Qwen2.5-0.5B-Instruct", precision="4bit")
    spec = parsed.resolve(REFERENCE)
    assert spec.source == "Qwen/Qwen2.5-0.5B-Instruct"
    assert (spec.quantization, spec.bnb_4bit_quant_type) == ("4bit", "nf4")
    # the revision and template belonged to the reference model
    assert spec.revision is None and spec.chat_template_file is None
    assert parse_compare_spec("./other-model@bf16").resolve(REFERENCE).dtype == "bf16"


def test_a_bare_model_means_the_reference_precision() -> None:
    reference = ModelSpec(source="a/b", quantization="8bit")
    spec = parse_compare_spec("./other-model").resolve(reference)
    assert spec.source == "./other-model"
    assert spec.quantization == "8bit" and spec.dtype == reference.dtype
    assert parse_compare_spec("./other-model").label == "./other-model"


def test_a_path_holding_an_at_sign(tmp_path) -> None:
    folder = tmp_path / "model@home"
    folder.mkdir()
    assert parse_compare_spec(str(folder)).source == str(folder)
    assert parse_compare_spec(f"{folder}@bf16").source == str(folder)


def test_same_no_draft() -> None:
    parsed = parse_compare_spec("@same-no-draft")
    assert parsed.no_draft and parsed.label == "@same-no-draft"
    assert parsed.resolve(REFERENCE) == REFERENCE


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "Give something to compare with"),
        ("   ", "Give something to compare with"),
        ("@int3", "Unknown precision @int3"),
        ("org/model@fast", "Unknown precision @fast"),
        ("org/model@", "Nothing after the @"),
        ("./m@same-no-draft", "without a model"),
    ],
)
def test_bad_specs_are_one_sentence(text: str, says: str) -> None:
    with pytest.raises(EngineError) as caught:
        parse_compare_spec(text)
    message = str(caught.value)
    assert says in message
    assert "\n" not in message and message.endswith(".")
    if "precision" in says or "after the @" in says:
        for tag in ("@fp32", "@bf16", "@8bit", "@4bit", "@4bit-fp4", "@same-no-draft"):
            assert tag in message


@pytest.mark.parametrize(
    ("spec", "dtype", "tag"),
    [
        (ModelSpec(), "fp32", "@fp32"),
        (ModelSpec(dtype="bf16"), None, "@bf16"),
        (ModelSpec(quantization="8bit"), "fp32", "@8bit"),
        (ModelSpec(quantization="4bit"), "fp32", "@4bit"),
        (ModelSpec(quantization="4bit", bnb_4bit_quant_type="fp4"), "fp32", "@4bit-fp4"),
    ],
)
def test_precision_tag_round_trips(spec: ModelSpec, dtype: str | None, tag: str) -> None:
    assert precision_tag(spec, dtype) == tag
    resolved = parse_compare_spec(tag).resolve(spec.with_changes(dtype=dtype or spec.dtype))
    assert precision_tag(resolved, dtype if resolved.dtype == "auto" else None) == tag
