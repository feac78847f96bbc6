"""Memory across precision swaps: does swapping the model leak?

One process loads the bundled model (SmolLM2-135M-Instruct) in fp32, then swaps it ten
times through ``LocalEngine.load`` (fp32 -> bf16 -> 8-bit -> 4-bit -> fp32 ...), writing a
short reply after each load as a user would. After each step it prints the process RSS
and the model's own footprint; the baseline is the first fp32 load in the same run. A
leak shows as RSS growing from one visit of a precision to the next, and in the ratio
of the last fp32 load's RSS to the first one's.

Run: ``.venv/bin/python bench/swaps.py [--swaps N] [--tokens N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine import machine

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CYCLE = (("fp32", "none"), ("bf16", "none"), ("auto", "8bit"), ("auto", "4bit"))
MiB = 1024**2


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=10, help="swaps after the first load")
    parser.add_argument("--tokens", type=int, default=16, help="reply length after each load")
    args = parser.parse_args()

    from tui.engine import ChatRequest, GenerationSettings, LocalEngine, ModelSpec, libs

    libs.transformers()
    libs.bitsandbytes()  # imported before the baseline, so imports are not counted as growth
    engine = LocalEngine()
    settings = GenerationSettings()
    settings.update(
        ["do_sample=false", f"max_new_tokens={args.tokens}", f"min_new_tokens={args.tokens}"]
    )
    messages = [{"role": "user", "content": "Write a long story about a cat."}]

    print(f"machine: {machine()}")
    print(f"model: bundled SmolLM2-135M-Instruct, device cpu, reply {args.tokens} tokens")
    print(f"RSS after imports, before any load: {rss() / MiB:.0f} MiB")
    print()
    header = (
        f"{'step':>4} {'precision':>9} {'load s':>6} {'tok/s':>6} {'model MiB':>9} "
        f"{'RSS MiB':>8} {'vs first fp32':>13}"
    )
    print(header)
    print("-" * len(header))
    first_fp32: int | None = None
    last_fp32: int | None = None
    by_precision: dict[str, list[int]] = {}
    for step in range(args.swaps + 1):
        dtype, quantization = CYCLE[step % len(CYCLE)]
        spec = ModelSpec(dtype=dtype, quantization=quantization, device="cpu")
        started = time.perf_counter()
        loaded = engine.load(spec)
        seconds = time.perf_counter() - started
        result = engine.chat(ChatRequest(messages, conversation_id="bench", settings=settings))
        assert result.stats.error is None, result.stats.error
        footprint = loaded.footprint_bytes
        del loaded
        now = rss()
        label = spec.precision_label
        by_precision.setdefault(label, []).append(now)
        if label == "fp32":
            first_fp32 = first_fp32 or now
            last_fp32 = now
        ratio = f"{now / first_fp32:.2f}x" if first_fp32 else "-"
        tps = result.stats.tokens_per_second or 0.0
        print(
            f"{step:>4} {label:>9} {seconds:>6.1f} {tps:>6.1f} {footprint / MiB:>9.0f} "
            f"{now / MiB:>8.0f} {ratio:>13}",
            flush=True,
        )
    final = rss()
    print()
    for label, values in by_precision.items():
        shown = " -> ".join(f"{v / MiB:.0f}" for v in values)
        print(f"{label:>9}: RSS at each visit {shown} MiB")
    assert first_fp32 and last_fp32
    print(
        f"ratio last/first fp32 load: {last_fp32 / first_fp32:.3f} "
        f"({last_fp32 / MiB:.0f} / {first_fp32 / MiB:.0f} MiB); "
        f"last step / first fp32: {final / first_fp32:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
