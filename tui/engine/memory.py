"""Memory: estimates before loading and live probes after.

Estimates come from the model config alone (parameters counted on the meta device),
so a model that cannot fit is refused before a byte of it is read.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

BYTES_PER_DTYPE = {"fp32": 4, "bf16": 2, "fp16": 2}
GiB = 1024**3
MiB = 1024**2


def human_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    weight_bytes: int
    kv_bytes_per_token: int
    context_limit: int | None

    def kv_bytes(self, tokens: int) -> int:
        return self.kv_bytes_per_token * tokens

    def total_bytes(self, tokens: int) -> int:
        return self.weight_bytes + self.kv_bytes(tokens)

    def describe(self, tokens: int = 4096) -> str:
        return (
            f"{self.parameters / 1e6:,.0f}M parameters: weights {human_bytes(self.weight_bytes)}, "
            f"KV cache {human_bytes(self.kv_bytes_per_token)}/token "
            f"({human_bytes(self.kv_bytes(tokens))} at {tokens:,} tokens)"
        )


def _text_config(config: Any) -> Any:
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def kv_bytes_per_token(config: Any, dtype_bytes: int) -> int:
    """layers x 2 (K and V) x kv_heads x head_dim x bytes per element."""
    cfg = _text_config(config)
    layers = int(getattr(cfg, "num_hidden_layers", 0) or 0)
    heads = int(getattr(cfg, "num_attention_heads", 0) or 0)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    hidden = int(getattr(cfg, "hidden_size", 0) or 0)
    head_dim = getattr(cfg, "head_dim", None) or (hidden // heads if heads else 0)
    return layers * 2 * kv_heads * int(head_dim) * dtype_bytes


def count_parameters(config: Any, trust_remote_code: bool = False) -> tuple[int, int]:
    """(all parameters, parameters inside nn.Linear layers other than the LM head)."""
    from . import libs

    torch = libs.torch()
    auto_model = libs.transformers().AutoModelForCausalLM
    with libs.lock, torch.device("meta"):
        model = auto_model.from_config(config, trust_remote_code=trust_remote_code)
    total = sum(p.numel() for p in model.parameters())
    linear = 0
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            linear += module.weight.numel()
    return total, linear


def estimate(
    config: Any,
    dtype: str,
    quantization: str = "none",
    trust_remote_code: bool = False,
) -> MemoryEstimate:
    """Bytes the weights will take once loaded, and the KV cache per token.

    8-bit stores Linear weights in 1 byte, 4-bit in half a byte plus one scale per
    64 weights; everything else (embeddings, norms, the LM head) stays in ``dtype``.
    """
    total, linear = count_parameters(config, trust_remote_code)
    width = BYTES_PER_DTYPE.get(dtype, 4)
    if quantization == "8bit":
        weight = (total - linear) * width + linear * 1 + linear // 4096 * 4
    elif quantization == "4bit":
        weight = (total - linear) * width + linear // 2 + linear // 64 * 4
    else:
        weight = total * width
    kv_width = width  # quantized models compute, and cache, in the non-quantized dtype
    cfg = _text_config(config)
    return MemoryEstimate(
        parameters=total,
        weight_bytes=int(weight),
        kv_bytes_per_token=kv_bytes_per_token(config, kv_width),
        context_limit=getattr(cfg, "max_position_embeddings", None),
    )


@dataclass(frozen=True)
class AcceleratorMemory:
    device: str
    allocated: int
    reserved: int
    total: int | None


@dataclass(frozen=True)
class MemorySnapshot:
    process_rss: int
    system_available: int
    system_total: int
    accelerators: tuple[AcceleratorMemory, ...] = field(default=())


def system_available() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def available_bytes(device: str = "cpu") -> int:
    """Free memory where a model on ``device`` keeps its tensors: the GPU's for CUDA,
    else the system's."""
    if device.startswith("cuda"):
        from . import libs

        torch = libs.torch()
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return system_available()


def snapshot() -> MemorySnapshot:
    """Live probes; cheap enough to call several times a second.

    torch is only consulted when it is already imported, so the probe never pulls it in.
    """

    import psutil

    vm = psutil.virtual_memory()
    rss = psutil.Process(os.getpid()).memory_info().rss
    accelerators: list[AcceleratorMemory] = []
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                for i in range(torch.cuda.device_count()):
                    total = torch.cuda.get_device_properties(i).total_memory
                    accelerators.append(
                        AcceleratorMemory(
                            f"cuda:{i}",
                            torch.cuda.memory_allocated(i),
                            torch.cuda.memory_reserved(i),
                            total,
                        )
                    )
            mps = getattr(torch.backends, "mps", None)
            if mps is not None and mps.is_available():
                accelerators.append(
                    AcceleratorMemory(
                        "mps",
                        torch.mps.current_allocated_memory(),
                        torch.mps.driver_allocated_memory(),
                        None,
                    )
                )
        except Exception:  # a probe must never break the caller
            pass
    return MemorySnapshot(int(rss), int(vm.available), int(vm.total), tuple(accelerators))


def release() -> None:
    """Give memory that is no longer used back to the system: collect garbage, empty
    torch's CUDA cache, and (glibc) trim the C heap. Without the trim, a process that
    swaps models keeps the peak of every load: glibc holds freed blocks for reuse, so
    RSS after an fp32 -> 8-bit -> 4-bit -> fp32 cycle stayed near 1.9x the first fp32
    load (see bench/swaps.py)."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
    _malloc_trim()


def _malloc_trim() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to trim
        pass


def model_footprint(model: Any) -> int:
    """Bytes held by a loaded model's parameters and buffers."""
    getter = getattr(model, "get_memory_footprint", None)
    if callable(getter):
        return int(getter())
    return sum(
        t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers())
    )


def cache_bytes(cache: Any) -> int:
    """Bytes held by a transformers Cache (keys and values of every layer): the memory
    behind them, so a view of a larger buffer (a cropped cache, a batch's cache with
    room to grow) counts what it keeps allocated."""
    if cache is None:
        return 0
    total = 0
    seen: set[int] = set()
    for layer in getattr(cache, "layers", []) or []:
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if tensor is None or not hasattr(tensor, "numel"):
                continue
            try:
                storage = tensor.untyped_storage()
                key, size = storage.data_ptr(), storage.nbytes()
            except Exception:  # not a plain tensor: its own elements
                key, size = id(tensor), tensor.numel() * tensor.element_size()
            if key not in seen:
                seen.add(key)
                total += size
    return total


class PeakSampler:
    """The peak memory while a block runs, as a context manager.

    On CPU (and mps) the process's RSS is sampled in a daemon thread every ``interval``
    seconds, plus once at each end; on a CUDA device torch's own counter is used
    (``max_memory_allocated`` after a reset), which sees every allocation however
    short. ``start_bytes`` is the reading when the block began, ``peak_bytes`` the
    highest one seen."""

    def __init__(self, device: str = "cpu", interval: float = 0.005) -> None:
        self.device = device
        self.interval = interval
        self.start_bytes: int | None = None
        self.peak_bytes: int | None = None
        self._stop = None
        self._thread = None

    def _cuda(self) -> Any:
        torch = sys.modules.get("torch")
        if torch is not None and self.device.startswith("cuda"):
            return torch
        return None

    def _read(self) -> int | None:
        try:
            torch = self._cuda()
            if torch is not None:
                return int(torch.cuda.max_memory_allocated(self.device))
            import psutil

            return int(psutil.Process(os.getpid()).memory_info().rss)
        except Exception:  # a probe must never break the turn it measures
            return None

    def _note(self, value: int | None) -> None:
        if value is not None and (self.peak_bytes is None or value > self.peak_bytes):
            self.peak_bytes = value

    def _run(self) -> None:
        assert self._stop is not None
        while not self._stop.wait(self.interval):
            self._note(self._read())

    def __enter__(self) -> PeakSampler:
        import threading

        torch = self._cuda()
        if torch is not None:
            try:
                torch.cuda.reset_peak_memory_stats(self.device)
                self.start_bytes = int(torch.cuda.memory_allocated(self.device))
            except Exception:
                self.start_bytes = None
            self.peak_bytes = self.start_bytes
            return self
        self.start_bytes = self._read()
        self.peak_bytes = self.start_bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._stop is not None and self._thread is not None:
            self._stop.set()
            self._thread.join()
        self._note(self._read())

    @property
    def growth_bytes(self) -> int | None:
        """How far the peak rose above the start."""
        if self.start_bytes is None or self.peak_bytes is None:
            return None
        return max(0, self.peak_bytes - self.start_bytes)
