"""Streaming generation: chunks, stats, stopping, errors, KV-cache reuse, incremental
decoding, speculative decoding and turn-taking between threads."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tui.engine import ChatRequest, LocalEngine, ModelSpec
from tui.engine.generation import IncrementalDecoder

HELLO = [{"role": "user", "content": "Hello there, how are you today?"}]
QUESTIONS = ["Hello there, how are you today?", "Tell me about the sea.", "Why is that?"]


@pytest.mark.parametrize("engine_fixture", ["llama_engine", "qwen_engine"])
def test_streamed_chunks_make_up_the_reply(request, engine_fixture, greedy) -> None:
    engine = request.getfixturevalue(engine_fixture)
    chunks: list[str] = []
    result = engine.chat(
        ChatRequest(HELLO, settings=greedy("max_new_tokens=8", "min_new_tokens=8")),
        on_text=chunks.append,
    )
    assert len(chunks) > 1
    assert all(chunks)
    assert "".join(chunks) == result.text
    assert result.text.strip()


def test_stats(llama_engine, greedy) -> None:
    result = llama_engine.chat(ChatRequest(HELLO, settings=greedy("max_new_tokens=6")))
    stats = result.stats
    assert stats.prompt_tokens == len(llama_engine.build_prompt(HELLO).ids)
    assert stats.new_tokens > 0
    assert stats.time_to_first_token is not None and stats.time_to_first_token > 0
    assert stats.total_seconds >= stats.time_to_first_token
    assert stats.stop_reason in {"eos", "length"}
    assert stats.error is None
    assert f"{stats.prompt_tokens} prompt tokens" in stats.describe()


def test_max_new_tokens_gives_stop_reason_length(llama_engine, greedy) -> None:
    result = llama_engine.chat(
        ChatRequest(HELLO, settings=greedy("max_new_tokens=5", "min_new_tokens=5"))
    )
    assert result.stats.stop_reason == "length"
    assert result.stats.new_tokens == 5
    assert result.stats.tokens_per_second is not None and result.stats.tokens_per_second > 0


def test_greedy_is_deterministic_and_sampling_follows_the_seed(llama_engine, greedy) -> None:
    settings = greedy("max_new_tokens=6", "min_new_tokens=6")
    assert llama_engine.chat(ChatRequest(HELLO, settings=settings)).text == (
        llama_engine.chat(ChatRequest(HELLO, settings=settings)).text
    )
    sampled = greedy("max_new_tokens=6", "min_new_tokens=6")
    sampled.update(["do_sample=true", "temperature=1.5", "seed=7"])
    first = llama_engine.chat(ChatRequest(HELLO, settings=sampled))
    second = llama_engine.chat(ChatRequest(HELLO, settings=sampled))
    assert first.text == second.text
    assert first.stats.new_tokens == 6


def test_beam_search_delivers_the_reply(llama_engine, greedy) -> None:
    chunks: list[str] = []
    result = llama_engine.chat(
        ChatRequest(
            HELLO,
            conversation_id="beams",
            settings=greedy("num_beams=2", "max_new_tokens=4", "min_new_tokens=4"),
        ),
        on_text=chunks.append,
    )
    assert result.stats.new_tokens == 4
    assert result.stats.stop_reason == "length"
    assert result.text and "".join(chunks) == result.text


def test_stop_mid_stream_keeps_the_text(llama_engine, greedy) -> None:
    stop = threading.Event()
    chunks: list[str] = []

    def on_text(chunk: str) -> None:
        chunks.append(chunk)
        if len(chunks) == 3:
            stop.set()

    result = llama_engine.chat(
        ChatRequest(HELLO, settings=greedy("max_new_tokens=40", "min_new_tokens=40")),
        stop_event=stop,
        on_text=on_text,
    )
    assert result.stats.stop_reason == "stopped"
    assert result.text
    assert result.text == "".join(chunks)
    assert 3 <= result.stats.new_tokens <= 5


def test_stop_before_the_call(llama_engine, greedy) -> None:
    stop = threading.Event()
    stop.set()
    result = llama_engine.chat(
        ChatRequest(HELLO, settings=greedy("max_new_tokens=40", "min_new_tokens=40")),
        stop_event=stop,
    )
    assert result.stats.stop_reason == "stopped"
    assert result.stats.new_tokens <= 1


def test_a_failure_mid_stream_returns_the_partial_text(tiny_llama_dir, greedy) -> None:
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(tiny_llama_dir)))
    settings = greedy("max_new_tokens=10", "min_new_tokens=10")
    engine.chat(ChatRequest(HELLO, conversation_id="c", settings=settings))
    assert engine.kv_cache.tokens("c") > 0
    chunks: list[str] = []

    def on_text(chunk: str) -> None:
        chunks.append(chunk)
        if len(chunks) == 2:
            raise RuntimeError("the screen went away")

    result = engine.chat(
        ChatRequest(HELLO, conversation_id="c", settings=settings), on_text=on_text
    )
    assert result.stats.stop_reason == "error"
    assert "RuntimeError" in result.stats.error
    assert "the screen went away" in result.stats.error
    assert result.text.startswith("".join(chunks))
    assert engine.kv_cache.tokens("c") == 0  # a cache in an unknown state is dropped

    again = engine.chat(ChatRequest(HELLO, conversation_id="c", settings=settings))
    assert again.stats.error is None
    assert again.stats.new_tokens == 10


def _converse(engine: LocalEngine, settings, questions=QUESTIONS, cid="c"):
    messages: list[dict[str, str]] = []
    results = []
    for question in questions:
        messages.append({"role": "user", "content": question})
        result = engine.chat(ChatRequest(messages, conversation_id=cid, settings=settings))
        results.append(result)
        messages.append({"role": "assistant", "content": result.text})
    return results


@pytest.mark.parametrize("model", ["tiny_llama_dir", "tiny_qwen_dir"])
def test_kv_cache_reuse_gives_the_same_replies(request, model, greedy) -> None:
    folder = request.getfixturevalue(model)
    settings = greedy("max_new_tokens=12")
    reusing, fresh = LocalEngine(), LocalEngine()
    fresh.reuse_cache = False
    for engine in (reusing, fresh):
        engine.load(ModelSpec(source=str(folder), dtype="fp32"))

    with_reuse = _converse(reusing, settings)
    without = _converse(fresh, settings)

    assert [r.text for r in with_reuse] == [r.text for r in without]
    assert [r.stats.prompt_tokens for r in with_reuse] == [r.stats.prompt_tokens for r in without]
    assert with_reuse[0].stats.reused_tokens == 0
    assert all(r.stats.reused_tokens > 0 for r in with_reuse[1:])
    assert all(r.stats.reused_tokens < r.stats.prompt_tokens for r in with_reuse)
    assert all(r.stats.reused_tokens == 0 for r in without)
    assert fresh.cache_bytes() == 0


def test_edited_history_matches_a_full_prefill(tiny_llama_dir, greedy) -> None:
    settings = greedy("max_new_tokens=12")
    reusing, fresh = LocalEngine(), LocalEngine()
    fresh.reuse_cache = False
    for engine in (reusing, fresh):
        engine.load(ModelSpec(source=str(tiny_llama_dir)))
    first, second = _converse(reusing, settings, QUESTIONS[:2])

    edited = [
        {"role": "user", "content": "Goodbye, I am leaving now."},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": QUESTIONS[1]},
    ]
    after_edit = reusing.chat(ChatRequest(edited, conversation_id="c", settings=settings))
    full = fresh.chat(ChatRequest(edited, conversation_id="c", settings=settings))

    assert after_edit.text == full.text
    assert 0 < after_edit.stats.reused_tokens < second.stats.reused_tokens
    assert full.stats.reused_tokens == 0


def test_forget_drops_a_conversation_cache(tiny_llama_dir, greedy) -> None:
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(tiny_llama_dir)))
    settings = greedy("max_new_tokens=3")
    engine.chat(ChatRequest(HELLO, conversation_id="a", settings=settings))
    engine.chat(ChatRequest(HELLO, conversation_id="b", settings=settings))
    both = engine.cache_bytes()
    assert both == engine.cache_bytes("a") + engine.cache_bytes("b") > 0
    engine.forget("a")
    assert engine.cache_bytes("a") == 0
    assert engine.cache_bytes() == engine.cache_bytes("b") > 0
    again = engine.chat(ChatRequest(HELLO, conversation_id="a", settings=settings))
    assert again.stats.reused_tokens == 0


SAMPLES = [
    "Héllo wörld, ça va? Ünïcödé àçcênts",
    "😀👍🏽 emoji 🇫🇷 flags 👨‍👩‍👧 and families",
    "日本語のテキストと中文，标点。한국어",
    "line one\nline two\n\n\tindented\r\nwindows",
    "  leading and trailing spaces  ",
    "naïve café — “quotes” ½ ∑ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "don't stop-me now; 1,234.5 % ok?!",
]


def _decode_one_by_one(tokenizer, ids: list[int]) -> str:
    decoder = IncrementalDecoder(tokenizer)
    streamed = "".join(decoder.push([token]) for token in ids) + decoder.flush()
    assert decoder.text == streamed
    return streamed


@pytest.mark.parametrize("text", SAMPLES)
def test_incremental_decoder_matches_a_full_decode(tokenizer, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > 3
    assert _decode_one_by_one(tokenizer, ids) == tokenizer.decode(ids)


def test_incremental_decoder_holds_back_partial_characters(tokenizer) -> None:
    ids = tokenizer("😀", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1  # byte-level BPE spends several tokens on one emoji
    decoder = IncrementalDecoder(tokenizer)
    assert [decoder.push([token]) for token in ids[:-1]] == [""] * (len(ids) - 1)
    assert decoder.push(ids[-1:]) == "😀"


@hypothesis_settings(max_examples=100, deadline=None)
@given(
    st.text(
        alphabet=st.characters(
            categories=("L", "M", "N", "P", "S", "Zs"), include_characters="\n\t"
        ),
        max_size=30,
    )
)
def test_incremental_decoder_on_any_text(tokenizer, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert _decode_one_by_one(tokenizer, ids) == tokenizer.decode(ids)


def test_prompt_lookup_gives_the_plain_greedy_output(tiny_llama_dir, llama_engine, greedy) -> None:
    settings = greedy("max_new_tokens=12")
    messages = [{"role": "user", "content": "one two three four, one two three four, one two"}]
    plain = llama_engine.chat(ChatRequest(messages, settings=settings))
    engine = LocalEngine(prompt_lookup=3)
    engine.load(ModelSpec(source=str(tiny_llama_dir)))
    looked_up = engine.chat(ChatRequest(messages, settings=settings))
    assert looked_up.text == plain.text
    assert looked_up.stats.new_tokens == plain.stats.new_tokens


def test_prompt_lookup_with_kv_reuse_gives_the_plain_greedy_output(tiny_llama_dir, greedy) -> None:
    """Turn 2 of a conversation with --prompt-lookup must answer as without it."""
    settings = greedy("max_new_tokens=12")
    plain, looking_up = LocalEngine(), LocalEngine(prompt_lookup=3)
    for engine in (plain, looking_up):
        engine.load(ModelSpec(source=str(tiny_llama_dir)))
    expected = _converse(plain, settings, QUESTIONS[:2])
    got = _converse(looking_up, settings, QUESTIONS[:2])
    assert [r.text for r in got] == [r.text for r in expected]


def test_assistant_model_gives_the_plain_greedy_output(
    tiny_llama_dir, tiny_qwen_dir, llama_engine, greedy
) -> None:
    settings = greedy("max_new_tokens=12")
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(tiny_llama_dir)))
    engine.load_assistant(ModelSpec(source=str(tiny_qwen_dir)))
    assert engine.assistant is not None
    speculative = _converse(engine, settings, QUESTIONS[:2], cid="spec")
    expected = _converse(llama_engine, settings, QUESTIONS[:2], cid="spec-plain")
    assert [r.text for r in speculative] == [r.text for r in expected]
    assert all(r.stats.reused_tokens == 0 for r in speculative)
    engine.load_assistant(None)
    assert engine.assistant is None


def test_two_threads_generate_at_once(llama_engine, greedy) -> None:
    """Two conversations share the model: the second streams to its end while the
    first's reader is still busy with its first chunk, and each gets its own reply."""
    settings = greedy("max_new_tokens=6", "min_new_tokens=6")
    prompts = {
        "a": [{"role": "user", "content": "First question, please."}],
        "b": [{"role": "user", "content": "A different second question."}],
    }
    expected = {
        k: llama_engine.chat(ChatRequest(m, settings=settings)).text for k, m in prompts.items()
    }
    assert expected["a"] != expected["b"]

    events: list[str] = []
    results = {}
    a_streaming, release_a = threading.Event(), threading.Event()

    def on_text_a(chunk: str) -> None:
        events.append("a")
        a_streaming.set()
        release_a.wait(timeout=60)

    def run(key: str, on_text) -> None:
        results[key] = llama_engine.chat(
            ChatRequest(prompts[key], conversation_id=f"thread-{key}", settings=settings),
            on_text=on_text,
        )

    thread_a = threading.Thread(target=run, args=("a", on_text_a))
    thread_b = threading.Thread(target=run, args=("b", lambda chunk: events.append("b")))
    thread_a.start()
    assert a_streaming.wait(timeout=60)
    thread_b.start()  # a is streaming, and b does not wait for it
    thread_b.join(timeout=120)
    assert not thread_b.is_alive()
    assert events[0] == "a" and events.count("a") == 1 and events.count("b") >= 1
    release_a.set()
    thread_a.join(timeout=120)

    assert not thread_a.is_alive()
    assert {k: r.text for k, r in results.items()} == expected
    assert all(r.stats.stop_reason == "length" for r in results.values())


def test_a_waiting_caller_can_be_stopped(llama_engine, greedy) -> None:
    settings = greedy("max_new_tokens=4", "min_new_tokens=4")
    streaming, release = threading.Event(), threading.Event()
    results = {}

    def hold(chunk: str) -> None:
        streaming.set()
        release.wait(timeout=60)

    holder = threading.Thread(
        target=lambda: results.setdefault(
            "a", llama_engine.chat(ChatRequest(HELLO, settings=settings), on_text=hold)
        )
    )
    holder.start()
    try:
        assert streaming.wait(timeout=60)
        stop = threading.Event()
        stop.set()
        waiting = llama_engine.chat(ChatRequest(HELLO, settings=settings), stop_event=stop)
        assert waiting.stats.stop_reason == "stopped"
        assert waiting.text == ""
        assert waiting.stats.new_tokens == 0
    finally:
        release.set()
        holder.join(timeout=120)
    assert results["a"].stats.new_tokens == 4


@pytest.fixture(scope="module")
def own_config_dir(tmp_path_factory, tiny_llama_dir):
    """The tiny llama with a generation_config.json of its own (5 tokens, greedy)."""
    import json
    import shutil

    folder = tmp_path_factory.mktemp("ownconfig")
    for path in tiny_llama_dir.iterdir():
        shutil.copy(path, folder / path.name)
    config = json.loads((folder / "generation_config.json").read_text())
    config.update(max_new_tokens=5, min_new_tokens=5, do_sample=False)
    (folder / "generation_config.json").write_text(json.dumps(config))
    return folder


def test_the_model_generation_config_is_the_default(own_config_dir) -> None:
    from tui.engine import GenerationSettings

    engine = LocalEngine()
    engine.load(ModelSpec(source=str(own_config_dir)))
    result = engine.chat(ChatRequest(HELLO, settings=GenerationSettings()))
    assert result.stats.new_tokens == 5  # the model's own max_new_tokens, not chat-tui's
    assert result.stats.stop_reason == "length"
    effective = engine.effective_settings(GenerationSettings())
    assert effective.values["max_new_tokens"] == 5
    assert effective.sources["max_new_tokens"] == "model"

    user = GenerationSettings()
    user.update(["max_new_tokens=7", "min_new_tokens=7"])
    assert engine.chat(ChatRequest(HELLO, settings=user)).stats.new_tokens == 7  # the user's wins
