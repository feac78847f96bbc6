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


def _choice(value: str, choices: tuple[str, ...]) -> str:
    lowered = value.strip().lower()
    if lowered not in choices:
        raise ValueError("expected " + " or ".join(choices))
    return lowered


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

# Chat-template switches: passed to apply_chat_template (and to a server as
# ``chat_template_kwargs``), never to generate. Any other template keyword argument is
# ``template.NAME=value``.
TEMPLATE_KNOWN: dict[str, tuple[Callable[[str], Any], str]] = {
    "enable_thinking": (_bool, "let a reasoning model think before it answers (chat template)"),
    "reasoning_effort": (
        lambda v: _choice(v, ("low", "medium", "high")),
        "how long gpt-oss-style models reason: low, medium or high (chat template)",
    ),
}
TEMPLATE_PREFIX = "template."


def is_template_kwarg(name: str) -> bool:
    """A chat-template keyword argument rather than a generation setting."""
    return name in TEMPLATE_KNOWN or name.startswith(TEMPLATE_PREFIX)


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
        """The overlay as GenerationConfig fields: only what the user set, with chat-tui's
        own settings removed and two convenience rules (a sampling setting such as
        ``top_p`` turns sampling on; ``temperature=0`` means greedy). Everything else
        comes from the model's own generation_config; see :func:`effective`."""
        kwargs = {
            k: v for k, v in self.values.items() if k not in OURS and not is_template_kwarg(k)
        }
        if "do_sample" not in kwargs and any(k in kwargs for k in SAMPLING):
            kwargs["do_sample"] = kwargs.get("temperature", 1.0) > 0
        if kwargs.get("temperature") == 0:
            kwargs.pop("temperature")
            kwargs["do_sample"] = False
        return kwargs

    def template_kwargs(self) -> dict[str, Any]:
        """The chat-template keyword arguments set (``enable_thinking=False``...), by the
        name the template reads."""
        return {
            (k[len(TEMPLATE_PREFIX) :] if k.startswith(TEMPLATE_PREFIX) else k): v
            for k, v in self.values.items()
            if is_template_kwarg(k) and v is not None
        }

    def effective(self, model_config: Any = None) -> EffectiveSettings:
        """What a turn will use: the model's defaults overlaid with these settings."""
        return effective(model_config, self)


# What transformers uses when neither the model nor the user sets a field (its
# ``GenerationConfig._get_default_generation_params``), for the fields shown to users.
LIBRARY_DEFAULTS: dict[str, Any] = {
    "do_sample": False,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 50,
    "min_p": None,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "num_beams": 1,
}
# Values that switch a setting off: not worth showing.
OFF: dict[str, Any] = {
    "top_p": 1.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "num_beams": 1,
}
SHOWN = (
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "typical_p",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "num_beams",
    "max_new_tokens",
)
SOURCE_USER = "user"
SOURCE_MODEL = "model"
SOURCE_CHAT_TUI = "chat-tui"
SOURCE_LIBRARY = "transformers"


@dataclass(frozen=True)
class EffectiveSettings:
    """The settings a turn uses, and where each came from.

    ``values`` holds every field in :data:`SHOWN` plus anything else the model or the
    user set; ``sources`` names the origin of each: ``"user"`` (the overlay),
    ``"model"`` (its generation_config.json), ``"chat-tui"`` (our fallback for
    ``max_new_tokens``, since transformers' own default of ``max_length=20`` is no
    length for a chat reply) or ``"transformers"`` (the library's default).
    ``kwargs`` is what to hand to ``generate`` on top of the model's own config.
    """

    values: dict[str, Any]
    sources: dict[str, str]
    kwargs: dict[str, Any]
    seed: int | None = None

    @property
    def sampling(self) -> bool:
        return bool(self.values.get("do_sample")) and (self.values.get("num_beams") or 1) == 1

    def describe(self) -> str:
        """One line, e.g. ``sampling: temperature=0.2 top_p=0.9 (model)
        max_new_tokens=1024 (chat-tui) top_k=50 (transformers)``. Settings that do not
        apply (temperature when greedy) and ones that are off (``repetition_penalty=1``)
        are left out."""
        skip = {"do_sample"} | (set() if self.values.get("do_sample") else set(SAMPLING))
        groups: dict[str, list[str]] = {}
        for name, value in self.values.items():
            if name in skip or value is None or OFF.get(name, object()) == value:
                continue
            groups.setdefault(self.sources.get(name, SOURCE_LIBRARY), []).append(
                f"{name}={_show(value)}"
            )
        if self.seed is not None:
            groups.setdefault(SOURCE_USER, []).append(f"seed={self.seed}")
        mode = "sampling" if self.values.get("do_sample") else "greedy"
        if (self.values.get("num_beams") or 1) > 1:
            mode = "beam search"
        parts = [mode + ":"]
        for source in (SOURCE_USER, SOURCE_MODEL, SOURCE_CHAT_TUI, SOURCE_LIBRARY):
            if groups.get(source):
                parts.append(" ".join(groups[source]) + f" ({source})")
        return " ".join(parts)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), ensure_ascii=False)
    return str(value)


def _model_values(model_config: Any) -> dict[str, Any]:
    if model_config is None:
        return {}
    if isinstance(model_config, dict):
        raw = model_config
    elif hasattr(model_config, "to_diff_dict"):
        raw = model_config.to_diff_dict()
    else:
        raw = model_config.to_dict()
    skip = {"transformers_version", "bos_token_id", "eos_token_id", "pad_token_id"}
    return {
        k: v for k, v in raw.items() if v is not None and not k.startswith("_") and k not in skip
    }


def effective(model_config: Any, settings: GenerationSettings | None = None) -> EffectiveSettings:
    """The settings a turn uses: transformers' defaults, overlaid with the model's own
    ``generation_config`` (a ``GenerationConfig`` or dict; ``None`` for none), overlaid
    with the user's ``settings``, as ``transformers chat`` and ``generate`` layer them.

    The one value chat-tui adds itself is ``max_new_tokens`` (:data:`DEFAULT_MAX_NEW_TOKENS`)
    when neither the model nor the user gives one."""
    user = settings.generation_kwargs() if settings is not None else {}
    model = _model_values(model_config)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in SHOWN:
        if name in LIBRARY_DEFAULTS:
            values[name], sources[name] = LIBRARY_DEFAULTS[name], SOURCE_LIBRARY
    kwargs = dict(user)
    if "max_new_tokens" not in model and "max_new_tokens" not in user:
        values["max_new_tokens"], sources["max_new_tokens"] = (
            DEFAULT_MAX_NEW_TOKENS,
            SOURCE_CHAT_TUI,
        )
        kwargs["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
    for name, value in model.items():
        if name in SHOWN or name in user:
            values[name], sources[name] = value, SOURCE_MODEL
    for name, value in user.items():
        values[name], sources[name] = value, SOURCE_USER
    seed = settings.values.get("seed") if settings is not None else None
    return EffectiveSettings(values=values, sources=sources, kwargs=kwargs, seed=seed)


def parse_value(name: str, raw: str) -> Any:
    if name.startswith(TEMPLATE_PREFIX):
        from .chat_format import OWN_PARAMETERS

        bare = name[len(TEMPLATE_PREFIX) :]
        if not bare.isidentifier() or bare in OWN_PARAMETERS:
            raise SettingsError(
                f"{name!r}: a chat-template argument is template.NAME=value, NAME a word the "
                "template reads (not one of apply_chat_template's own parameters)."
            )
        return _parse_any(raw)
    known = KNOWN.get(name) or TEMPLATE_KNOWN.get(name)
    if known is not None:
        parser, _help = known
        try:
            return parser(raw)
        except ValueError as exc:
            raise SettingsError(f"Invalid value {raw!r} for {name}: {exc}.") from None
    from . import libs

    if not hasattr(libs.generation_config_class()(), name) or name.startswith("_"):
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

    from . import libs

    generation_config = libs.generation_config_class()
    kwargs = GenerationSettings(values).generation_kwargs()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = generation_config(**kwargs)
            config.validate(strict=False)
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise SettingsError(f"Invalid generation settings: {message}") from None
