"""Chat templates: the model's, the fallback transcript, folding the system prompt, and
an override file."""

from __future__ import annotations

import pytest

from tui.engine import ChatRequest, LocalEngine, ModelSpec, chat_format, loader
from tui.engine.chat_format import (
    FALLBACK_NOTICE,
    FALLBACK_STOP_STRINGS,
    FOLDED_SYSTEM_NOTICE,
    build_prompt,
    fold_system,
)
from tui.engine.errors import TemplateError

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def base_engine(base_model_dir) -> LocalEngine:
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(base_model_dir)))
    return engine


def test_model_template_is_used(llama_engine) -> None:
    prompt = llama_engine.build_prompt(HI, system_prompt="Be brief.")
    assert prompt.text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert prompt.notices == []
    assert prompt.stop_strings == ()
    assert not prompt.uses_fallback
    tokenizer = llama_engine.loaded.tokenizer
    assert prompt.ids == tokenizer(prompt.text, add_special_tokens=False)["input_ids"]
    assert llama_engine.count_tokens(HI, "Be brief.") == len(prompt.ids)


def test_fallback_template_without_chat_template(base_engine) -> None:
    assert base_engine.loaded.tokenizer.chat_template is None
    conversation = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you?"},
    ]
    prompt = base_engine.build_prompt(conversation, system_prompt="Be brief.")
    assert prompt.uses_fallback
    assert FALLBACK_NOTICE in prompt.notices
    assert prompt.stop_strings == FALLBACK_STOP_STRINGS == ("\nUser:",)
    assert prompt.text.endswith(
        "Be brief.\n\nUser: hi\nAssistant: hello\nUser: how are you?\nAssistant:"
    )
    assert prompt.text.count("User:") == 2


def test_generation_on_the_fallback_template_stops(base_engine, greedy) -> None:
    result = base_engine.chat(ChatRequest(HI, settings=greedy("max_new_tokens=10")))
    assert result.stats.stop_reason in {"eos", "length"}
    assert result.stats.new_tokens > 0
    assert "\nUser:" not in result.text
    assert FALLBACK_NOTICE in result.notices


@pytest.fixture(scope="module")
def bigram_engine(bigram_dir) -> LocalEngine:
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(bigram_dir)))
    return engine


def test_fallback_stop_string_ends_the_reply(bigram_engine, greedy) -> None:
    """The bigram model answers ' Paris' then writes '\\nUser:'; the reply ends there."""
    result = bigram_engine.chat(
        ChatRequest(
            [{"role": "user", "content": "What is the capital of France?"}],
            settings=greedy("max_new_tokens=20"),
        )
    )
    assert result.text == " Paris"
    assert result.stats.stop_reason == "eos"
    assert result.stats.new_tokens == 4  # ' Paris', '\n', 'User', ':'


def test_fallback_stop_string_is_not_streamed(bigram_engine, greedy) -> None:
    """What a user watched stream in must be the reply that is kept: the stop string
    '\\nUser:' is not part of the reply, so it must not reach ``on_text`` either."""
    chunks: list[str] = []
    result = bigram_engine.chat(
        ChatRequest(
            [{"role": "user", "content": "What is the capital of France?"}],
            settings=greedy("max_new_tokens=20"),
        ),
        on_text=chunks.append,
    )
    assert result.text == " Paris"
    assert "User:" not in "".join(chunks)
    assert "".join(chunks) == result.text


def test_system_prompt_folds_into_first_user_message(no_system_dir, greedy) -> None:
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(no_system_dir)))
    conversation = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ]
    prompt = engine.build_prompt(conversation, system_prompt="Be brief.")
    assert FOLDED_SYSTEM_NOTICE in prompt.notices
    assert prompt.text == (
        "<start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n"
        "<start_of_turn>assistant\nhello<end_of_turn>\n"
        "<start_of_turn>user\nagain<end_of_turn>\n"
        "<start_of_turn>assistant\n"
    )
    assert not prompt.uses_fallback

    plain = engine.build_prompt(conversation)
    assert plain.notices == []
    assert "Be brief." not in plain.text

    result = engine.chat(
        ChatRequest(HI, system_prompt="Be brief.", settings=greedy("max_new_tokens=2"))
    )
    assert FOLDED_SYSTEM_NOTICE in result.notices
    assert result.stats.new_tokens > 0


def test_fold_system_without_a_user_message() -> None:
    assert fold_system([{"role": "system", "content": "S"}]) == [{"role": "user", "content": "S"}]
    assert fold_system(list(HI)) == HI


def test_a_template_that_fails_without_a_system_message_is_a_template_error(tokenizer) -> None:
    broken = "{{ raise_exception('nope') }}"
    with pytest.raises(TemplateError) as caught:
        build_prompt(tokenizer, HI, template_override=broken)
    assert "\n" not in str(caught.value)
    assert "nope" in str(caught.value)
    with pytest.raises(TemplateError):
        build_prompt(tokenizer, HI, system_prompt="S", template_override=broken)


def test_chat_template_file_overrides_the_model_template(tiny_llama_dir, tmp_path, greedy) -> None:
    template = tmp_path / "template.jinja"
    template.write_text(
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}",
        encoding="utf-8",
    )
    engine = LocalEngine()
    loaded = engine.load(ModelSpec(source=str(tiny_llama_dir), chat_template_file=str(template)))
    assert loaded.chat_template == template.read_text(encoding="utf-8")
    prompt = engine.build_prompt(HI, system_prompt="Be brief.")
    assert prompt.text == "[system] Be brief.\n[user] hi\n[assistant]"
    assert prompt.notices == []
    result = engine.chat(ChatRequest(HI, settings=greedy("max_new_tokens=2")))
    assert result.stats.prompt_tokens == len(engine.build_prompt(HI).ids)


def test_chat_template_file_replaces_the_fallback_too(base_model_dir, tmp_path) -> None:
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}<{{ m['content'] }}>{% endfor %}")
    loaded = loader.load(ModelSpec(source=str(base_model_dir), chat_template_file=str(template)))
    prompt = chat_format.build_prompt(loaded.tokenizer, HI, None, loaded.chat_template)
    assert prompt.text == "<hi>"
    assert not prompt.uses_fallback
    assert prompt.stop_strings == ()


def test_missing_chat_template_file_is_a_template_error(tiny_llama_dir, tmp_path) -> None:
    with pytest.raises(TemplateError) as caught:
        LocalEngine().load(
            ModelSpec(source=str(tiny_llama_dir), chat_template_file=str(tmp_path / "no.jinja"))
        )
    assert "no.jinja" in str(caught.value)
    assert "\n" not in str(caught.value)
