"""The context limit: a conversation longer than the model's context loses its oldest
turns (never the system prompt), says so through ``on_start`` (a ``TurnInfo``), the
result's notices and stats; a last message that alone fills the context is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.engine import ChatRequest, LocalEngine, ModelSpec
from tui.engine.errors import ContextLengthError
from tui.engine.generation import TurnInfo

SYSTEM = "You are a patient assistant who remembers every detail."
FILLER = (
    "The valley had farms, mills and small towns along the river, and every spring the "
    "water rose over the low fields before the planting began. "
)


@pytest.fixture(scope="module")
def short_context_engine(short_context_dir: Path) -> LocalEngine:
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(short_context_dir), dtype="fp32"))
    assert engine.loaded.context_limit == 512
    return engine


def conversation(engine: LocalEngine, target: int) -> list[dict[str, str]]:
    """Numbered user/assistant turns whose prompt (with :data:`SYSTEM`) is exactly
    ``target`` tokens."""
    messages: list[dict[str, str]] = []
    turn = 0
    while True:
        candidate = messages + [
            {"role": "user", "content": f"Question {turn}: tell me about the valley."},
            {"role": "assistant", "content": f"Answer {turn}. " + FILLER},
        ]
        if engine.count_tokens(candidate + [{"role": "user", "content": "Go on."}], SYSTEM) > (
            target - 10
        ):
            break
        messages = candidate
        turn += 1
    last = {"role": "user", "content": "Go on."}
    while engine.count_tokens(messages + [last], SYSTEM) < target:
        last = {"role": "user", "content": last["content"] + " a"}
    assert engine.count_tokens(messages + [last], SYSTEM) == target
    return messages + [last]


def test_an_887_token_conversation_on_a_512_token_model(short_context_engine, greedy) -> None:
    engine = short_context_engine
    messages = conversation(engine, 887)
    events: list[object] = []
    result = engine.chat(
        ChatRequest(
            messages, system_prompt=SYSTEM, settings=greedy("max_new_tokens=8", "min_new_tokens=8")
        ),
        on_start=events.append,
        on_text=lambda chunk: events.append("text"),
    )
    info = events[0]
    assert isinstance(info, TurnInfo)
    assert events.count(info) == 1 and events[1:] and set(events[1:]) == {"text"}
    assert info.context_limit == 512
    assert 0 < info.dropped_messages < len(messages)
    assert info.dropped_messages % 2 == 0  # whole turns: the kept part starts with a user
    assert info.prompt_tokens is not None and info.prompt_tokens <= 512 - 8
    assert info.max_new_tokens == 8
    notice = f"{info.dropped_messages} earlier messages are outside the model's context"
    assert any(n.startswith(notice) for n in info.notices)
    assert info.settings is not None and info.settings.values["max_new_tokens"] == 8

    assert result.stats.error is None
    assert result.stats.new_tokens == 8  # it generates
    assert result.stats.prompt_tokens == info.prompt_tokens
    assert result.stats.dropped_messages == info.dropped_messages
    assert any(n.startswith(notice) for n in result.notices)
    assert "earlier messages left out" in result.stats.describe()

    prompt, again = engine.prepare_turn(
        messages, SYSTEM, greedy("max_new_tokens=8", "min_new_tokens=8")
    )
    assert again.dropped_messages == info.dropped_messages
    assert len(prompt.ids) == info.prompt_tokens
    assert prompt.text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")  # kept
    kept = messages[info.dropped_messages :]
    assert kept[0]["role"] == "user"
    assert f"<|im_start|>user\n{kept[0]['content']}<|im_end|>" in prompt.text
    assert messages[0]["content"] not in prompt.text  # the oldest turn is gone
    assert prompt.text.endswith(f"{messages[-1]['content']}<|im_end|>\n<|im_start|>assistant\n")
    # the fewest turns are dropped: one more turn would not have fitted
    one_more = engine.count_tokens(messages[info.dropped_messages - 2 :], SYSTEM)
    assert one_more > 512 - 8


def test_a_conversation_that_fits_drops_nothing(llama_engine, greedy) -> None:
    messages = [{"role": "user", "content": "Hello."}] * 1
    seen: list[TurnInfo] = []
    result = llama_engine.chat(
        ChatRequest(messages, settings=greedy("max_new_tokens=3")), on_start=seen.append
    )
    assert seen[0].dropped_messages == 0
    assert seen[0].notices == []
    assert seen[0].context_limit == 2048
    assert result.stats.dropped_messages == 0


def test_the_reply_room_is_kept_without_eating_the_whole_context(
    short_context_engine, greedy
) -> None:
    """The default max_new_tokens (1,024) is more than the 512-token context: the history
    is cut to leave at most half the context for the reply, and the reply is capped to
    what is left, without a notice (the user did not ask for 1,024)."""
    engine = short_context_engine
    messages = conversation(engine, 887)
    _prompt, info = engine.prepare_turn(messages, SYSTEM, greedy())
    assert info.prompt_tokens <= 256
    assert info.max_new_tokens == 512 - info.prompt_tokens
    assert not any("limited" in n for n in info.notices)

    _prompt, asked = engine.prepare_turn(messages, SYSTEM, greedy("max_new_tokens=400"))
    assert asked.max_new_tokens == 512 - asked.prompt_tokens < 400
    assert any(n.startswith("The reply is limited to") for n in asked.notices)


def test_a_last_message_longer_than_the_context_is_refused(short_context_engine, greedy) -> None:
    engine = short_context_engine
    huge = [
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": FILLER * 20},
    ]
    started: list[TurnInfo] = []
    with pytest.raises(ContextLengthError) as caught:
        engine.chat(
            ChatRequest(huge, system_prompt=SYSTEM, settings=greedy()), on_start=started.append
        )
    message = str(caught.value)
    assert "\n" not in message
    assert "512" in message and "shorten" in message
    assert started == []  # refused before the turn started
    # the engine is still usable
    assert (
        engine.chat(ChatRequest(huge[:1], settings=greedy("max_new_tokens=2"))).stats.new_tokens > 0
    )


def test_continuing_a_reply_keeps_it_and_its_question(short_context_engine, greedy) -> None:
    engine = short_context_engine
    messages = conversation(engine, 887)[:-1]  # ends with an assistant message
    prompt, info = engine.prepare_turn(messages, SYSTEM, greedy(), continue_final=True)
    assert info.dropped_messages > 0
    assert messages[info.dropped_messages]["role"] == "user"
    assert prompt.text.rstrip().endswith(messages[-1]["content"].rstrip())


def test_one_shot_shares_the_rule(short_context_dir, cli, tmp_path) -> None:
    """``--session`` one-shot runs: once the conversation outgrows the 512-token context
    the reply still comes, with the notice on stderr; a prompt longer than the context
    is one sentence and exit status 1."""

    def run(prompt: str):
        return cli(
            *("-m", str(short_context_dir), "--session", "long", "--prompt", prompt),
            *("do_sample=false", "max_new_tokens=4", "min_new_tokens=4"),
            env={"CHAT_TUI_DATA_DIR": str(tmp_path)},
        )

    notices = []
    for turn in range(3):  # about 190 tokens a turn: the third does not fit
        done = run(f"Part {turn}. " + FILLER * 6)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip()
        notices.append("earlier messages are outside the model's context" in done.stderr)
    assert notices == [False, False, True]

    done = run(FILLER * 20)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("chat-tui: ")
    assert "512" in lines[0] and "Traceback" not in done.stderr
