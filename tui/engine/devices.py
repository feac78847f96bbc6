"""The devices that exist here, and the precisions that are slow on each.

:func:`devices` lists only what torch can use on this machine (``cpu``, each
``cuda:N``, ``mps``); :func:`precisions` says, for one device, which precisions are
slow or unavailable there and why. Both probe once per process and cache the answer;
the first call imports torch (through :mod:`.libs`) and, for the CPU, times a tiny
matrix product, so call them off the UI thread. :func:`peek` answers from the cache
without probing (``None`` until a probe has run), for the UI thread.

Why bf16 can be slow on a CPU: generation does two kinds of work. Reading the prompt
multiplies a block of tokens by every weight matrix (a matrix product, bound by
arithmetic); writing the reply pushes one token at a time through them (a
matrix-vector product, bound by memory). A CPU without bf16/fp16 arithmetic (x86
without ``avx512_bf16``/``amx_bf16`` or ``avx512_fp16``/``amx_fp16``, such as AVX2-only
chips) has no fast matrix-product kernel for them, so reading a prompt is several times
slower than in fp32, while writing tokens may even be faster (half the bytes to read).
The CPU probe times both products (a 128-token block through a 512-wide linear layer,
one token through a 2048-wide one) in each precision against fp32, so a CPU that does
have fast kernels is not marked, and the label says which part is slow.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import libs

SLOW_RATIO = 2.0
"""A precision is slow when a probe takes this many times as long as in fp32 (an
AVX2-only CPU measures about 4.5 for bf16 and fp16 prompts; a CPU with native kernels
about 1 or less)."""

FLOATS = ("fp32", "bf16", "fp16")
QUANTIZED = ("8bit", "4bit")


@dataclass(frozen=True)
class Device:
    name: str
    """``cpu``, ``cuda:0`` ... or ``mps``: what ``--device`` and ModelSpec accept."""
    description: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.description})" if self.description else self.name


@dataclass(frozen=True)
class Precision:
    name: str
    """``fp32``, ``bf16``, ``fp16`` (ModelSpec.dtype) or ``8bit``, ``4bit``
    (ModelSpec.quantization)."""
    device: str
    slow: bool = False
    available: bool = True
    reason: str = ""
    """Why it is slow or unavailable, one sentence; empty when it is neither."""
    prompt_ratio: float | None = None
    """Probe time reading a prompt, against fp32 (CPU floats only)."""
    decode_ratio: float | None = None
    """Probe time writing one token, against fp32 (CPU floats only)."""

    @property
    def slow_prompts_only(self) -> bool:
        """Slow to read prompts but not to write tokens (bf16 on an AVX2 CPU)."""
        return (
            self.slow
            and self.decode_ratio is not None
            and self.decode_ratio < SLOW_RATIO
            and (self.prompt_ratio or 0) >= SLOW_RATIO
        )

    @property
    def label(self) -> str:
        """``bf16 — slow on this CPU``, ``bf16 — slow on long prompts on this CPU``,
        ``bf16 — not available on mps``, or just the name."""
        where = "this CPU" if self.device == "cpu" else self.device
        if not self.available:
            return f"{self.name} — not available on {where}"
        if self.slow_prompts_only:
            return f"{self.name} — slow on long prompts on {where}"
        if self.slow:
            return f"{self.name} — slow on {where}"
        return self.name


_lock = threading.Lock()
_devices: tuple[Device, ...] | None = None
_precisions: dict[str, tuple[Precision, ...]] = {}


def devices() -> tuple[Device, ...]:
    """Every device torch can use here, ``cpu`` first. Probed once, then cached."""
    global _devices
    with _lock:
        if _devices is None:
            _devices = _probe_devices()
        return _devices


def device_names() -> tuple[str, ...]:
    return tuple(d.name for d in devices())


def precisions(device: str = "cpu") -> tuple[Precision, ...]:
    """fp32, bf16, fp16, 8bit, 4bit on ``device``, each marked slow or unavailable with
    the reason. Probed once per device, then cached."""
    with _lock:
        if device not in _precisions:
            _precisions[device] = _probe_precisions(device)
        return _precisions[device]


def precision(name: str, device: str = "cpu") -> Precision:
    for item in precisions(device):
        if item.name == name:
            return item
    raise KeyError(name)


def peek() -> tuple[tuple[Device, ...] | None, dict[str, tuple[Precision, ...]]]:
    """What has been probed so far, without probing (safe on the UI thread)."""
    return _devices, dict(_precisions)


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip()
            if key in ("flags", "Features"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _probe_devices() -> tuple[Device, ...]:
    torch = libs.torch()
    found = [Device("cpu", f"{cpu_name()}, {os.cpu_count()} cores")]
    try:
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(index)
                gib = props.total_memory / 1024**3
                found.append(Device(f"cuda:{index}", f"{props.name}, {gib:.0f} GiB"))
    except Exception:  # a broken driver: no CUDA devices, rather than no list
        pass
    try:
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            found.append(Device("mps", "Apple Metal"))
    except Exception:
        pass
    return tuple(found)


def _probe_precisions(device: str) -> tuple[Precision, ...]:
    if device == "cpu":
        return _cpu_precisions()
    if device.startswith("cuda"):
        return _cuda_precisions(device)
    if device == "mps":
        return _mps_precisions()
    return tuple(Precision(name, device) for name in FLOATS + QUANTIZED)


# -- CPU ---------------------------------------------------------------------------
_NATIVE = {
    "bf16": ("avx512_bf16", "amx_bf16", "bf16"),  # x86 flags; "bf16" on Arm (Features)
    "fp16": ("avx512_fp16", "amx_fp16", "fphp", "asimdhp"),
}


# Two shapes, as generation uses them: reading the prompt multiplies a block of tokens
# by each weight matrix (a matrix product), writing the reply one token at a time (a
# matrix-vector product). CPU kernels for the two differ: on an AVX2-only CPU torch's bf16
# matrix-vector product keeps up with fp32 while its matrix product is ~4.5x slower.
PROBES = {"prompt": (128, 512), "decode": (1, 2048)}


def _probe_seconds(torch: Any, dtype: Any, rows: int, size: int, repeats: int = 2) -> float:
    """Best time of ``rows`` tokens through a ``size`` x ``size`` linear layer."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, size, generator=generator).to(dtype)
    w = torch.randn(size, size, generator=generator).to(dtype)
    linear = torch.nn.functional.linear
    with torch.inference_mode():
        linear(x, w)  # warm-up: kernel selection, caches
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(repeats):
                linear(x, w)
            best = min(best, (time.perf_counter() - started) / repeats)
    return best


def cpu_probe() -> dict[str, dict[str, float]]:
    """Seconds per probe, ``{"prompt": {"fp32": s, "bf16": s, "fp16": s}, "decode": ...}``
    (well under a second in all, even where bf16 is slow)."""
    torch = libs.torch()
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    return {
        probe: {name: _probe_seconds(torch, dtype, rows, size) for name, dtype in dtypes.items()}
        for probe, (rows, size) in PROBES.items()
    }


def _cpu_precisions() -> tuple[Precision, ...]:
    flags = cpu_flags()
    try:
        timings = cpu_probe()
    except Exception:  # a probe must never break the caller: fall back to the flags
        timings = {}
    result = [Precision("fp32", "cpu")]
    for name in ("bf16", "fp16"):
        lacks = "/".join(_NATIVE[name][:2])
        if timings:
            prompt = timings["prompt"][name] / timings["prompt"]["fp32"]
            decode = timings["decode"][name] / timings["decode"]["fp32"]
            slow = max(prompt, decode) >= SLOW_RATIO
            if not slow:
                reason = ""
            elif decode < SLOW_RATIO:
                reason = (
                    f"{name} reads prompts about {prompt:.0f}x slower than fp32 on this CPU "
                    f"(no {lacks}), though it writes tokens {_speed(decode)}: fine for short "
                    "turns, slow on long pasted text or a reopened long conversation."
                )
            else:
                reason = (
                    f"{name} is slow on this CPU (no {lacks}): it writes tokens about "
                    f"{decode:.0f}x slower than fp32 and reads prompts {_speed(prompt)}."
                )
            result.append(
                Precision(
                    name, "cpu", slow=slow, reason=reason, prompt_ratio=prompt, decode_ratio=decode
                )
            )
        else:
            slow = bool(flags) and not set(_NATIVE[name]) & flags
            reason = f"{name} is slow on this CPU (no {lacks})." if slow else ""
            result.append(Precision(name, "cpu", slow=slow, reason=reason))
    for name in QUANTIZED:
        result.append(Precision(name, "cpu"))
    return tuple(result)


def _speed(ratio: float) -> str:
    """A time ratio against fp32, as words."""
    if ratio >= 1.5:
        return f"about {ratio:.0f}x slower"
    if ratio <= 1 / 1.2:
        return f"about {1 / ratio:.1f}x as fast"
    return "at about the same speed"


# -- accelerators --------------------------------------------------------------------
def _cuda_precisions(device: str) -> tuple[Precision, ...]:
    torch = libs.torch()
    index = int(device.split(":")[1]) if ":" in device else 0
    major, minor = torch.cuda.get_device_capability(index)
    result = [Precision("fp32", device), Precision("fp16", device)]
    if (major, minor) < (8, 0):
        result.insert(
            1,
            Precision(
                "bf16",
                device,
                slow=True,
                reason=(
                    f"bf16 is slow on {device} (compute capability {major}.{minor}: bf16 is "
                    "emulated before 8.0, Ampere); use fp16."
                ),
            ),
        )
    else:
        result.insert(1, Precision("bf16", device))
    result.extend(Precision(name, device) for name in QUANTIZED)
    return tuple(result)


def _mps_precisions() -> tuple[Precision, ...]:
    torch = libs.torch()
    result = [Precision("fp32", "mps"), Precision("fp16", "mps")]
    try:
        torch.ones(1, dtype=torch.bfloat16, device="mps")
        result.insert(1, Precision("bf16", "mps"))
    except Exception:
        result.insert(
            1,
            Precision(
                "bf16",
                "mps",
                available=False,
                reason="bf16 is not available on mps here (it needs macOS 14 or later).",
            ),
        )
    for name in QUANTIZED:
        result.append(
            Precision(
                name,
                "mps",
                available=False,
                reason=f"bitsandbytes {name[0]}-bit quantization does not run on mps.",
            )
        )
    return tuple(result)


def _reset_for_tests() -> None:
    global _devices
    with _lock:
        _devices = None
        _precisions.clear()
