"""A reasoning model's reply in two parts, through the real tokenizer, template and
transformers' ResponseParser: two tiny forced-output models (tests/thinking_models.py)
of two template families, Qwen3-style (``enable_thinking``, the qwen3 fallback of
transformers serve) and a template that opens ``<think>`` itself (its tokenizer's own
``response_template``)."""

from __future__ import annotations

import threading

import pytest

from tui.engine import LocalEngine, ModelSpec, chat_format, reasoning
from tui.engine.protocol import ChatRequest
from tui.engine.reasoning import Reasoning, ReplySplitter, TextRun
from tui.engine.settings import GenerationSettings, SettingsError
from tui.store.model import Conversation

QUESTION = [{"role": "user", "content": "Capital of France?"}]


@pytest.fixture(scope="module")
def qwen3(qwen3_thinking_dir) -> LocalEngine:
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(qwen3_thinking_dir), dtype="fp32"))
    return engine


@pytest.fixture(scope="module")
def prefill(prefill_thinking_dir) -> LocalEngine:
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(prefill_thinking_dir), dtype="fp32"))
    return engine


def chat(engine, greedy, *assignments, messages=QUESTION, stop_when=None):
    """One reply; the pieces streamed; ``stop_when(piece)`` may stop it."""
    pieces: list[str] = []
    stop = threading.Event()

    def on_text(piece: str) -> None:
        pieces.append(piece)
        if stop_when is not None and stop_when(piece):
            stop.set()

    request = ChatRequest(messages, settings=greedy("max_new_tokens=20", *assignments))
    result = engine.chat(request, stop_event=stop, on_text=on_text)
    return result, pieces


def test_the_fallbacks_are_transformers_serves_own() -> None:
    from transformers.cli.serving import utils

    assert reasoning.FALLBACKS == utils._RESPONSE_TEMPLATE_FALLBACKS


def test_qwen3_thinks_then_answers_in_two_streamed_parts(qwen3, greedy) -> None:
    result, pieces = chat(qwen3, greedy)
    assert result.reasoning == "so France" and result.text == "Paris."
    thought = [p for p in pieces if isinstance(p, Reasoning)]
    said = [p for p in pieces if not isinstance(p, Reasoning)]
    assert "".join(thought) == "so France" and "".join(said) == "Paris."
    assert pieces.index(said[0]) > pieces.index(thought[-1])  # the answer after
    assert not any("think" in p for p in pieces)  # the tags are the parser's
    # <think> so France </think>: 4 tokens of 8 (\n\n Paris . and the end of turn)
    stats = result.stats
    assert (stats.reasoning_tokens, stats.new_tokens, stats.answer_tokens) == (4, 8, 4)
    assert stats.reasoning_seconds is not None and stats.reasoning_seconds >= 0
    assert "(4 reasoning, 4 answer)" in stats.describe()


def test_enable_thinking_false_reaches_the_template(qwen3, greedy) -> None:
    prompt = qwen3.build_prompt(QUESTION, settings=greedy("enable_thinking=false"))
    assert prompt.text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    result, pieces = chat(qwen3, greedy, "enable_thinking=false")
    # the empty reasoning the template wrote is no reasoning; the answer is clean
    assert (result.reasoning, result.text) == ("", "Paris.")
    assert not any(isinstance(p, Reasoning) for p in pieces)
    assert result.stats.reasoning_tokens is None
    # the switch shaped the prompt: the reply's snapshot keeps it, for a replay
    assert result.stats.provenance.settings["enable_thinking"] is False


def test_a_template_that_opens_the_reasoning_itself(prefill, greedy) -> None:
    """The prompt ends in ``<think>\\n``: everything the model writes is reasoning until
    ``</think>``, which comes as three tokens (``</`` ``think`` ``>``)."""
    prompt = prefill.build_prompt(QUESTION)
    assert prompt.text.endswith("<|im_start|>assistant\n<think>\n")
    result, pieces = chat(prefill, greedy)
    assert (result.reasoning, result.text) == ("the capital is", "Paris.")
    thought = [p for p in pieces if isinstance(p, Reasoning)]
    assert "".join(thought) == "the capital is"
    assert not any(c in p for p in pieces for c in "</>")  # no piece of the tag leaks
    # " the capital is" + "</" "think" ">": 6 of 10 tokens
    assert (result.stats.reasoning_tokens, result.stats.new_tokens) == (6, 10)


@pytest.mark.parametrize("which", ["qwen3", "prefill"])
def test_stopped_while_thinking_keeps_what_was_thought(which, request, greedy, monkeypatch):
    engine = request.getfixturevalue(which)
    # The reply runs in this thread, so the stop lands before the next token. In the
    # batch, the batch's thread makes tokens while this one decodes them: a tiny model
    # can finish the reply before the first piece is decoded (it did on a busy machine).
    monkeypatch.setattr(engine, "batching", False)
    result, pieces = chat(engine, greedy, stop_when=lambda p: isinstance(p, Reasoning))
    assert result.stats.stop_reason == "stopped"
    assert result.text == "" and result.reasoning
    assert result.reasoning == "".join(p for p in pieces if isinstance(p, Reasoning))
    assert ("so France" if which == "qwen3" else "the capital is").startswith(result.reasoning)
    # every token so far was reasoning
    assert result.stats.reasoning_tokens == result.stats.new_tokens


def test_cut_by_max_new_tokens_while_thinking(prefill, greedy) -> None:
    result, _pieces = chat(prefill, greedy, "max_new_tokens=3")
    assert result.stats.stop_reason == "length"
    assert (result.reasoning, result.text) == ("the capital is", "")
    assert result.stats.reasoning_tokens == 3


@pytest.mark.parametrize(
    ("content", "more"),
    [("Par", " Paris."), ("", "Paris.")],  # stopped in the answer; stopped while thinking
)
def test_a_continued_reply_brings_only_what_is_new(qwen3, greedy, content, more) -> None:
    """The prompt holds the reply so far (the template writes its reasoning, closed):
    the parser starts from there, and none of it comes back as new text."""
    messages = [
        *QUESTION,
        {"role": "assistant", "content": content, "reasoning_content": "so France"},
    ]
    pieces: list[str] = []
    request = ChatRequest(messages, settings=greedy("max_new_tokens=20"), continue_final=True)
    result = qwen3.chat(request, on_text=pieces.append)
    assert (result.reasoning, result.text) == ("", more)
    assert "".join(pieces) == more and result.stats.reasoning_tokens is None


def history(engine: LocalEngine, greedy, *assignments: str) -> Conversation:
    """A conversation whose first reply came from ``engine``, stored as the app stores
    it, and a second question."""
    conv = Conversation(id="c1")
    conv.append("user", QUESTION[0]["content"])
    result, _ = chat(engine, greedy, *assignments)
    conv.append("assistant", result.text, reasoning=result.reasoning or None)
    conv.append("user", "Sure?")
    return conv


def test_qwen3s_template_drops_old_reasoning_from_the_next_prompt(qwen3, greedy) -> None:
    conv = history(qwen3, greedy)
    assert conv.messages[1].reasoning == "so France"
    sent = conv.chat_messages()
    assert sent[1] == {"role": "assistant", "content": "Paris.", "reasoning_content": "so France"}
    prompt = qwen3.build_prompt(sent)
    assert prompt.text == (
        "<|im_start|>user\nCapital of France?<|im_end|>\n"
        "<|im_start|>assistant\nParis.<|im_end|>\n"
        "<|im_start|>user\nSure?<|im_end|>\n<|im_start|>assistant\n"
    )
    # the reasoning of a reply after the last question (a continued reply) is kept
    continued = qwen3.build_prompt(sent[:2], continue_final=True)
    assert "<think>\nso France\n</think>\n\nParis." in continued.text


def test_a_template_that_keeps_reasoning_gets_it_in_its_field(prefill, greedy) -> None:
    sent = history(prefill, greedy).chat_messages()
    prompt = prefill.build_prompt(sent)
    assert (
        "<|im_start|>assistant\n<think>\nthe capital is\n</think>\n\nParis.<|im_end|>\n"
        in prompt.text
    )
    assert prompt.text.endswith(
        "<|im_start|>user\nSure?<|im_end|>\n<|im_start|>assistant\n<think>\n"
    )


def test_trimming_counts_the_reasoning_the_template_sends(qwen3, prefill) -> None:
    """The same long reasoning costs a prefill-template model its oldest turn and a
    Qwen3-style model nothing: the template drops it, so it is not counted."""
    long_thought = " ".join(["pondering"] * 300)
    messages = [
        {"role": "user", "content": "First?"},
        {"role": "assistant", "content": "One.", "reasoning_content": long_thought},
        {"role": "user", "content": "Second?"},
    ]
    tokenizers = {
        "qwen3": qwen3.require_model().tokenizer,
        "prefill": prefill.require_model().tokenizer,
    }
    fitted = {
        name: chat_format.fit_prompt(tok, messages, context_limit=256, max_new_tokens=32)
        for name, tok in tokenizers.items()
    }
    assert fitted["qwen3"].dropped == 0
    assert "pondering" not in fitted["qwen3"].prompt.text
    assert len(fitted["qwen3"].prompt.ids) < 50
    assert fitted["prefill"].dropped == 2  # the first question and its long reply
    assert "pondering" not in fitted["prefill"].prompt.text
    untrimmed = chat_format.build_prompt(tokenizers["prefill"], messages)
    assert len(untrimmed.ids) > 300  # what made it not fit: the reasoning, counted


def test_a_model_with_neither_is_as_before(llama_engine, greedy) -> None:
    assert llama_engine.response_template() is None
    result, pieces = chat(llama_engine, greedy, "max_new_tokens=6")
    assert result.reasoning == "" and result.stats.reasoning_tokens is None
    assert not any(isinstance(p, Reasoning) for p in pieces)
    assert "".join(pieces) == result.text


# -- the splitter alone ------------------------------------------------------------------
TEMPLATE = reasoning.FALLBACKS[("qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text")]
PREFIX = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def split(chunks: list[str], template=TEMPLATE, prefix=PREFIX) -> tuple[list[str], ReplySplitter]:
    pieces: list[str] = []
    splitter = ReplySplitter.create(template, prefix, pieces.append)
    assert splitter is not None
    for chunk in chunks:
        splitter.feed(chunk)
    splitter.finish()
    return pieces, splitter


def test_tags_split_anywhere_in_the_stream() -> None:
    text = "<think>\nA plan.\n</think>\n\nThe answer.<|im_end|>"
    for size in (1, 2, 3, 5):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        pieces, splitter = split(chunks)
        assert (splitter.reasoning, splitter.answer) == ("A plan.", "The answer."), size
        assert "".join(p for p in pieces if isinstance(p, Reasoning)) == "A plan."
        assert "".join(p for p in pieces if not isinstance(p, Reasoning)) == "The answer."


def test_a_parser_that_fails_part_way_leaves_the_rest_as_answer() -> None:
    class Breaks:
        def __init__(self) -> None:
            self.initial_events: list[dict] = []
            self.calls = 0

        def feed(self, chunk: str) -> list[dict]:
            self.calls += 1
            if self.calls > 1:
                raise ValueError("malformed")
            return [
                {"type": "region_open", "field": "reasoning_content"},
                {"type": "region_chunk", "field": "reasoning_content", "text": chunk},
            ]

        def finalize(self):
            raise AssertionError("not called once broken")

    splitter = ReplySplitter(Breaks(), None)
    for chunk in ("thinking", " more", " then"):
        splitter.feed(chunk)
    splitter.finish()
    assert (splitter.reasoning, splitter.answer) == ("thinking", "more then")


def test_a_malformed_template_means_no_split() -> None:
    assert ReplySplitter.create({"fields": "not a mapping"}, PREFIX, None) is None
    assert ReplySplitter.create(None, PREFIX, None) is None


def test_blank_pieces_are_held_compactly_and_kept_between_words() -> None:
    """A server may send a million one-space events: held as runs, never re-copied."""
    splitter = ReplySplitter(None, None)
    splitter.put(True, "a")
    for _ in range(100_000):
        splitter.put(True, " ")
    splitter.put(True, "b ")
    splitter.finish()
    assert splitter.reasoning == "a" + " " * 100_000 + "b"
    run = TextRun()
    for _ in range(100_000):
        run.append("x")
    assert len(run.blocks) == 195 and str(run) == "x" * 100_000


def test_a_servers_answer_alone_passes_as_it_comes() -> None:
    pieces: list[str] = []
    splitter = ReplySplitter(None, pieces.append)
    for chunk in ("\n  indented", " code\n", "\n"):
        splitter.put(False, chunk)
    splitter.finish()
    assert pieces == ["\n  indented", " code\n", "\n"]
    assert splitter.answer == "\n  indented code\n\n" and not splitter.had_reasoning


# -- chat-template switches -----------------------------------------------------------------
def test_template_settings_reach_the_template_and_never_generate() -> None:
    settings = GenerationSettings()
    settings.update(["enable_thinking=false", "template.reasoning_budget=64", "temperature=0.5"])
    assert settings.template_kwargs() == {"enable_thinking": False, "reasoning_budget": 64}
    generate = settings.generation_kwargs()
    assert "enable_thinking" not in generate and "template.reasoning_budget" not in generate
    assert generate["temperature"] == 0.5


@pytest.mark.parametrize("name", ["template.tokenize", "template.chat_template", "template.1st"])
def test_apply_chat_templates_own_parameters_are_refused(name) -> None:
    with pytest.raises(SettingsError, match="chat-template argument"):
        GenerationSettings().update([f"{name}=1"])


def test_a_template_switch_reaches_the_rendered_prompt(qwen3) -> None:
    settings = GenerationSettings()
    settings.update(["template.enable_thinking=false"])
    prompt = qwen3.build_prompt(QUESTION, settings=settings)
    assert prompt.text.endswith("<think>\n\n</think>\n\n")
