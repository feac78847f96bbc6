"""Several conversations generating at once (tui/engine/batch.py, scheduler.py, gate.py),
on a tiny real model.

A reply made in a batch must be the reply made alone: greedy replies token for token,
sampled ones too (each row draws from its own seeded generator). The tiny llama's
large random weights give peaked logits, so summation order cannot flip a token here
(on the bundled model, bench/parallel.py counts how often it does).

Joins are placed at a chosen step without timing guesses: a forward hook holds the
batch's thread once the first reply has made N tokens, until the next reply is waiting
to join.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import wait_until
from tui.engine import ChatRequest, LocalEngine, ModelSpec
from tui.engine.generation import GenerationResult

HELLO = [{"role": "user", "content": "Hello there, who are you?"}]
LONG = [
    {"role": "user", "content": "Tell me about the river valley and its mills."},
    {"role": "assistant", "content": "The valley has farms, mills and small towns. " * 12},
    {"role": "user", "content": "And the towns?"},
]
OTHER = [{"role": "user", "content": "Write a poem about a lighthouse keeper at night."}]
LIMIT = 30.0  # seconds a test waits for a condition at most


@pytest.fixture(scope="module")
def engine(tiny_llama_dir) -> LocalEngine:
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(tiny_llama_dir), dtype="fp32"))
    return engine


class Chat(threading.Thread):
    """``engine.chat(request)`` in a thread, keeping what it streamed and was told."""

    def __init__(
        self, engine: LocalEngine, request: ChatRequest, on_text: Callable | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.engine, self.request = engine, request
        self.stop = threading.Event()
        self.chunks: list[str] = []
        self.on_text = on_text or self.chunks.append
        self.waits: list[str] = []
        self.result: GenerationResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.engine.chat(
                self.request,
                stop_event=self.stop,
                on_text=self.on_text,
                on_wait=self.waits.append,
            )
        except BaseException as exc:  # re-raised by finish()
            self.error = exc

    def finish(self) -> GenerationResult:
        self.join(LIMIT)
        assert not self.is_alive(), "the reply did not end"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class HoldAt:
    """A forward hook that holds the batch's thread once ``condition()`` holds (say, the
    first reply has made N tokens), until ``until()`` does (the next reply is waiting to
    join). :meth:`when` returns an event set while the thread is held, so a test starts
    the next reply only then: it cannot join earlier than the step chosen."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine
        self.rules: list[tuple[Callable[[], bool], Callable[[], bool], threading.Event]] = []
        self.handle: Any = None

    def when(self, condition: Callable[[], bool], until: Callable[[], bool]) -> threading.Event:
        held = threading.Event()
        self.rules.append((condition, until, held))
        return held

    def __enter__(self) -> HoldAt:
        def hook(*_args: Any) -> None:
            if threading.current_thread().name != "batch":
                return
            for rule in list(self.rules):
                condition, until, held = rule
                if condition():
                    self.rules.remove(rule)
                    held.set()
                    wait_until(until, "the hold's condition")

        self.handle = self.engine.loaded.model.register_forward_pre_hook(hook)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.handle.remove()


def rows_with(engine: LocalEngine, count: int) -> Callable[[], bool]:
    """True once ``count`` replies wait to join the batch (submitted, not started)."""
    return lambda: len(engine.scheduler._pending) >= count


def made(chat: Chat, tokens: int) -> Callable[[], bool]:
    """True once ``chat``'s reply has made ``tokens`` tokens in the batch."""

    def check() -> bool:
        batch = chat.engine.scheduler.batch
        rows = list(batch.rows) if batch is not None else []
        return any(len(r.new_ids) >= tokens for r in rows if r.event is chat.stop)

    return check


def alone(engine: LocalEngine, request: ChatRequest) -> GenerationResult:
    """The same reply made with nothing else generating."""
    return engine.chat(request)


def request(messages, settings, cid=None, **kwargs) -> ChatRequest:
    return ChatRequest(messages, conversation_id=cid, settings=settings, **kwargs)


@pytest.fixture
def widest(engine) -> Iterator[Callable[[], int]]:
    engine.scheduler.widest = 0
    yield lambda: engine.scheduler.widest


def test_a_reply_alone_matches_model_generate(engine, greedy) -> None:
    """The batch's own loop, with one row, is ``model.generate``: same tokens, greedy
    and sampled with a seed (replies saved before batching replay identically)."""
    from tui.engine import generation

    loaded = engine.loaded
    for settings in (
        greedy("max_new_tokens=24", "repetition_penalty=1.3"),
        greedy("max_new_tokens=24", "do_sample=true", "temperature=0.9", "top_p=0.8", "seed=7"),
    ):
        prompt = engine.build_prompt(HELLO).ids
        ours = engine.chat(request(HELLO, settings))
        kwargs = dict(engine.effective_settings(settings).kwargs)
        theirs = generation.generate(loaded, prompt, kwargs, seed=settings.values.get("seed"))
        assert ours.token_ids == theirs.token_ids
        assert ours.text == theirs.text
        assert ours.stats.target_forwards == ours.stats.new_tokens


def test_two_replies_joining_at_different_steps_match_their_replies_alone(
    engine, greedy, widest
) -> None:
    first_settings = greedy("max_new_tokens=40", "min_new_tokens=40")
    second_settings = greedy("max_new_tokens=20", "min_new_tokens=20")
    solo = [
        alone(engine, request(HELLO, first_settings)),
        alone(engine, request(LONG, second_settings)),
    ]
    for step in (1, 7, 15):
        first = Chat(engine, request(HELLO, first_settings))
        second = Chat(engine, request(LONG, second_settings))
        with HoldAt(engine) as hold:
            held = hold.when(made(first, step), rows_with(engine, 1))
            first.start()
            wait_until(held.is_set, "the batch held at the chosen step")
            second.start()
            one, two = first.finish(), second.finish()
        assert one.token_ids == solo[0].token_ids, f"joined at step {step}"
        assert two.token_ids == solo[1].token_ids, f"joined at step {step}"
        assert one.text == "".join(first.chunks) and two.text == "".join(second.chunks)
    assert widest() == 2


def test_rows_keep_their_own_settings_and_histories(engine, greedy, widest) -> None:
    requests = [
        request(HELLO, greedy("max_new_tokens=30", "min_new_tokens=30")),
        request(LONG, greedy("max_new_tokens=25", "do_sample=true", "temperature=1.2", "seed=3")),
        request(OTHER, greedy("max_new_tokens=20", "repetition_penalty=1.5", "top_k=5",
                              "do_sample=true", "seed=11")),
        request(HELLO, greedy("max_new_tokens=12", "no_repeat_ngram_size=2")),
    ]  # fmt: skip
    solo = [alone(engine, r) for r in requests]
    chats = [Chat(engine, r) for r in requests]
    with HoldAt(engine) as hold:
        held = hold.when(made(chats[0], 2), rows_with(engine, 3))
        chats[0].start()
        wait_until(held.is_set, "the batch held at the chosen step")
        for chat in chats[1:]:
            chat.start()
        results = [c.finish() for c in chats]
    assert [r.token_ids for r in results] == [s.token_ids for s in solo]
    assert [r.stats.stop_reason for r in results] == [s.stats.stop_reason for s in solo]
    assert widest() == 4


def test_a_stop_in_the_middle_leaves_the_others_undisturbed(engine, greedy, widest) -> None:
    settings = greedy("max_new_tokens=40", "min_new_tokens=40")
    solo = [alone(engine, request(m, settings)) for m in (HELLO, LONG, OTHER)]
    chats = [Chat(engine, request(m, settings)) for m in (HELLO, LONG, OTHER)]
    with HoldAt(engine) as hold:
        held = hold.when(made(chats[0], 1), rows_with(engine, 2))
        hold.when(made(chats[1], 10), lambda: chats[1].stop.set() or True)
        chats[0].start()
        wait_until(held.is_set, "the batch held at the chosen step")
        chats[1].start()
        chats[2].start()
        results = [c.finish() for c in chats]
    stopped = results[1]
    assert stopped.stats.stop_reason == "stopped"
    assert 10 <= stopped.stats.new_tokens < 40
    assert stopped.token_ids == solo[1].token_ids[: stopped.stats.new_tokens]
    assert results[0].token_ids == solo[0].token_ids
    assert results[2].token_ids == solo[2].token_ids
    assert widest() == 3


def test_a_row_that_ends_first_leaves_and_keeps_its_cache(engine, greedy, widest) -> None:
    short, long = greedy("max_new_tokens=4"), greedy("max_new_tokens=30", "min_new_tokens=30")
    engine.forget("short")
    engine.forget("long")
    solo_long = alone(engine, request(LONG, long))
    first = Chat(engine, request(LONG, long, "long"))
    second = Chat(engine, request(HELLO, short, "short"))
    with HoldAt(engine) as hold:
        held = hold.when(made(first, 3), rows_with(engine, 1))
        first.start()
        wait_until(held.is_set, "the batch held at the chosen step")
        second.start()
        quick = second.finish()
        assert first.is_alive() or first.result is not None
        slow = first.finish()
    assert quick.stats.new_tokens == 4 and quick.stats.stop_reason == "length"
    assert slow.token_ids == solo_long.token_ids
    assert widest() == 2
    # both caches went back to their conversations: the next turns reuse them
    for cid, messages, reply in (("short", HELLO, quick), ("long", LONG, slow)):
        follow = [*messages, {"role": "assistant", "content": reply.text},
                  {"role": "user", "content": "Go on."}]  # fmt: skip
        again = engine.chat(request(follow, short, cid))
        assert again.stats.reused_tokens > 0
        fresh = engine.chat(request(follow, short))
        assert again.token_ids == fresh.token_ids
        engine.forget(cid)


def test_kv_caches_reused_in_a_batch_give_the_same_replies(engine, greedy) -> None:
    """Two conversations of three turns each, every turn made in a batch with the
    other's, reuse their caches and answer as conversations made alone without them."""
    settings = greedy("max_new_tokens=10")
    questions = ["Hello there.", "What is a lighthouse?", "Why is the sea salty?"]
    fresh = LocalEngine()
    fresh.reuse_cache = False
    fresh.load(engine.loaded.spec)
    histories: dict[str, list[dict[str, str]]] = {"a": [], "b": []}
    reference: dict[str, list[dict[str, str]]] = {"a": [], "b": []}
    for question in questions:
        chats = {}
        for cid in ("a", "b"):
            histories[cid].append({"role": "user", "content": f"{cid}: {question}"})
            chats[cid] = Chat(engine, request(list(histories[cid]), settings, cid))
        for chat in chats.values():
            chat.start()
        for cid, chat in chats.items():
            result = chat.finish()
            reference[cid].append({"role": "user", "content": f"{cid}: {question}"})
            expected = fresh.chat(request(list(reference[cid]), settings))
            assert result.token_ids == expected.token_ids
            if len(histories[cid]) > 1:
                assert result.stats.reused_tokens > 0
            histories[cid].append({"role": "assistant", "content": result.text})
            reference[cid].append({"role": "assistant", "content": expected.text})
    engine.forget("a")
    engine.forget("b")


def test_a_reply_that_runs_alone_waits_for_the_batch_and_says_so(
    tiny_llama_dir, engine, greedy
) -> None:
    lookup = LocalEngine(prompt_lookup=3)
    lookup.load(ModelSpec(source=str(tiny_llama_dir), dtype="fp32"))
    batched = Chat(lookup, request(HELLO, greedy("max_new_tokens=30", "min_new_tokens=30"),
                                   speculative=False))  # fmt: skip
    speculative = Chat(lookup, request(HELLO, greedy("max_new_tokens=8")))
    with HoldAt(lookup) as hold:
        held = hold.when(made(batched, 2), lambda: bool(speculative.waits))
        batched.start()
        wait_until(held.is_set, "the batch held at the chosen step")
        speculative.start()
        batched.finish()
        result = speculative.finish()
    assert speculative.waits == ["1 streaming reply to finish: speculative decoding runs alone"]
    assert result.stats.speculative and result.stats.new_tokens > 0


def test_a_reply_sent_during_a_comparison_waits_for_it(engine, greedy) -> None:
    chat = Chat(engine, request(HELLO, greedy("max_new_tokens=5")))
    with engine.exclusive(doing="a comparison") as held:
        assert held
        chat.start()
        wait_until(lambda: bool(chat.waits), "the reply to say it waits")
        assert chat.waits == ["a comparison to finish"]
        assert chat.result is None
    assert chat.finish().stats.new_tokens == 5


def test_a_join_that_would_not_fit_waits_for_memory(engine, greedy, monkeypatch) -> None:
    from tui.engine import memory

    settings = greedy("max_new_tokens=30", "min_new_tokens=30")
    solo = alone(engine, request(LONG, greedy("max_new_tokens=6")))
    first = Chat(engine, request(HELLO, settings))
    second = Chat(engine, request(LONG, greedy("max_new_tokens=6")))
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 0)
    with HoldAt(engine) as hold:
        held = hold.when(made(first, 3), rows_with(engine, 1))
        first.start()
        wait_until(held.is_set, "the batch held at the chosen step")
        second.start()
        first.finish()
        result = second.finish()
    assert second.waits[0].startswith("memory: joining needs about ")
    assert second.waits[0].endswith("it joins when another reply ends")
    assert result.token_ids == solo.token_ids


def test_a_failing_callback_ends_only_its_own_row(engine, greedy) -> None:
    settings = greedy("max_new_tokens=30", "min_new_tokens=30")
    solo = alone(engine, request(LONG, settings))
    calls: list[str] = []

    def fails(chunk: str) -> None:
        calls.append(chunk)
        if len(calls) == 3:
            raise RuntimeError("the screen went away")

    good = Chat(engine, request(LONG, settings))
    bad = Chat(engine, request(HELLO, settings), on_text=fails)
    with HoldAt(engine) as hold:
        held = hold.when(made(good, 1), rows_with(engine, 1))
        good.start()
        wait_until(held.is_set, "the batch held at the chosen step")
        bad.start()
        failed = bad.finish()
    assert failed.stats.stop_reason == "error"
    assert "the screen went away" in failed.stats.error
    assert failed.text.startswith("".join(calls))
    assert good.finish().token_ids == solo.token_ids


def test_the_batch_cache_is_counted(engine, greedy) -> None:
    settings = greedy("max_new_tokens=30", "min_new_tokens=30")
    seen: list[int] = []
    chat = Chat(engine, request(LONG, settings, "counted"))
    with HoldAt(engine) as hold:
        hold.when(made(chat, 5), lambda: seen.append(engine.cache_bytes()) or True)
        chat.start()
        chat.finish()
    assert seen and seen[0] > 0
    assert engine.cache_bytes("counted") > 0  # back in the store
    engine.forget("counted")


def test_the_batch_cache_grows_in_place_and_changes_nothing(engine, greedy, monkeypatch) -> None:
    """With room for 3 more tokens a row, the batch's cache grows many times while two
    replies stream; they are still the replies made alone, and each conversation's
    cache comes back whole (its next turn reuses it)."""
    from tui.engine import batch

    monkeypatch.setattr(batch, "ROOM_TOKENS", 3)
    settings = greedy("max_new_tokens=25", "min_new_tokens=25")
    solo = [alone(engine, request(m, settings)) for m in (HELLO, LONG)]
    chats = [Chat(engine, request(m, settings, f"grow-{i}")) for i, m in enumerate((HELLO, LONG))]
    with HoldAt(engine) as hold:
        held = hold.when(made(chats[0], 2), rows_with(engine, 1))
        chats[0].start()
        wait_until(held.is_set, "the batch held at the chosen step")
        chats[1].start()
        results = [c.finish() for c in chats]
    assert [r.token_ids for r in results] == [s.token_ids for s in solo]
    for index, (messages, result) in enumerate(zip((HELLO, LONG), results, strict=True)):
        follow = [*messages, {"role": "assistant", "content": result.text},
                  {"role": "user", "content": "Go on."}]  # fmt: skip
        again = engine.chat(request(follow, greedy("max_new_tokens=6"), f"grow-{index}"))
        assert again.stats.reused_tokens >= len(engine.build_prompt(messages).ids)
        assert (
            again.token_ids == alone(engine, request(follow, greedy("max_new_tokens=6"))).token_ids
        )
        engine.forget(f"grow-{index}")


def test_an_8bit_model_answers_one_reply_at_a_time(tiny_llama_dir, greedy) -> None:
    """LLM.int8 decides its outlier columns over the whole batch, so a batched 8-bit
    reply would depend on its neighbours: 8-bit replies take turns, and say so."""
    eight = LocalEngine()
    eight.load(ModelSpec(source=str(tiny_llama_dir), quantization="8bit"))
    second = Chat(eight, request(LONG, greedy("max_new_tokens=4")))

    def hold_until_the_second_waits(chunk: str) -> None:
        if not second.is_alive():
            second.start()
        wait_until(lambda: bool(second.waits), "the second reply to say it waits")

    first = Chat(eight, request(HELLO, greedy("max_new_tokens=6", "min_new_tokens=6")),
                 on_text=hold_until_the_second_waits)  # fmt: skip
    first.start()
    assert first.finish().stats.new_tokens == 6
    result = second.finish()
    assert second.waits == ["a reply to finish: an 8-bit model runs one reply at a time"]
    assert result.token_ids == eight.chat(request(LONG, greedy("max_new_tokens=4"))).token_ids
    assert eight.scheduler.steps == 0  # nothing went through the batch


def test_a_4bit_model_batches_and_its_replies_match(tiny_llama_dir, greedy) -> None:
    """4-bit layers dequantize each row alike: batched replies are the replies alone
    (bench/parallel.py --quantization 4bit: faster batched on this CPU, so batched)."""
    four = LocalEngine()
    four.load(ModelSpec(source=str(tiny_llama_dir), quantization="4bit"))
    four.scheduler.widest = 0
    settings = greedy("max_new_tokens=12", "min_new_tokens=12")
    solo = [four.chat(request(m, settings)) for m in (HELLO, LONG)]
    chats = [Chat(four, request(m, settings)) for m in (HELLO, LONG)]
    with HoldAt(four) as hold:
        held = hold.when(made(chats[0], 2), rows_with(four, 1))
        chats[0].start()
        wait_until(held.is_set, "the batch held at the chosen step")
        chats[1].start()
        results = [c.finish() for c in chats]
    assert [r.token_ids for r in results] == [s.token_ids for s in solo]
    assert four.scheduler.widest == 2


def test_what_runs_alone_says_why_in_words(engine, greedy) -> None:
    """The reason a reply is not batched ends the waiting line another tab shows:
    plain words, never an enum's name."""
    from tui.engine import batch

    loaded = engine.loaded

    def why(*settings: str, speculative: bool = False) -> object:
        turn = engine._turn(loaded, request(HELLO, greedy(*settings)), threading.Event())
        return batch.plan(loaded, turn.prompt.ids, turn.config, event=threading.Event(),
                          seed=None, speculative=speculative, store=None, key=None)  # fmt: skip

    assert why("num_beams=2") == "beam search runs alone"
    assert why("max_new_tokens=4", speculative=True) == "speculative decoding runs alone"
    assert isinstance(why("max_new_tokens=4"), batch.Row)
    assert isinstance(why("do_sample=true", "top_p=0.8", "seed=3"), batch.Row)
