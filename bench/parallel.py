"""Several conversations streaming at once, on the bundled default model (CPU, fp32).

1. Aggregate throughput: the next turn of 1, 2 and 4 conversations (histories of ~50
   and ~1,000 tokens, each with its KV cache from the turn before, as in the app)
   streaming at once through ``LocalEngine.chat`` (one thread each, as the app's tabs
   do; their decode steps run as one batch, :mod:`tui.engine.batch`), against the
   same turns answered one at a time by ``model.generate``
   (:func:`tui.engine.generation.generate` with the same cache reuse: the path a reply
   took before batching). Greedy, exactly 64 new tokens each; the time counts
   everything from the first request to the last token, the new messages' prefill
   included.
2. Time to first token of a second tab's next turn (its KV cache from the turn
   before, as in the app) while a first tab streams, against the same turn with
   nothing else generating.
3. Greedy agreement: every batched reply above against the same reply made alone,
   token for token; a divergence is shown with its step and the two logits (a near
   tie that the batched, padded matrix products summed in another order).

With ``--library`` it also runs transformers' own continuous batching
(``model.generate_batch``, paged cache) on the four short conversations, the
measurement that decided against it on this CPU (see the README).

``--quantization 4bit`` (or ``8bit``) loads the model through bitsandbytes instead,
to see whether such a model gains from batching here.

Everything that runs torch runs in a thread that ends with it, as in the app: a live
thread that once ran torch keeps an OpenMP team that slows every other thread's
products (:mod:`tui.engine.threads`). The machine is shared: the load average is
printed before and after; rerun when it was high. Run: ``.venv/bin/python bench/parallel.py [--library] [--quantization Q]``. The last line is
``summary aggregate2=X aggregate4=Y second_ttft_ratio=Z agree=A/N``: the speed-ups of
2 and 4 tabs over one at a time (the lower of the two histories), the second tab's
TTFT ratio (the higher of the two), and the replies that matched.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
NEW_TOKENS = 64
HISTORIES = (50, 1000)
COUNTS = (1, 2, 4)
TOPICS = ("river valley", "lighthouse", "mountain railway", "old library")
FILLER = (
    "The history of the {topic} is long and varied, with people, work and small events "
    "that shaped it over many years, told and retold by those who lived nearby. "
)


def job(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a thread that ends with it, as the app runs its workers (see
    :mod:`tui.engine.threads`): the main thread never keeps a torch thread team that would
    slow the batch's thread."""
    from tui.engine.threads import ThreadPerJob

    pool = ThreadPerJob("bench")
    try:
        return pool.submit(fn, *args).result()
    finally:
        pool.shutdown()


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} cores)"


def history(engine: Any, target: int, topic: str) -> list[dict[str, str]]:
    """A conversation about ``topic`` of about ``target`` tokens, ending in a question."""
    question = {"role": "user", "content": f"Write a long story about the {topic}."}
    messages: list[dict[str, str]] = []
    turn = 0
    while target > 60:
        candidate = messages + [
            {"role": "user", "content": f"Tell me about part {turn} of the {topic}."},
            {"role": "assistant", "content": FILLER.format(topic=topic) * (1 + turn % 3)},
        ]
        if engine.count_tokens([*candidate, question]) > target:
            break
        messages, turn = candidate, turn + 1
    if not messages:
        messages = [
            {"role": "user", "content": f"Hello there, do you know the {topic}?"},
            {"role": "assistant", "content": f"Yes, I know the {topic} well."},
        ]
    return [*messages, question]


class Stream(threading.Thread):
    """One tab: ``engine.chat`` in its own thread."""

    def __init__(self, engine: Any, request: Any, stop: threading.Event | None = None) -> None:
        super().__init__(daemon=True)
        self.engine, self.request = engine, request
        self.stop = stop or threading.Event()
        self.streaming = threading.Event()
        self.result: Any = None

    def run(self) -> None:
        self.result = self.engine.chat(
            self.request, stop_event=self.stop, on_text=lambda _text: self.streaming.set()
        )


def conversations(engine: Any, target: int, short: Any, greedy: Any) -> tuple[list, dict]:
    """Four conversations of ~``target`` tokens whose first turn is answered (their KV
    caches hold it): the requests for their next turn, and a copy of each cache."""
    from tui.engine import ChatRequest

    requests, saved = [], {}
    for index, topic in enumerate(TOPICS):
        key = f"bench-{target}-{index}"
        base = history(engine, target, topic)
        first = engine.chat(ChatRequest(base, conversation_id=key, settings=short))
        turn = [
            *base,
            {"role": "assistant", "content": first.text},
            {"role": "user", "content": "Go on, in more detail."},
        ]
        requests.append(ChatRequest(turn, conversation_id=key, settings=greedy))
        saved[key] = engine.kv_cache.copy(key)
    return requests, saved


def restore(engine: Any, saved: dict) -> None:
    """Each conversation's cache as it was after its first turn."""
    import copy

    from tui.engine.generation import CacheEntry

    for key, entry in saved.items():
        engine.kv_cache.put(key, CacheEntry(copy.deepcopy(entry.cache), list(entry.token_ids)))


def at_once(engine: Any, requests: list[Any]) -> tuple[float, list[Any]]:
    """Every request in its own thread, all sent together: seconds, results."""
    threads = [Stream(engine, r) for r in requests]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, [t.result for t in threads]


def one_at_a_time(engine: Any, requests: list[Any]) -> tuple[float, list[Any]]:
    """The requests answered one after another by ``model.generate``, each in a thread
    of its own that ends with it, as a tab's worker runs it."""
    from tui.engine import generation

    results: list[Any] = []

    def answer(request: Any) -> None:
        ids = engine.build_prompt(list(request.messages)).ids
        kwargs = dict(engine.effective_settings(request.settings).kwargs)
        key = request.conversation_id
        store = engine.kv_cache if key is not None else None
        results.append(
            generation.generate(engine.loaded, ids, kwargs, cache_store=store, cache_key=key)
        )

    start = time.perf_counter()
    for request in requests:
        worker = threading.Thread(target=answer, args=(request,))
        worker.start()
        worker.join()
    return time.perf_counter() - start, results


def divergence(engine: Any, request: Any, alone: list[int], batched: list[int]) -> str:
    """Where a batched greedy reply left the reply made alone, and the two logits there."""
    import torch

    step = next(
        (i for i, (a, b) in enumerate(zip(alone, batched, strict=False)) if a != b),
        min(len(alone), len(batched)),
    )
    if step >= min(len(alone), len(batched)):
        return f"same tokens, lengths {len(alone)} and {len(batched)}"
    ids = engine.build_prompt(list(request.messages)).ids + alone[:step]
    with torch.inference_mode():
        logits = engine.loaded.model(torch.tensor([ids])).logits[0, -1].float()
    a, b = logits[alone[step]].item(), logits[batched[step]].item()
    return (
        f"token {step}: alone {alone[step]} (logit {a:.4f}), batched {batched[step]} "
        f"(logit {b:.4f}), margin {abs(a - b):.4f}: a near tie that the batched, "
        "padded products summed in another order"
    )


def measure_ttft(engine: Any, target: int, settings: Any, long: Any) -> tuple[float, float]:
    """The second tab's next-turn TTFT, idle and while a first tab streams (medians)."""
    from tui.engine import ChatRequest

    base = history(engine, target, TOPICS[1])
    follow = {"role": "user", "content": "Summarise that in one sentence."}
    idle, busy = [], []
    streamer_request = ChatRequest(history(engine, target, TOPICS[0]), settings=long)
    for repeat in range(REPEATS):
        for busy_now in (False, True) if repeat % 2 == 0 else (True, False):
            key = f"ttft-{target}-{repeat}-{busy_now}"
            first = engine.chat(ChatRequest(base, conversation_id=key, settings=settings))
            turn = [*base, {"role": "assistant", "content": first.text}, follow]
            first_tab = None
            if busy_now:
                first_tab = Stream(engine, streamer_request)
                first_tab.start()
                first_tab.streaming.wait()  # its first token: it decodes in the batch now
            result = engine.chat(ChatRequest(turn, conversation_id=key, settings=settings))
            assert result.stats.reused_tokens > 0, "the second tab's cache was not reused"
            (busy if busy_now else idle).append(result.stats.time_to_first_token)
            if first_tab is not None:
                first_tab.stop.set()
                first_tab.join()
            engine.forget(key)
    return statistics.median(idle), statistics.median(busy)


def library(engine: Any, requests: list[Any]) -> tuple[float, float]:
    """transformers' continuous batching on ``requests``: aggregate tok/s, and ms per
    step with one request."""
    import logging

    import torch
    from transformers import GenerationConfig

    logging.getLogger("transformers").setLevel(logging.ERROR)
    model = engine.loaded.model
    config = GenerationConfig(
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        do_sample=False,
        eos_token_id=engine.loaded.tokenizer.eos_token_id,
        pad_token_id=engine.loaded.tokenizer.pad_token_id,
    )
    prompts = [engine.build_prompt(list(r.messages)).ids for r in requests]
    with torch.inference_mode():
        model.generate_batch(prompts[:1], generation_config=config)  # warm-up
        start = time.perf_counter()
        outputs = model.generate_batch(prompts, generation_config=config)
        elapsed = time.perf_counter() - start
        single = time.perf_counter()
        model.generate_batch(prompts[:1], generation_config=config)
        single = time.perf_counter() - single
    made = sum(len(o.generated_tokens) for o in outputs.values())
    return made / elapsed, single / NEW_TOKENS * 1000


def main() -> None:
    from tui.engine import ChatRequest, GenerationSettings, LocalEngine, ModelSpec

    load_before = load()
    engine = LocalEngine()
    quantization = "none"
    if "--quantization" in sys.argv:
        quantization = sys.argv[sys.argv.index("--quantization") + 1]
    loaded = job(engine.load, ModelSpec(quantization=quantization))
    greedy = GenerationSettings()
    greedy.update([f"max_new_tokens={NEW_TOKENS}", f"min_new_tokens={NEW_TOKENS}"])
    greedy.update(["do_sample=false"])
    short = GenerationSettings()
    short.update(["max_new_tokens=8", "do_sample=false"])
    long = GenerationSettings()
    long.update(["max_new_tokens=2000", "min_new_tokens=2000", "do_sample=false"])

    from bench.engine import machine

    print(f"machine: {machine()}")
    print(f"load before: {load_before}")
    precision = loaded.spec.precision_label if quantization != "none" else loaded.dtype
    print(f"model: {loaded.name}, {precision} on {loaded.device}; "
          f"{NEW_TOKENS} greedy tokens a reply, median of {REPEATS} runs")  # fmt: skip
    one_at_a_time(engine, [ChatRequest(history(engine, 50, TOPICS[0]), settings=short)])
    at_once(engine, [ChatRequest(history(engine, 50, TOPICS[0]), settings=short)] * 2)

    speedups: dict[tuple[int, int], float] = {}
    agree, compared, notes = 0, 0, []
    rows = []
    for target in HISTORIES:
        requests, saved = job(conversations, engine, target, short, greedy)
        tokens = engine.count_tokens(list(requests[0].messages))
        for count in COUNTS:
            chosen = requests[:count]
            alone_tps, batch_tps = [], []
            alone_results: list[Any] = []
            batch_results: list[Any] = []
            for repeat in range(REPEATS):
                order = (one_at_a_time, at_once) if repeat % 2 == 0 else (at_once, one_at_a_time)
                for way in order:
                    job(restore, engine, saved)
                    seconds, results = way(engine, chosen)
                    made = sum(r.stats.new_tokens for r in results)
                    assert made == NEW_TOKENS * count, made
                    assert all(r.stats.reused_tokens > 0 for r in results), "no cache reuse"
                    if way is at_once:
                        batch_tps.append(made / seconds)
                        batch_results = batch_results or results
                    else:
                        alone_tps.append(made / seconds)
                        alone_results = alone_results or results
            alone, batch = statistics.median(alone_tps), statistics.median(batch_tps)
            speedups[(target, count)] = batch / alone
            rows.append((f"{count} at once, ~{tokens}-token conversations", batch, alone))
            for request, one, other in zip(chosen, alone_results, batch_results, strict=True):
                compared += 1
                if one.token_ids == other.token_ids:
                    agree += 1
                else:
                    why = job(divergence, engine, request, one.token_ids, other.token_ids)
                    notes.append(f"{count} at once, ~{tokens} tokens: {why}")

        for key in saved:
            engine.forget(key)

    ttft = {t: measure_ttft(engine, t, short, long) for t in HISTORIES}

    lib = None
    if "--library" in sys.argv:
        lib = job(
            library, engine, [ChatRequest(history(engine, 50, t), settings=greedy) for t in TOPICS]
        )

    print()
    print(f"{'aggregate tok/s':<40}{'at once':>10}{'one by one':>12}{'speed-up':>10}")
    print("-" * 72)
    for label, batch, alone in rows:
        print(f"{label:<40}{batch:>10.1f}{alone:>12.1f}{batch / alone:>9.2f}x")
    print()
    print(f"{'second tab TTFT, ms':<40}{'1st streams':>12}{'idle':>10}{'ratio':>10}")
    print("-" * 72)
    for target, (idle, busy) in ttft.items():
        label = f"next turn, ~{target}-token history"
        print(f"{label:<40}{busy * 1000:>12.0f}{idle * 1000:>10.0f}{busy / idle:>9.2f}x")
    if lib is not None:
        tps, step_ms = lib
        print()
        print(f"transformers generate_batch, 4 short conversations: {tps:.1f} tok/s aggregate; "
              f"{step_ms:.0f} ms a token with one")  # fmt: skip
    print()
    print(f"greedy agreement: {agree}/{compared} replies identical to the reply made alone")
    for note in notes:
        print(f"  divergence: {note}")
    print(f"load after: {load()}")
    print()
    aggregate2 = min(speedups[(t, 2)] for t in HISTORIES)
    aggregate4 = min(speedups[(t, 4)] for t in HISTORIES)
    ratio = max(busy / idle for idle, busy in ttft.values())
    print(
        f"summary aggregate2={aggregate2:.2f} aggregate4={aggregate4:.2f} "
        f"second_ttft_ratio={ratio:.2f} agree={agree}/{compared}"
    )


if __name__ == "__main__":
    main()
