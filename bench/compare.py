"""What precision costs: the bundled model (SmolLM2-135M-Instruct) in fp32, bf16,
8-bit and 4-bit (nf4) on five prompts, through chat-tui's own comparison
(``tui.engine.compare.compare_turn``, the code behind ``--compare`` and ``/compare``).

For each precision: weights in memory, peak memory during a turn (weights plus what
the turn added), time to first token and tokens/s (medians over the prompts), and how
far its greedy replies agree with fp32's, the baseline measured in the same run: the
first token where they diverge, token-level similarity, and the mean log-probability
gap of its tokens under the fp32 model.

Run: ``.venv/bin/python bench/compare.py`` (``BENCH_NEW_TOKENS`` to change the reply
length, 64 by default). Prints the machine, a table, and one line per prompt.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.engine import machine

NEW_TOKENS = int(os.environ.get("BENCH_NEW_TOKENS", "64"))
SPECS = ["@bf16", "@8bit", "@4bit"]
PROMPTS = [
    "What is the capital of France, and why is it famous?",
    "List five tips for staying focused while studying.",
    "Write a Python function that reverses a string.",
    "Tell me a short story about a lighthouse keeper and a storm.",
    "Explain in simple words why the sky is blue.",
]


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def main() -> None:
    from tui.engine import GenerationSettings, LocalEngine, ModelSpec
    from tui.engine.compare import compare_turn
    from tui.engine.memory import human_bytes

    engine = LocalEngine()
    started = time.perf_counter()
    loaded = engine.load(ModelSpec(dtype="fp32"))
    settings = GenerationSettings()
    settings.update([f"max_new_tokens={NEW_TOKENS}"])

    rows: dict[str, list] = {}
    per_prompt: list[list[str]] = []
    for prompt in PROMPTS:
        comparison = compare_turn(
            engine,
            [{"role": "user", "content": prompt}],
            SPECS,
            settings=settings,
            placement="together",
        )
        cells = []
        for reply in comparison.replies:
            if reply.error:
                raise SystemExit(f"{reply.label}: {reply.error}")
            rows.setdefault(reply.label, []).append(reply)
            if not reply.is_reference:
                cells.append(
                    f"{reply.label} "
                    + ("same" if reply.first_divergence is None else f"@{reply.first_divergence}")
                )
        ref = comparison.replies[0]
        per_prompt.append([f"{prompt[:44]:<44}", f"{ref.stats.new_tokens:>3} tok", *cells])
    elapsed = time.perf_counter() - started

    print(f"machine: {machine()}")
    print(
        f"model: {loaded.name} on {loaded.device}; {len(PROMPTS)} prompts, greedy, "
        f"max_new_tokens={NEW_TOKENS} (repetition_penalty=1.1 from the model's config); "
        f"baseline: fp32 in the same run; {elapsed:.0f} s in all"
    )
    print()
    header = (
        f"{'precision':<18}{'weights':>11}{'peak':>11}{'TTFT':>9}{'tok/s':>8}"
        f"{'identical':>11}{'diverges at':>13}{'similarity':>12}{'logprob gap':>13}"
    )
    print(header)
    print("-" * len(header))
    for label, replies in rows.items():
        ttft = median([r.stats.time_to_first_token for r in replies])
        tps = median([r.stats.tokens_per_second for r in replies])
        same = sum(1 for r in replies if r.first_divergence is None)
        divergence = median([r.first_divergence for r in replies if r.first_divergence is not None])
        name = label + (" (baseline)" if replies[0].is_reference else "")
        print(
            f"{name:<18}{human_bytes(replies[0].weights_bytes):>11}"
            f"{human_bytes(median([r.peak_bytes for r in replies])):>11}"
            f"{(ttft or 0) * 1000:>6.0f} ms{tps or 0:>8.1f}"
            f"{f'{same}/{len(replies)}':>11}"
            f"{'-' if divergence is None else f'{divergence:.0f}':>13}"
            f"{mean([r.similarity for r in replies]):>12.2f}"
            f"{mean([r.logprob_gap for r in replies]):>+13.3f}"
        )
    print()
    print("identical: replies equal to fp32's; diverges at: median first differing token of")
    print("the others; logprob gap: mean log-prob per token of fp32's reply minus this one's,")
    print("both under the fp32 model (0 = as likely as fp32's own choice; higher = less).")
    print()
    print("per prompt (first divergent token; 'same' = identical to fp32):")
    for row in per_prompt:
        print("  " + "  ".join(row))


if __name__ == "__main__":
    main()
