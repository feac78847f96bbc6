"""How a reply was made: the snapshot saved with every reply, so it can be replayed.

A :class:`Provenance` records what to load again (the model's :class:`ModelSpec`), what
was actually loaded (revision, a cheap fingerprint of the weights files, dtype,
quantization, device, attention implementation), the full effective generation
settings and the seed, how the prompt looked (its length and a hash of its token
ids), speculative decoding, and the library versions. ``to_dict`` gives a plain table
(strings, numbers, booleans, lists, one level of sub-tables) for the conversation
file; ``from_dict`` reads one back from anything, keeping only what has the right
type, since a file may hold anything.

No heavy imports at module level; building one reads versions from modules that
generation has already imported.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .settings import GenerationSettings
from .spec import ModelSpec
from .trust import Recorded, from_file

FORMAT = 1
MAX_SEED = 2**32 - 1
"""The largest seed (as the ``seed`` setting takes): a bigger one in a file is dropped."""
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
_DESCRIBING_FILES = ("config.json", "generation_config.json")


def weights_fingerprint(folder: Path | str | None) -> str | None:
    """A cheap identity of a model folder's weights: a hash of every weights file's name,
    size and modification time, and of the bytes of its index and config files (no
    weights are read). ``None`` when the folder cannot be listed."""
    if folder is None:
        return None
    path = Path(folder)
    digest = hashlib.sha256()
    try:
        entries = sorted(path.iterdir())
    except OSError:
        return None
    seen = False
    for entry in entries:
        name = entry.name
        try:
            if name.endswith(".index.json") or name in _DESCRIBING_FILES:
                digest.update(f"{name}\0".encode())
                digest.update(entry.read_bytes()[: 4 * 1024 * 1024])
                seen = True
            elif name.endswith(_WEIGHT_SUFFIXES):
                stat = entry.stat()
                digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
                seen = True
        except OSError:
            continue
    return f"files:{digest.hexdigest()[:16]}" if seen else None


def prompt_digest(ids: list[int]) -> str:
    """A short hash of a prompt's token ids (the whole rendered conversation)."""
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]


def library_versions(quantized: bool = False) -> dict[str, str]:
    from .. import __version__

    versions = {"chat-tui": __version__, "python": platform.python_version()}
    for name in ("torch", "transformers") + (("bitsandbytes",) if quantized else ()):
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None) if module is not None else None
        if version is None:
            try:
                from importlib.metadata import version as dist_version

                version = dist_version(name)
            except Exception:
                continue
        versions[name] = str(version)
    return versions


def _plain(value: Any) -> Any:
    """A JSON/TOML-friendly copy: tuples become lists, non-finite floats and unknown
    objects are dropped (None)."""
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return [v for v in items if v is not None]
    if isinstance(value, dict):
        out = {str(k): _plain(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None}
    return None


@dataclass
class Provenance:
    """How one reply was made (see the module docstring)."""

    spec: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    revision: str | None = None
    weights: str | None = None
    dtype: str | None = None
    quantization: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    attn_implementation: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    seed_drawn: bool = False
    speculative: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    prompt_tokens: int | None = None
    prompt_sha256: str | None = None
    dropped_messages: int = 0
    continue_final: bool = False

    # -- to and from the conversation file ----------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": FORMAT}
        for name in (
            "model",
            "revision",
            "weights",
            "dtype",
            "device",
            "attn_implementation",
            "seed",
            "prompt_tokens",
            "prompt_sha256",
        ):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.seed is not None:
            data["seed_drawn"] = self.seed_drawn
        if self.dropped_messages:
            data["dropped_messages"] = self.dropped_messages
        if self.continue_final:
            data["continue_final"] = True
        for name in ("spec", "quantization", "settings", "speculative", "versions"):
            table = _plain(getattr(self, name))
            if table:
                data[name] = table
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Provenance | None:
        """A provenance from a stored table, keeping only values of the right type;
        ``None`` if ``data`` is not a table."""
        if not isinstance(data, dict):
            return None

        def text(name: str) -> str | None:
            value = data.get(name)
            return value if isinstance(value, str) else None

        def number(name: str, limit: int = 2**63 - 1) -> int | None:
            value = data.get(name)
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit
            return value if ok else None

        def table(name: str) -> dict[str, Any]:
            value = data.get(name)
            return dict(value) if isinstance(value, dict) else {}

        return cls(
            spec=table("spec"),
            model=text("model"),
            revision=text("revision"),
            weights=text("weights"),
            dtype=text("dtype"),
            quantization=table("quantization"),
            device=text("device"),
            attn_implementation=text("attn_implementation"),
            settings=table("settings"),
            seed=number("seed", MAX_SEED),
            seed_drawn=data.get("seed_drawn") is True,
            speculative=table("speculative"),
            versions={k: v for k, v in table("versions").items() if isinstance(v, str)},
            prompt_tokens=number("prompt_tokens"),
            prompt_sha256=text("prompt_sha256"),
            dropped_messages=number("dropped_messages") or 0,
            continue_final=data.get("continue_final") is True,
        )

    # -- what to do with one -----------------------------------------------------------
    def recorded(self) -> Recorded:
        """The model this reply names, safe to load as it is: nothing the file says may
        turn on remote code, name a template file or fetch attention kernels (see
        :mod:`.trust`; the refused values are said in ``refused``). Raises
        :class:`EngineError` if the stored spec is unusable."""
        return from_file(self.spec, what="this reply")

    def model_spec(self) -> ModelSpec:
        """The spec to load the model again (see :meth:`recorded`)."""
        return self.recorded().spec

    def generation_settings(self) -> GenerationSettings:
        """The settings to make the reply again: every effective value, and the seed."""
        values = {k: v for k, v in self.settings.items() if isinstance(k, str)}
        if self.seed is not None:
            values["seed"] = self.seed
        return GenerationSettings(values)

    def describe(self) -> str:
        """One line: model, precision, device, decoding and seed, versions."""
        return describe_table(self.to_dict())


def describe_table(data: dict[str, Any]) -> str:
    """One line for a stored provenance table (also used on tables read from files, so
    every value is checked before use)."""
    parts: list[str] = []
    if isinstance(data.get("model"), str):
        parts.append(data["model"])
    quant = data.get("quantization") if isinstance(data.get("quantization"), dict) else {}
    method = quant.get("method")
    if method == "8bit":
        parts.append("8-bit")
    elif method == "4bit":
        parts.append(f"4-bit {quant.get('quant_type', 'nf4')}")
    elif isinstance(data.get("dtype"), str):
        parts.append(data["dtype"])
    if isinstance(data.get("device"), str):
        parts.append(data["device"])
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    if settings:
        if settings.get("do_sample") is True:
            shown = [
                f"{k}={settings[k]}"
                for k in ("temperature", "top_p", "top_k")
                if isinstance(settings.get(k), (int, float)) and not isinstance(settings[k], bool)
            ]
            parts.append("sampling " + " ".join(shown) if shown else "sampling")
        else:
            parts.append("greedy")
    seed = data.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        parts.append(f"seed {seed}" + (" (drawn)" if data.get("seed_drawn") is True else ""))
    speculative = data.get("speculative") if isinstance(data.get("speculative"), dict) else {}
    if isinstance(speculative.get("assistant_model"), str):
        parts.append(f"draft {speculative['assistant_model']}")
    elif isinstance(speculative.get("prompt_lookup"), int):
        parts.append(f"prompt lookup {speculative['prompt_lookup']}")
    versions = data.get("versions") if isinstance(data.get("versions"), dict) else {}
    libs = [
        f"{k} {versions[k]}" for k in ("torch", "transformers") if isinstance(versions.get(k), str)
    ]
    if libs:
        parts.append(", ".join(libs))
    return " · ".join(parts)


def quantization_table(spec: ModelSpec) -> dict[str, Any]:
    if spec.quantization == "none":
        return {"method": "none"}
    table: dict[str, Any] = {"method": spec.quantization, "library": "bitsandbytes"}
    if spec.quantization == "4bit":
        table.update(
            quant_type=spec.bnb_4bit_quant_type,
            double_quant=spec.bnb_4bit_use_double_quant,
            compute_dtype=spec.bnb_4bit_compute_dtype,
        )
    return table


def _revision(loaded: Any) -> str | None:
    source = loaded.source
    if getattr(source, "hub_id", None) and source.folder is not None:
        folder = Path(source.folder)
        if folder.parent.name == "snapshots":  # the Hub cache names snapshots by commit
            return folder.name
    return getattr(source, "revision", None) or loaded.spec.revision


def _attn(loaded: Any) -> str | None:
    config = getattr(loaded.model, "config", None)
    value = getattr(config, "_attn_implementation", None)
    return value if isinstance(value, str) else None


def build(
    loaded: Any,
    settings: dict[str, Any],
    *,
    seed: int | None,
    seed_drawn: bool,
    prompt_ids: list[int],
    dropped_messages: int = 0,
    prompt_lookup: int | None = None,
    assistant: Any = None,
    continue_final: bool = False,
) -> Provenance:
    """The provenance of a reply generated on ``loaded`` (a loader.LoadedModel) with
    ``settings``, the effective generation settings as used (see
    :class:`~.settings.EffectiveSettings`)."""
    weights = getattr(loaded, "weights_id", None)
    if weights is None:
        weights = weights_fingerprint(getattr(loaded.source, "folder", None))
        try:
            loaded.weights_id = weights
        except AttributeError:
            pass
    speculative: dict[str, Any] = {}
    if assistant is not None:
        speculative["assistant_model"] = assistant.spec.source
    elif prompt_lookup:
        speculative["prompt_lookup"] = int(prompt_lookup)
    settings = {k: v for k, v in settings.items() if k != "seed"}
    return Provenance(
        spec=loaded.spec.to_dict(),
        model=loaded.name,
        revision=_revision(loaded),
        weights=weights,
        dtype=loaded.dtype,
        quantization=quantization_table(loaded.spec),
        device=str(loaded.device),
        attn_implementation=_attn(loaded),
        settings=json.loads(json.dumps(_plain(settings))),
        seed=seed,
        seed_drawn=seed_drawn,
        speculative=speculative,
        versions=library_versions(loaded.spec.quantization != "none"),
        prompt_tokens=len(prompt_ids),
        prompt_sha256=prompt_digest(prompt_ids),
        dropped_messages=dropped_messages,
        continue_final=continue_final,
    )


def differences(saved: Provenance, now: Provenance) -> list[str]:
    """Why a replay may differ: each recorded condition that is not the same now, as a
    short phrase (``device cpu, was cuda:0``)."""
    out: list[str] = []
    if saved.prompt_sha256 and now.prompt_sha256 and saved.prompt_sha256 != now.prompt_sha256:
        out.append(
            "the prompt is not the same (the system prompt, the chat template or an earlier "
            "message changed)"
        )
    if saved.weights and now.weights and saved.weights != now.weights:
        out.append("different weights files (size, time or config changed)")
    if saved.revision and now.revision and saved.revision != now.revision:
        out.append(f"revision {now.revision}, was {saved.revision}")
    for name, label in (
        ("device", "device"),
        ("dtype", "dtype"),
        ("attn_implementation", "attention"),
    ):
        old, new = getattr(saved, name), getattr(now, name)
        if old and new and old != new:
            out.append(f"{label} {new}, was {old}")
    if saved.quantization and now.quantization and saved.quantization != now.quantization:
        out.append("different quantization settings")
    for library in ("torch", "transformers", "bitsandbytes"):
        old, new = saved.versions.get(library), now.versions.get(library)
        if old and new and old != new:
            out.append(f"{library} {new}, was {old}")
    return out
