"""Generation settings: a validated overlay on the model's GenerationConfig.

Set with ``name=value`` strings, as ``transformers chat``'s ``set`` command does::

    temperature=0.7 top_p=0.9 max_new_tokens=256 do_sample=true

Common settings are typed and range-checked here; any other ``GenerationConfig``
attribute is accepted when its value parses (number, bool, JSON list) and the
resulting config validates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import SettingsError

DEFAULT_MAX_NEW_TOKENS = 1024


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _int(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if low is not None and number < low:
            raise ValueError(f"must be at least {low}")
        if high is not None and number > high:
            raise ValueError(f"must be at most {high}")
        return number

    return parse


def _float(
    low: float | None = None, high: float | None = None, low_open: bool = False
) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError("expected a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("expected a finite number")
        if low is not None and (number < low or (low_open and number == low)):
            raise ValueError(f"must be {'above' if low_open else 'at least'} {low}")
        if high is not None and number > high:
            raise ValueError(f"must be at most {high}")
        return number

    return parse


def _string_list(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        parsed = json.loads(value)
        if not isinstance(parsed, list) or not all(isinstance(s, str) for s in parsed):
            raise ValueError("expected a JSON list of strings")
        return parsed
    return [value.encode("latin-1", "backslashreplace").decode("unicode_escape")]


KNOWN: dict[str, tuple[Callable[[str], Any], str]] = {
    "max_new_tokens": (_int(1), "most tokens in one reply"),
    "min_new_tokens": (_int(0), "fewest tokens in one reply"),
    "do_sample": (_bool, "sample (true) or greedy/beam search (false)"),
    "temperature": (_float(0.0), "sampling temperature; 0 means greedy"),
    "top_p": (_float(0.0, 1.0, low_open=True), "nucleus sampling mass"),
    "top_k": (_int(0), "sample from the k most likely tokens (0 = off)"),
    "min_p": (_float(0.0, 1.0), "drop tokens below this share of the top probability"),
    "typical_p": (_float(0.0, 1.0, low_open=True), "locally typical sampling mass"),
    "repetition_penalty": (_float(0.0, low_open=True), "penalty for repeated tokens (1 = off)"),
    "no_repeat_ngram_size": (_int(0), "forbid repeating n-grams of this size"),
    "num_beams": (_int(1), "beam search width (1 = off)"),
    "seed": (_int(0, 2**32 - 1), "random seed for sampling (chat-tui setting)"),
    "stop_strings": (_string_list, "text that ends the reply, or a JSON list of them"),
    "prompt_lookup_num_tokens": (_int(1), "prompt-lookup speculative decoding window"),
}
OURS = {"seed"}
SAMPLING = ("temperature", "top_p", "top_k", "min_p", "typical_p")


def _parse_any(value: str) -> Any:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


@dataclass
class GenerationSettings:
    """The user's overlay. Empty means 'the model's own generation_config'."""

    values: dict[str, Any] = field(default_factory=dict)

    def set(self, assignment: str) -> tuple[str, Any]:
        """Apply one ``name=value``; raise :class:`SettingsError` and change nothing on error."""
        name, sep, raw = assignment.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise SettingsError(f"Expected name=value, got {assignment!r}.")
        value = parse_value(name, raw.strip())
        trial = dict(self.values, **{name: value})
        validate(trial)
        self.values = trial
        return name, value

    def update(self, assignments: Iterable[str]) -> None:
        trial = GenerationSettings(dict(self.values))
        for assignment in assignments:
            trial.set(assignment)
        self.values = trial.values

    def unset(self, name: str) -> None:
        self.values.pop(name, None)

    def reset(self) -> None:
        self.values.clear()

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(self.values.items())) or "(model defaults)"

    def generation_kwargs(self) -> dict[str, Any]:
        """The overlay as GenerationConfig fields, with chat-tui's own settings removed and
        the convenience rule that a temperature above 0 turns sampling on."""
        kwargs = {k: v for k, v in self.values.items() if k not in OURS}
        if "do_sample" not in kwargs and any(k in kwargs for k in SAMPLING):
            kwargs["do_sample"] = kwargs.get("temperature", 1.0) > 0
        if kwargs.get("temperature") == 0:
            kwargs.pop("temperature")
            kwargs["do_sample"] = False
        kwargs.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        return kwargs


def parse_value(name: str, raw: str) -> Any:
    if name in KNOWN:
        parser, _help = KNOWN[name]
        try:
            return parser(raw)
        except ValueError as exc:
            raise SettingsError(f"Invalid value {raw!r} for {name}: {exc}.") from None
    from transformers import GenerationConfig

    if not hasattr(GenerationConfig(), name) or name.startswith("_"):
        raise SettingsError(
            f"Unknown setting {name!r}; known ones include " + ", ".join(sorted(KNOWN)) + "."
        )
    return _parse_any(raw)


def validate(values: dict[str, Any]) -> None:
    """Build a GenerationConfig from the overlay and let transformers check it.

    Real errors (a negative max_new_tokens, an unknown cache type) are refused; "minor
    issues" such as ``length_penalty`` without beam search are accepted, since the user
    may be setting things one at a time, as with ``transformers chat``'s ``set``."""
    import warnings

    from transformers import GenerationConfig

    kwargs = GenerationSettings(values).generation_kwargs()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = GenerationConfig(**kwargs)
            config.validate(strict=False)
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise SettingsError(f"Invalid generation settings: {message}") from None
