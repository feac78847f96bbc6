"""GenerationSettings: typed ``name=value`` parsing, all-or-nothing validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tui.engine.errors import SettingsError
from tui.engine.settings import DEFAULT_MAX_NEW_TOKENS, GenerationSettings


@pytest.mark.parametrize(
    ("assignment", "name", "value"),
    [
        ("temperature=0.7", "temperature", 0.7),
        ("max_new_tokens=5", "max_new_tokens", 5),
        ("max-new-tokens=5", "max_new_tokens", 5),
        (" top_k = 40 ", "top_k", 40),
        ("do_sample=yes", "do_sample", True),
        ("do_sample=off", "do_sample", False),
        ("top_p=1", "top_p", 1.0),
        ("repetition_penalty=1.1", "repetition_penalty", 1.1),
        ("seed=42", "seed", 42),
        ("prompt_lookup_num_tokens=3", "prompt_lookup_num_tokens", 3),
    ],
)
def test_set_parses_typed_values(assignment: str, name: str, value: object) -> None:
    settings = GenerationSettings()
    assert settings.set(assignment) == (name, value)
    assert settings.values == {name: value}
    assert type(settings.values[name]) is type(value)


@pytest.mark.parametrize(
    "assignment",
    [
        "temperature=-1",
        "temperature=hot",
        "temperature=nan",
        "temperature=inf",
        "top_p=0",
        "top_p=1.5",
        "max_new_tokens=0",
        "max_new_tokens=2.5",
        "min_new_tokens=-1",
        "do_sample=maybe",
        "num_beams=0",
        "seed=-1",
        "repetition_penalty=0",
        "stop_strings=[1, 2]",
        "stop_strings=[unterminated",
        "no_such_setting=1",
        "_from_model_config=true",
        "temperature",
        "=0.5",
    ],
)
def test_invalid_assignments_raise_one_line_and_change_nothing(assignment: str) -> None:
    settings = GenerationSettings()
    settings.set("max_new_tokens=7")
    with pytest.raises(SettingsError) as caught:
        settings.set(assignment)
    message = str(caught.value)
    assert message.strip()
    assert "\n" not in message
    assert settings.values == {"max_new_tokens": 7}


def test_unknown_setting_message_names_it_and_the_known_ones() -> None:
    with pytest.raises(SettingsError) as caught:
        GenerationSettings().set("tempurature=0.5")
    assert "tempurature" in str(caught.value)
    assert "temperature" in str(caught.value)


def test_invalid_value_message_names_setting_and_value() -> None:
    with pytest.raises(SettingsError) as caught:
        GenerationSettings().set("top_p=1.5")
    assert "top_p" in str(caught.value)
    assert "1.5" in str(caught.value)


@pytest.mark.parametrize(
    ("assignments", "named"),
    [
        (["num_beams=2", "num_return_sequences=3"], "num_return_sequences"),
        (["cache_implementation=bogus"], "cache_implementation"),
        (["early_stopping=maybe"], "early_stopping"),
    ],
)
def test_invalid_combinations_are_refused_with_the_reason(
    assignments: list[str], named: str
) -> None:
    settings = GenerationSettings()
    with pytest.raises(SettingsError) as caught:
        settings.update(assignments)
    assert named in str(caught.value)
    assert "\n" not in str(caught.value)
    assert settings.values == {}


def test_temperature_without_sampling_is_accepted_or_refused_with_the_reason() -> None:
    """``do_sample=false`` then ``temperature=0.7``: transformers calls the pair invalid
    (temperature only matters when sampling). Accepting it is fine; refusing it is fine
    too, but then the sentence must say what is wrong (README: 'a bad one is refused
    with the reason'), not end at 'GenerationConfig is invalid:'."""
    settings = GenerationSettings()
    settings.set("do_sample=false")
    try:
        settings.set("temperature=0.7")
    except SettingsError as exc:
        message = str(exc)
        assert "\n" not in message
        assert "temperature" in message
        assert settings.values == {"do_sample": False}
    else:
        assert settings.values == {"do_sample": False, "temperature": 0.7}


def test_temperature_zero_means_greedy() -> None:
    settings = GenerationSettings()
    settings.update(["temperature=0", "top_k=50"])
    kwargs = settings.generation_kwargs()
    assert kwargs["do_sample"] is False
    assert "temperature" not in kwargs
    settings.set("do_sample=true")
    assert settings.generation_kwargs()["do_sample"] is False


def test_sampling_setting_alone_turns_sampling_on() -> None:
    settings = GenerationSettings()
    settings.set("top_p=0.9")
    assert settings.generation_kwargs()["do_sample"] is True
    settings = GenerationSettings()
    settings.set("temperature=0.8")
    assert settings.generation_kwargs()["do_sample"] is True


def test_the_overlay_holds_only_what_the_user_set() -> None:
    """Nothing the user did not ask for: the model's own generation_config fills the rest
    (no max_new_tokens here to override a model that sets its own)."""
    settings = GenerationSettings()
    assert settings.generation_kwargs() == {}
    settings.set("do_sample=false")
    assert settings.generation_kwargs() == {"do_sample": False}


def test_seed_is_ours_and_not_passed_to_generate() -> None:
    settings = GenerationSettings()
    settings.set("seed=3")
    assert "seed" not in settings.generation_kwargs()
    assert settings.values["seed"] == 3


def test_update_is_all_or_nothing() -> None:
    settings = GenerationSettings()
    settings.set("max_new_tokens=9")
    with pytest.raises(SettingsError):
        settings.update(["temperature=0.5", "top_k=10", "top_p=2"])
    assert settings.values == {"max_new_tokens": 9}
    settings.update(["temperature=0.5", "top_k=10"])
    assert settings.values == {"max_new_tokens": 9, "temperature": 0.5, "top_k": 10}


def test_generation_config_field_outside_known_is_accepted() -> None:
    """README: '... and any other GenerationConfig field'."""
    settings = GenerationSettings()
    assert settings.set("length_penalty=1.2") == ("length_penalty", 1.2)
    assert settings.generation_kwargs()["length_penalty"] == 1.2


def test_generation_config_field_outside_known_with_beams() -> None:
    settings = GenerationSettings()
    settings.update(["num_beams=2", "length_penalty=1.2", "renormalize_logits=true"])
    assert settings.values == {"num_beams": 2, "length_penalty": 1.2, "renormalize_logits": True}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("###", ["###"]),
        ("</answer>", ["</answer>"]),
        ("\\n\\n", ["\n\n"]),
        ('["a", "b c"]', ["a", "b c"]),
        ('["\\nUser:"]', ["\nUser:"]),
        ("。", ["。"]),
        ("Ende.", ["Ende."]),
        ("«fin»", ["«fin»"]),
    ],
)
def test_stop_strings_parsing(raw: str, expected: list[str]) -> None:
    settings = GenerationSettings()
    settings.set(f"stop_strings={raw}")
    assert settings.values["stop_strings"] == expected


@hypothesis_settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=12))
def test_any_plain_stop_string_round_trips(text: str) -> None:
    """A stop string without backslashes or a leading '[' is taken literally."""
    settings = GenerationSettings()
    raw = text.lstrip("[").replace("\\", "")
    if not raw.strip():
        raw = "x"
    settings.set(f"stop_strings={raw}")
    assert settings.values["stop_strings"] == [raw.strip()]


def test_unset_reset_and_describe() -> None:
    settings = GenerationSettings()
    assert settings.describe() == "(model defaults)"
    settings.update(["top_k=5", "max_new_tokens=3"])
    assert settings.describe() == "max_new_tokens=3 top_k=5"
    settings.unset("top_k")
    settings.unset("not-set")
    assert settings.values == {"max_new_tokens": 3}
    settings.reset()
    assert settings.values == {}


CARD = {"do_sample": True, "temperature": 0.2, "top_p": 0.9, "bos_token_id": 1}


def test_effective_settings_are_the_model_defaults_when_the_user_sets_nothing() -> None:
    effective = GenerationSettings().effective(CARD)
    assert effective.values["do_sample"] is True
    assert effective.values["temperature"] == 0.2
    assert effective.values["top_p"] == 0.9
    assert effective.sources["temperature"] == "model"
    assert effective.values["top_k"] == 50  # transformers' own default
    assert effective.sources["top_k"] == "transformers"
    assert effective.values["max_new_tokens"] == DEFAULT_MAX_NEW_TOKENS
    assert effective.sources["max_new_tokens"] == "chat-tui"
    assert "bos_token_id" not in effective.values
    # only our fallback goes to generate on top of the model's config
    assert effective.kwargs == {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS}
    assert effective.describe() == (
        "sampling: temperature=0.2 top_p=0.9 (model) max_new_tokens=1024 (chat-tui) "
        "top_k=50 (transformers)"
    )


def test_user_settings_override_the_model_defaults() -> None:
    settings = GenerationSettings()
    settings.update(["temperature=0.7", "max_new_tokens=64", "seed=3"])
    effective = settings.effective(CARD)
    assert effective.values["temperature"] == 0.7
    assert effective.sources["temperature"] == "user"
    assert effective.values["top_p"] == 0.9
    assert effective.sources["top_p"] == "model"
    assert effective.values["max_new_tokens"] == 64
    assert effective.seed == 3
    assert effective.kwargs == {"temperature": 0.7, "do_sample": True, "max_new_tokens": 64}
    assert effective.describe() == (
        "sampling: temperature=0.7 max_new_tokens=64 seed=3 (user) top_p=0.9 (model) "
        "top_k=50 (transformers)"
    )


def test_greedy_by_the_user_wins_over_a_sampling_model() -> None:
    settings = GenerationSettings()
    settings.set("temperature=0")
    effective = settings.effective(CARD)
    assert effective.values["do_sample"] is False
    assert effective.sources["do_sample"] == "user"
    assert not effective.sampling
    # temperature and top_p are unused when greedy: not shown
    assert effective.describe() == "greedy: max_new_tokens=1024 (chat-tui)"


def test_a_model_that_sets_max_new_tokens_keeps_it() -> None:
    effective = GenerationSettings().effective({"max_new_tokens": 77})
    assert effective.values["max_new_tokens"] == 77
    assert effective.sources["max_new_tokens"] == "model"
    assert "max_new_tokens" not in effective.kwargs


def test_no_model_config_means_the_library_defaults() -> None:
    effective = GenerationSettings().effective(None)
    assert effective.values["do_sample"] is False
    assert effective.sources["do_sample"] == "transformers"
    assert effective.describe() == "greedy: max_new_tokens=1024 (chat-tui)"
