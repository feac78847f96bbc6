"""Engine benchmark on the bundled default model (SmolLM2-135M-Instruct, CPU, fp32).

1. Throughput: chat-tui's streamed generation (LocalEngine.chat with a text callback, stop
   criterion and incremental decoding) against plain ``model.generate`` on the same
   prompt, greedy, exactly 128 new tokens.
2. Time to first token for the next turn of a conversation whose history holds about
   50, 500 and 2,000 tokens, with the per-conversation KV cache reused and without.

Run: ``.venv/bin/python bench/engine.py``. Prints a table and, last, a summary line.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
NEW_TOKENS = 128
FILLER = (
    "The history of the river valley is long and varied, with farms, mills and small towns "
    "that grew along its banks over many centuries. "
)


def machine() -> str:
    import torch

    from tui.engine.devices import cpu_name

    cpu = cpu_name()
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def history(engine, target_tokens: int) -> list[dict[str, str]]:
    """User/assistant turns of filler text, grown until the prompt holds ~target tokens."""
    messages: list[dict[str, str]] = []
    turn = 0
    while True:
        words = FILLER * (1 + turn % 3)
        candidate = messages + [
            {"role": "user", "content": f"Tell me about part {turn} of the valley."},
            {"role": "assistant", "content": words},
        ]
        if engine.count_tokens(candidate) > target_tokens and messages:
            return messages
        messages = candidate
        turn += 1
        if target_tokens <= 60:
            return [
                {"role": "user", "content": "Hello there, who are you?"},
                {"role": "assistant", "content": "I am a helpful assistant."},
            ]


def main() -> None:
    import torch

    from tui.engine import ChatRequest, GenerationSettings, LocalEngine, ModelSpec

    engine = LocalEngine()
    loaded = engine.load(ModelSpec())
    model, tokenizer = loaded.model, loaded.tokenizer
    greedy = GenerationSettings()
    greedy.update(
        [f"max_new_tokens={NEW_TOKENS}", f"min_new_tokens={NEW_TOKENS}", "do_sample=false"]
    )
    messages = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
    prompt_ids = engine.build_prompt(messages).ids
    input_ids = torch.tensor([prompt_ids])

    def plain() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
        elapsed = time.perf_counter() - start
        assert out.shape[1] - input_ids.shape[1] == NEW_TOKENS
        return NEW_TOKENS / elapsed

    chunks: list[str] = []

    def streamed() -> float:
        chunks.clear()
        start = time.perf_counter()
        result = engine.chat(ChatRequest(messages, settings=greedy), on_text=chunks.append)
        elapsed = time.perf_counter() - start
        assert result.stats.new_tokens == NEW_TOKENS and "".join(chunks) == result.text
        return NEW_TOKENS / elapsed

    plain(), streamed()  # warm-up
    plain_runs, streamed_runs = [], []
    for _ in range(REPEATS):  # interleaved, so drift hits both alike
        plain_runs.append(plain())
        streamed_runs.append(streamed())
    plain_tps, streamed_tps = statistics.median(plain_runs), statistics.median(streamed_runs)

    short = GenerationSettings()
    short.update(["max_new_tokens=16", "do_sample=false"])
    question = {"role": "user", "content": "Summarise that in one sentence."}
    ttft: dict[tuple[int, bool], float] = {}
    sizes: dict[int, int] = {}
    for target in (50, 500, 2000):
        base = history(engine, target)
        for reuse in (True, False):
            runs = []
            for repeat in range(REPEATS):
                key = f"bench-{target}-{reuse}-{repeat}"
                engine.reuse_cache = reuse
                # the turn before: its reply is what the KV cache holds afterwards
                first = engine.chat(
                    ChatRequest(
                        base + [{"role": "user", "content": "Go on."}],
                        conversation_id=key,
                        settings=short,
                    )
                )
                convo = base + [
                    {"role": "user", "content": "Go on."},
                    {"role": "assistant", "content": first.text},
                    question,
                ]
                result = engine.chat(ChatRequest(convo, conversation_id=key, settings=short))
                runs.append(result.stats.time_to_first_token)
                sizes[target] = result.stats.prompt_tokens
                if reuse:
                    assert result.stats.reused_tokens > 0, "cache was not reused"
                engine.forget(key)
            ttft[(target, reuse)] = statistics.median(runs)
    engine.reuse_cache = True

    print(f"machine: {machine()}")
    print(f"model: {loaded.name}, {loaded.dtype} on {loaded.device}; median of {REPEATS} runs")
    print()
    print(f"{'measure':<44}{'chat-tui':>12}{'baseline':>12}{'ratio':>8}")
    print("-" * 76)
    print(
        f"{'greedy 128 tokens, tokens/s (vs model.generate)':<44}"
        f"{streamed_tps:>12.1f}{plain_tps:>12.1f}{streamed_tps / plain_tps:>8.2f}"
    )
    for target in (50, 500, 2000):
        with_reuse, without = ttft[(target, True)], ttft[(target, False)]
        label = f"TTFT, {sizes[target]}-token prompt, ms (vs no reuse)"
        print(
            f"{label:<44}{with_reuse * 1000:>12.1f}{without * 1000:>12.1f}"
            f"{with_reuse / without:>8.2f}"
        )
    print()
    ratio = streamed_tps / plain_tps
    growth = ttft[(2000, True)] / ttft[(50, True)]
    growth_plain = ttft[(2000, False)] / ttft[(50, False)]
    print(
        f"streamed/plain={ratio:.2f} ttft2000/ttft50={growth:.2f} "
        f"ttft2000/ttft50_noreuse={growth_plain:.2f}"
    )


if __name__ == "__main__":
    main()
