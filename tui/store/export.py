"""Export to Markdown and JSON; import our JSON and ``transformers chat`` histories.

The JSON export is the OpenAI chat ``messages`` list (role/content, so it can be sent
to any chat-completions API as is; a reply's reasoning as ``reasoning_content``, the
field chat templates and vLLM, llama.cpp and ``transformers serve`` read) plus
chat-tui's metadata under ``chat_tui``. It is
lossless, yet carries no raw control characters: every C0/C1 control, DEL, bidi
override and lone surrogate is written as a ``\\uXXXX`` escape. The Markdown export
is for reading: escape sequences and controls are stripped.

Imports raise only :class:`StoreError`, one sentence, for any file.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import safe_text
from . import codec
from .atomic import ReadRefused, atomic_write, ensure_dir, read_bounded
from .errors import (
    CorruptSessionError,
    DiskError,
    StoreError,
    describe_os_error,
    disk_errors,
    label,
    short,
)
from .model import ChatMessage, Conversation, DuplicateIdError, make_title, new_id, now, unique_ids

FORMATS = ("md", "json")
REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")  # as transformers reads them
MAX_IMPORT_BYTES = 64 * 1024 * 1024

# -- export ----------------------------------------------------------------------------


def to_markdown(conv: Conversation) -> str:
    lines = [f"# {conv.title}", ""]
    meta = [f"- Created: {conv.created.isoformat()}", f"- Updated: {conv.updated.isoformat()}"]
    if conv.model_name:
        meta.append(f"- Model: {conv.model_name}")
    lines += meta + [""]
    if conv.system_prompt:
        lines += ["## System", "", conv.system_prompt, ""]
    for m in conv.transcript:
        heading = {"user": "User", "assistant": "Assistant", "system": "System"}.get(m.role, "?")
        if m.label:
            heading += f" ({safe_text.one_line(m.label)})"
        lines += [f"## {heading}", ""]
        if m.role == "assistant" and m.reasoning:
            lines += _thought(m)
        lines += [m.content, ""]
        if m.role == "assistant" and m.stop_reason in ("stopped", "interrupted", "error"):
            lines += [f"*({m.stop_reason})*", ""]
        if m.provenance:
            lines += [made_with(m.provenance), ""]
    return safe_text.clean("\n".join(lines).rstrip() + "\n")


def thought_summary(m: ChatMessage) -> str:
    """``Thought for 12 s · 340 tokens`` (as far as the reply says)."""
    parts = ["Thought"]
    if m.reasoning_seconds is not None and math.isfinite(m.reasoning_seconds):
        parts[0] += f" for {m.reasoning_seconds:.0f} s"
    if m.reasoning_tokens:
        parts.append(f"{m.reasoning_tokens} token{'' if m.reasoning_tokens == 1 else 's'}")
    return " · ".join(parts)


def _thought(m: ChatMessage) -> list[str]:
    """A reply's reasoning, folded (an HTML ``<details>`` block; its text escaped, so
    it cannot close the block or add markup)."""
    text = html.escape(m.reasoning or "", quote=False)
    return [f"<details><summary>{thought_summary(m)}</summary>", "", text, "", "</details>", ""]


def made_with(provenance: dict[str, Any]) -> str:
    """A reply's snapshot in Markdown: a collapsible block whose summary line names the
    model, precision, device, decoding, seed and versions, and whose body lists every
    stored value (``- settings.temperature: 0.9``), so the export holds all of it."""
    lines = ["Made with: " + _summary(provenance), ""]
    for key, value in provenance.items():
        if isinstance(value, dict):
            for inner, leaf in value.items():
                lines.append(f"- {key}.{inner}: {_shown(leaf)}")
        else:
            lines.append(f"- {key}: {_shown(value)}")
    # inside HTML tags: the values' own < > & are escaped so they stay text
    body = [html.escape(safe_text.one_line(line), quote=False) for line in lines]
    return "\n".join(["<details><summary>", *body[:1], "</summary>", *body[1:], "", "</details>"])


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return "?"


def _summary(provenance: dict[str, Any]) -> str:
    """Model · precision · device · decoding · seed · versions (values checked: the
    table came from a file)."""
    parts: list[str] = []

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    def table(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    if text(provenance.get("model")):
        parts.append(provenance["model"])
    quant = table(provenance.get("quantization"))
    if quant.get("method") in ("8bit", "4bit"):
        kind = quant.get("quant_type") if quant.get("method") == "4bit" else None
        parts.append(quant["method"] + (f" {kind}" if text(kind) else ""))
    elif text(provenance.get("dtype")):
        parts.append(provenance["dtype"])
    if text(provenance.get("device")):
        parts.append(provenance["device"])
    settings = table(provenance.get("settings"))
    if settings:
        parts.append("sampling" if settings.get("do_sample") is True else "greedy")
    seed = provenance.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        parts.append(f"seed {seed}")
    versions = table(provenance.get("versions"))
    for name in ("torch", "transformers"):
        if text(versions.get(name)):
            parts.append(f"{name} {versions[name]}")
    return " · ".join(parts) or "(no details)"


# JSON leaves these raw with ensure_ascii=False; C0 controls it escapes itself
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape_unsafe(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


_ENCODER = json.JSONEncoder(ensure_ascii=False)


def _layout(value: Any, depth: int = 0) -> str:
    """Readable JSON that the C encoder writes fast: objects opened up to two levels,
    lists of objects one item per line (``indent=`` would use the slow Python encoder,
    seconds for a long conversation)."""
    pad, close = "  " * (depth + 1), "  " * depth
    if isinstance(value, dict) and value and depth < 2:
        items = [
            f"{pad}{_ENCODER.encode(key)}: {_layout(item, depth + 1)}"
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + close + "}"
    if isinstance(value, list) and value and depth < 3 and all(isinstance(v, dict) for v in value):
        items = [pad + _ENCODER.encode(item) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + close + "]"
    return _ENCODER.encode(value)


def json_text(value: Any) -> str:
    """JSON that reads back exactly and holds no raw control characters, bidi overrides
    or lone surrogates (they are ``\\uXXXX`` escapes); other text stays readable."""
    text = _layout(value)
    # outside strings JSON is plain ASCII, so these can only be inside strings
    return _JSON_UNSAFE.sub(_escape_unsafe, text) if _JSON_UNSAFE.search(text) else text


def to_json(conv: Conversation) -> str:
    messages: list[dict[str, Any]] = []
    if conv.system_prompt:
        messages.append({"role": "system", "content": conv.system_prompt})
    messages += [m.as_chat() for m in conv.transcript]
    document = codec.to_document(conv, escape=False)
    for key in ("created", "updated"):
        document[key] = document[key].isoformat()
    for m in document["messages"]:
        m["time"] = m["time"].isoformat()
    # JSON has no NaN or infinity: wherever a file held one (a stat, a setting, an
    # unknown field), it is left out
    return json_text({"messages": messages, "chat_tui": _finite(document)})


def _finite(value: Any) -> Any:
    """``value`` without NaN or infinite floats (JSON has none): dropped from tables,
    written as null in lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        out = {k: _finite(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def export(conv: Conversation, fmt: str) -> str:
    if fmt == "md":
        return to_markdown(conv)
    if fmt == "json":
        return to_json(conv)
    raise StoreError(f"Unknown export format {fmt!r}; choose md or json.")


def readable_stem(conv: Conversation, limit: int = 60) -> str:
    """A file name (without extension) after the conversation: its name or title in
    letters, digits and dashes, in any script (``trip-to-lisbon``)."""
    words = re.sub(r"[^\w]+", "-", conv.name or conv.title, flags=re.UNICODE).strip("-_")
    return words[:limit].rstrip("-_") or conv.id


def export_to_folder(
    conv: Conversation,
    folder: str | Path,
    formats: Iterable[str] = FORMATS,
    stem: str | None = None,
) -> list[Path]:
    """Write ``conv`` into ``folder`` (created 0700 if missing) as ``STEM.md`` and/or
    ``STEM.json``, atomically; ``stem`` defaults to the conversation's id. A file that
    exists is never overwritten: ``STEM-2.md`` and so on. Returns the paths; raises
    :class:`DiskError` (one sentence: what, where, why) or :class:`StoreError` for an
    unknown format."""
    folder = Path(folder)
    formats = list(formats)
    texts = [(fmt, export(conv, fmt)) for fmt in formats]
    base = stem or conv.id
    paths: list[Path] = []
    with disk_errors(f"export '{label(conv.title)}' to", folder):
        ensure_dir(folder)
        name, n = base, 1
        while any((folder / f"{name}.{fmt}").exists() for fmt in formats):
            n += 1
            name = f"{base}-{n}"
        for fmt, text in texts:
            path = folder / f"{name}.{fmt}"
            atomic_write(path, text)
            paths.append(path)
    return paths


# -- import ----------------------------------------------------------------------------

# chat-tui's own settings; everything else it keeps is a GenerationConfig field
OWN_SETTINGS = {"seed"}
# GenerationConfig fields that only shape the output object or are bookkeeping: never
# generation settings chat-tui should carry over
_NOT_SETTINGS = {
    "transformers_version",
    "output_attentions",
    "output_hidden_states",
    "output_scores",
    "output_logits",
    "return_dict_in_generate",
    "num_return_sequences",
    "generation_kwargs",
    "watermarking_config",
    "compile_config",
    "cache_config",
    "continuous_batching_config",
    "is_assistant",
    "pad_token_id",
    "bos_token_id",
    "decoder_start_token_id",
}
# Values transformers 4.x wrote for fields nobody set (GenerationConfig() defaults that
# do not change generation); transformers 5 writes null for unset fields instead.
_UNCHOSEN = {
    "max_length": 20,
    "min_length": 0,
    "early_stopping": False,
    "use_cache": True,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "encoder_repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "token_healing": False,
    "num_assistant_tokens": 20,
    "num_assistant_tokens_schedule": "constant",
    "assistant_confidence_threshold": 0.4,
    "assistant_lookbehind": 10,
    "target_lookbehind": 10,
    "return_legacy_cache": True,
    "disable_compile": False,
}
# Generation settings in the flat ``settings`` of transformers 4.4x ``chat`` files
_OLD_FLAT = (
    "max_new_tokens",
    "do_sample",
    "num_beams",
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
)
_SETTING_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _setting_value(value: Any) -> Any:
    """A value chat-tui can keep as a setting (flat: a scalar or a list of scalars),
    or None."""
    scalar = (bool, int, float, str)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, scalar):
        return value
    if isinstance(value, list) and value and all(isinstance(v, scalar) for v in value):
        return value
    return None


def _keep_settings(config: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for name, raw in config.items():
        if not isinstance(name, str) or not _SETTING_NAME.fullmatch(name):
            continue
        if name in _NOT_SETTINGS or (name in _UNCHOSEN and raw == _UNCHOSEN[name]):
            continue
        value = _setting_value(raw)
        if value is not None:
            kept[name] = value
    return kept


def _parse_flag(raw: str) -> Any:
    """A ``generate_flags`` value as ``transformers chat`` reads it."""
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


def transformers_chat_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The generation settings a ``transformers chat`` history file records, as far as
    chat-tui understands them (GenerationConfig fields, flat values).

    Three layouts exist: ``settings.config`` (a full ``GenerationConfig.to_dict()``,
    transformers 4.5x and later), ``settings.generate_flags`` (``name=value`` strings)
    and flat fields beside the other command-line arguments (4.4x)."""
    kept: dict[str, Any] = {}
    for name in _OLD_FLAT:
        if name in settings:
            value = _setting_value(settings[name])
            if value is not None:
                kept[name] = value
    eos_tokens = settings.get("eos_tokens")
    if isinstance(eos_tokens, str) and eos_tokens:
        kept["stop_strings"] = [t for t in eos_tokens.split(",") if t]
    config = settings.get("config")
    if isinstance(config, dict):
        kept.update(_keep_settings(config))
    flags = settings.get("generate_flags")
    if isinstance(flags, list):
        parsed = {}
        for flag in flags:
            if isinstance(flag, str) and "=" in flag:
                name, _, raw = flag.partition("=")
                parsed[name.strip()] = _parse_flag(raw)
        kept.update(_keep_settings(parsed))
    return kept


def _from_chat_list(
    chat: list[Any], source: str, title: str | None = None, model: str | None = None
) -> Conversation:
    """A linear conversation from an OpenAI-style list of role/content messages."""
    conv = Conversation(id=new_id(), title=title or "Imported conversation")
    if model:
        conv.model = {"source": model}
    items = list(chat)
    if items and isinstance(items[0], dict) and items[0].get("role") == "system":
        if not isinstance(items[0].get("content"), str):
            raise StoreError(f"{source}: message 1 has no text content.")
        conv.system_prompt = items[0]["content"]
        first_number, items = 2, items[1:]
    else:
        first_number = 1
    # built in bulk (one clock reading, ids drawn together and checked): a long import
    # takes a fraction of a second
    ids = unique_ids(len(items))
    stamp = now()
    parent: str | None = None
    messages: list[ChatMessage] = []
    for number, (item, mid) in enumerate(zip(items, ids, strict=True), first_number):
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise StoreError(f"{source}: message {number} has no text content.")
        role = item.get("role")
        if role not in ("user", "assistant", "system"):
            raise StoreError(f"{source}: message {number} has an unknown role {short(role, 30)}.")
        message = ChatMessage(role=role, content=item["content"], id=mid, parent=parent, time=stamp)
        reasoning = next((item[k] for k in REASONING_KEYS if item.get(k) is not None), None)
        if reasoning is not None and role == "assistant":
            if not isinstance(reasoning, str):
                raise StoreError(f"{source}: message {number} has reasoning that is not text.")
            message.reasoning = reasoning or None
        messages.append(message)
        parent = mid
    conv.messages = messages
    conv.head = parent
    if title is None:
        first = next((m for m in messages if m.role == "user"), None)
        conv.title = make_title(first.content) if first else "Imported conversation"
    return conv


def import_file(path: str | Path) -> Conversation:
    """Read a chat-tui JSON export or a ``transformers chat`` history file."""
    path = Path(path)
    shown = label(str(path), 200)
    try:
        raw = read_bounded(path, MAX_IMPORT_BYTES)
    except FileNotFoundError:
        raise StoreError(f"No such file: {shown}.") from None
    except ReadRefused as exc:
        raise StoreError(f"Cannot import {shown}: it {exc.reason}.") from None
    except OSError as exc:
        raise StoreError(f"Cannot read {shown}: {describe_os_error(exc, path)}.") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise StoreError(f"{shown} is not UTF-8 text.") from None
    except RecursionError:
        raise StoreError(f"{shown} is nested too deeply to import.") from None
    except ValueError as exc:
        reason = " ".join(str(exc).split())[:200]
        raise StoreError(f"{shown} is not JSON ({reason}).") from None
    try:
        return _import_data(data, shown)
    except CorruptSessionError as exc:
        raise StoreError(f"Cannot import {shown}: {exc.reason}.") from None
    except DuplicateIdError as exc:
        raise StoreError(f"Cannot import {shown}: {exc}.") from None
    except (RecursionError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise StoreError(
            f"Cannot import {shown}: it has an unexpected shape ({type(exc).__name__})."
        ) from None


def _import_data(data: Any, shown: str) -> Conversation:
    if isinstance(data, dict) and "chat_tui" in data:
        if not isinstance(data["chat_tui"], dict):
            raise StoreError(f"Cannot import {shown}: 'chat_tui' is not an object.")
        conv = codec.from_document(dict(data["chat_tui"]), shown, json_values=True)
        conv.revision = 0
        return conv
    if isinstance(data, dict) and "chat_history" in data:
        if not isinstance(data["chat_history"], list):
            raise StoreError(f"Cannot import {shown}: 'chat_history' is not a list.")
        settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
        model = next(
            (
                settings[key]
                for key in ("model_id", "model_name_or_path", "model_name_or_path_or_address")
                if isinstance(settings.get(key), str) and settings[key]
            ),
            None,
        )
        conv = _from_chat_list(data["chat_history"], shown, model=model)
        conv.settings = transformers_chat_settings(settings)
        revision = settings.get("model_revision")
        if model and isinstance(revision, str) and revision not in ("", "main"):
            conv.model["revision"] = revision
        return conv
    if isinstance(data, dict) and "messages" in data:
        if not isinstance(data["messages"], list):
            raise StoreError(f"Cannot import {shown}: 'messages' is not a list.")
        return _from_chat_list(data["messages"], shown)
    if isinstance(data, list):
        return _from_chat_list(data, shown)
    raise StoreError(
        f"{shown} is neither a chat-tui export nor a `transformers chat` history file."
    )


__all__ = [
    "FORMATS",
    "DiskError",
    "export",
    "export_to_folder",
    "import_file",
    "json_text",
    "readable_stem",
    "to_json",
    "to_markdown",
    "transformers_chat_settings",
]
