"""What to load and how: a plain, hashable description with no heavy imports."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import EngineError

DEFAULT_MODEL = "default"
"""The source name of the bundled SmolLM2-135M-Instruct (see ``default_model``)."""

DTYPES = ("auto", "bf16", "fp16", "fp32")
QUANTIZATIONS = ("none", "8bit", "4bit")
QUANT_TYPES_4BIT = ("nf4", "fp4")
ATTN_IMPLEMENTATIONS = ("auto", "eager", "sdpa", "flash_attention_2", "flex_attention")

_DTYPE_ALIASES = {
    "auto": "auto",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
}
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
MAX_SOURCE_BYTES = 4096
"""A model source longer than this names no model (a path is at most 4,096 bytes)."""


def path_exists(text: str) -> bool:
    """Whether ``text`` names an existing file or folder; a name the system refuses (too
    long, a NUL byte) exists nowhere."""
    try:
        return Path(text).expanduser().exists()
    except (OSError, ValueError):
        return False


def normalize_dtype(value: str) -> str:
    try:
        return _DTYPE_ALIASES[value.strip().lower()]
    except KeyError:
        raise EngineError(
            f"Unknown precision {value!r}; choose one of auto, bf16, fp16, fp32."
        ) from None


def normalize_device(value: str) -> str:
    device = value.strip().lower()
    if not _DEVICE_RE.match(device):
        raise EngineError(f"Unknown device {value!r}; choose auto, cpu, cuda, cuda:N or mps.")
    return device


@dataclass(frozen=True)
class ModelSpec:
    """A model and the way to load it.

    ``source`` is ``"default"`` (the bundled SmolLM2), a Hub id (``org/name``), a local
    folder holding a transformers model, or a ``.gguf`` file.
    """

    source: str = DEFAULT_MODEL
    revision: str | None = None
    dtype: str = "auto"
    quantization: str = "none"
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_use_double_quant: bool = False
    bnb_4bit_compute_dtype: str = "auto"
    device: str = "auto"
    attn_implementation: str = "auto"
    trust_remote_code: bool = False
    chat_template_file: str | None = None
    extra: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise EngineError("Name a model: a Hub id, a folder or a .gguf file.")
        if len(self.source.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
            raise EngineError(
                f"That model name is {len(self.source):,} characters long; no model has a "
                "name that long."
            )
        object.__setattr__(self, "dtype", normalize_dtype(self.dtype))
        object.__setattr__(self, "device", normalize_device(self.device))
        if self.quantization not in QUANTIZATIONS:
            raise EngineError(
                f"Unknown quantization {self.quantization!r}; choose none, 8bit or 4bit."
            )
        if self.bnb_4bit_quant_type not in QUANT_TYPES_4BIT:
            raise EngineError(
                f"Unknown 4-bit type {self.bnb_4bit_quant_type!r}; choose nf4 or fp4."
            )
        object.__setattr__(
            self, "bnb_4bit_compute_dtype", normalize_dtype(self.bnb_4bit_compute_dtype)
        )
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise EngineError(
                f"Unknown attention implementation {self.attn_implementation!r}; choose one of "
                + ", ".join(ATTN_IMPLEMENTATIONS)
                + "."
            )

    @property
    def is_default(self) -> bool:
        return self.source == DEFAULT_MODEL

    @property
    def is_gguf(self) -> bool:
        return self.source.lower().endswith(".gguf")

    @property
    def precision_label(self) -> str:
        """What the status line shows: ``fp32``, ``8-bit``, ``4-bit nf4`` ..."""
        if self.quantization == "8bit":
            return "8-bit"
        if self.quantization == "4bit":
            return f"4-bit {self.bnb_4bit_quant_type}"
        return self.dtype

    @property
    def display_name(self) -> str:
        if self.is_default:
            return "SmolLM2-135M-Instruct (bundled)"
        if self.is_gguf or path_exists(self.source):
            return Path(self.source).name
        return self.source

    def with_changes(self, **changes: Any) -> ModelSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(**{k: v for k, v in data.items() if k in known})


FIELD_TYPES: dict[str, type] = {
    "source": str,
    "revision": str,
    "dtype": str,
    "quantization": str,
    "bnb_4bit_quant_type": str,
    "bnb_4bit_use_double_quant": bool,
    "bnb_4bit_compute_dtype": str,
    "device": str,
    "attn_implementation": str,
    "trust_remote_code": bool,
    "chat_template_file": str,
}
"""The fields of a :class:`ModelSpec` a file may hold, and the type each must have."""


def checked_fields(data: Any, where: str, unknown: bool = True) -> tuple[dict[str, Any], list[str]]:
    """The model fields of a table read from a file (``config.toml``'s ``[model]``,
    ``state.toml``'s ``[last_model]``): each of the right type and a valid value, and
    one sentence for each that is not, naming ``where`` and the key (it is left out).
    ``unknown``: say so for keys that are no model field, too."""
    from ..safe_text import one_line

    if not isinstance(data, dict):
        return {}, [f"{where} is not a table of model settings; it is ignored."]
    good: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in data.items():
        name = one_line(str(key), 40)
        if key not in FIELD_TYPES:
            if unknown:
                problems.append(f"{where} has no setting {name!r}; it is ignored.")
            continue
        wanted = FIELD_TYPES[key]
        if not isinstance(value, wanted) or (wanted is str and isinstance(value, bool)):
            kind = "true or false" if wanted is bool else "text in quotes"
            problems.append(
                f"{where} {name} = {one_line(repr(value), 40)} should be {kind}; it is ignored."
            )
            continue
        try:
            ModelSpec(**{key: value}) if key != "source" else ModelSpec(source=value)
        except EngineError as exc:
            problems.append(f"{where} {name}: {exc} It is ignored.")
            continue
        good[key] = value
    return good, problems


# -- comparison specs: ``[MODEL][@PRECISION]`` ------------------------------------------

SAME_NO_DRAFT = "same-no-draft"
"""``@same-no-draft``: the loaded model at its own precision, without speculative
decoding (no draft model, no prompt lookup): what speculation buys on this turn."""

# precision tag -> ModelSpec fields (the reference's other fields are kept)
PRECISIONS: dict[str, dict[str, Any]] = {
    "fp32": {"dtype": "fp32", "quantization": "none"},
    "bf16": {"dtype": "bf16", "quantization": "none"},
    "fp16": {"dtype": "fp16", "quantization": "none"},
    "8bit": {"quantization": "8bit"},
    "4bit": {"quantization": "4bit", "bnb_4bit_quant_type": "nf4"},
    "4bit-fp4": {"quantization": "4bit", "bnb_4bit_quant_type": "fp4"},
}
_PRECISION_ALIASES = {
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "int8": "8bit",
    "8-bit": "8bit",
    "4-bit": "4bit",
    "nf4": "4bit",
    "4bit-nf4": "4bit",
    "fp4": "4bit-fp4",
}
SPEC_SYNTAX = (
    "@fp32, @bf16, @fp16, @8bit, @4bit (nf4), @4bit-fp4 or @same-no-draft, optionally "
    "after a model (./other-model@bf16, Qwen/Qwen2.5-0.5B-Instruct@4bit)"
)


def _precision_tag(text: str) -> str | None:
    key = text.strip().lower()
    key = _PRECISION_ALIASES.get(key, key)
    return key if key in PRECISIONS or key == SAME_NO_DRAFT else None


@dataclass(frozen=True)
class CompareSpec:
    """What to compare a turn against, parsed from ``[MODEL][@PRECISION]``.

    ``source`` None means the reference's model; ``precision`` None means the
    reference's precision (a bare model); ``no_draft`` is ``@same-no-draft``."""

    source: str | None = None
    precision: str | None = None
    no_draft: bool = False

    @property
    def label(self) -> str:
        """The spec written the canonical way: ``@bf16``, ``./m@4bit``, ``./m``."""
        tag = SAME_NO_DRAFT if self.no_draft else self.precision
        return (self.source or "") + (f"@{tag}" if tag else "")

    def resolve(self, reference: ModelSpec) -> ModelSpec:
        """The ModelSpec to load: the reference's, with this model and precision. Another
        model drops the reference's revision, chat template file and permission to run
        its own code (they belong to the reference: ``--trust-remote-code`` was given for
        that model, not for whatever is compared with it)."""
        spec = reference
        if self.source is not None and self.source != reference.source:
            spec = spec.with_changes(
                source=self.source,
                revision=None,
                chat_template_file=None,
                trust_remote_code=False,
            )
        if self.precision is not None:
            spec = spec.with_changes(**PRECISIONS[self.precision])
        return spec

    def __str__(self) -> str:
        return self.label


def parse_compare_spec(text: str) -> CompareSpec:
    """Parse ``[MODEL][@PRECISION]``; raise :class:`EngineError` (one sentence) if bad."""
    if not isinstance(text, str) or not text.strip():
        raise EngineError(f"Give something to compare with: {SPEC_SYNTAX}.")
    raw = text.strip()
    model, at, tag_text = raw.rpartition("@")
    if not at:
        return CompareSpec(source=raw)
    tag = _precision_tag(tag_text)
    if tag is None:
        if path_exists(raw):  # a path that happens to hold an "@"
            return CompareSpec(source=raw)
        if not tag_text.strip():
            raise EngineError(f"Nothing after the @ in {raw!r}; use {SPEC_SYNTAX}.")
        raise EngineError(f"Unknown precision @{tag_text.strip()} in {raw!r}; use {SPEC_SYNTAX}.")
    model = model.strip() or None
    if tag == SAME_NO_DRAFT:
        if model is not None:
            raise EngineError(
                "@same-no-draft compares the loaded model with itself; give it without a model."
            )
        return CompareSpec(no_draft=True)
    return CompareSpec(source=model, precision=tag)


def precision_tag(spec: ModelSpec, dtype: str | None = None) -> str:
    """The ``@tag`` a loaded model's precision is written as (``dtype``: the resolved
    dtype, for a spec whose dtype is ``auto``)."""
    if spec.quantization == "8bit":
        return "@8bit"
    if spec.quantization == "4bit":
        return "@4bit" if spec.bnb_4bit_quant_type == "nf4" else "@4bit-fp4"
    return "@" + (dtype or spec.dtype)
