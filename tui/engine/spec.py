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
        if self.is_gguf or Path(self.source).expanduser().exists():
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
