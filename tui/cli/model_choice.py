"""Which model chat-tui starts with: the options given on the command line, over the
user's config.toml, over what the app remembers, over the bundled default."""

from __future__ import annotations

import argparse

from .parser import UsageError


def spec_overrides(ns: argparse.Namespace, model: str | None) -> dict[str, object]:
    """The ModelSpec fields given on the command line (and only those)."""
    if ns.model and model and ns.model != model:
        raise UsageError(f"Two models given ({model!r} and --model {ns.model!r}); pass one.")
    given: dict[str, object] = {}
    if ns.model or model:
        given["source"] = ns.model or model
    if ns.load_in_8bit or ns.load_in_4bit:
        given["quantization"] = "8bit" if ns.load_in_8bit else "4bit"
    elif ns.dtype is not None:
        given["quantization"] = "none"  # --dtype alone means an unquantized model
    for field, value in (
        ("revision", ns.revision),
        ("dtype", ns.dtype),
        ("bnb_4bit_quant_type", ns.bnb_4bit_quant_type),
        ("bnb_4bit_compute_dtype", ns.bnb_4bit_compute_dtype),
        ("device", ns.device),
        ("attn_implementation", ns.attn_implementation),
        ("chat_template_file", ns.chat_template),
    ):
        if value is not None:
            given[field] = value
    if ns.bnb_4bit_double_quant:
        given["bnb_4bit_use_double_quant"] = True
    if ns.trust_remote_code:
        given["trust_remote_code"] = True
    return given


def choose_spec(
    given: dict[str, object],
    configured: dict[str, object] | None = None,
    remembered: dict[str, object] | None = None,
):  # -> ModelSpec
    """The one place that decides which model to start with.

    A model named on the command line starts from chat-tui's defaults; otherwise from
    the user's ``[model]`` in config.toml, else (in the app) the last model loaded, else
    the bundled default. Every option given on the command line then wins."""
    from ..engine.errors import EngineError
    from ..engine.spec import DEFAULT_MODEL, ModelSpec
    from ..engine.trust import from_file

    base = ModelSpec()
    if "source" not in given:
        for candidate, what in ((configured, "config.toml's [model]"), (remembered, "state.toml")):
            if candidate:
                try:
                    # a file describes a model; it never allows its code to run (only
                    # --trust-remote-code does), and state.toml names no template file
                    recorded = from_file({"source": DEFAULT_MODEL, **candidate}, what=what)
                    base = recorded.spec
                    if candidate is configured and isinstance(
                        candidate.get("chat_template_file"), str
                    ):
                        base = base.with_changes(chat_template_file=candidate["chat_template_file"])
                    break
                except (EngineError, TypeError, ValueError):
                    continue  # a bad remembered spec must not stop chat-tui
    return base.with_changes(**given)
