"""Export to Markdown and JSON; import our JSON and ``transformers chat`` histories.

The JSON export is the OpenAI chat ``messages`` list (role/content, so it can be sent
to any chat-completions API as is) plus chat-tui's metadata under ``chat_tui``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import codec
from .errors import StoreError
from .model import Conversation, make_title, new_id

FORMATS = ("md", "json")


def to_markdown(conv: Conversation) -> str:
    lines = [f"# {conv.title}", ""]
    meta = [f"- Created: {conv.created.isoformat()}", f"- Updated: {conv.updated.isoformat()}"]
    if conv.model_name:
        meta.append(f"- Model: {conv.model_name}")
    lines += meta + [""]
    if conv.system_prompt:
        lines += ["## System", "", conv.system_prompt, ""]
    for m in conv.transcript:
        heading = {"user": "User", "assistant": "Assistant", "system": "System"}[m.role]
        lines += [f"## {heading}", "", m.content, ""]
        if m.role == "assistant" and m.stop_reason in ("stopped", "interrupted", "error"):
            lines += [f"*({m.stop_reason})*", ""]
    return "\n".join(lines).rstrip() + "\n"


def to_json(conv: Conversation) -> str:
    messages: list[dict[str, Any]] = []
    if conv.system_prompt:
        messages.append({"role": "system", "content": conv.system_prompt})
    messages += [m.as_chat() for m in conv.transcript]
    document = codec.to_document(conv)
    for key in ("created", "updated"):
        document[key] = document[key].isoformat()
    for m in document["messages"]:
        m["time"] = m["time"].isoformat()
    return json.dumps({"messages": messages, "chat_tui": document}, ensure_ascii=False, indent=2)


def export(conv: Conversation, fmt: str) -> str:
    if fmt == "md":
        return to_markdown(conv)
    if fmt == "json":
        return to_json(conv)
    raise StoreError(f"Unknown export format {fmt!r}; choose md or json.")


def _from_chat_list(
    chat: list[Any], source: str, title: str | None = None, model: str | None = None
) -> Conversation:
    conv = Conversation(id=new_id(), title=title or "Imported conversation")
    if model:
        conv.model = {"source": model}
    for number, item in enumerate(chat, 1):
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise StoreError(f"{source}: message {number} has no text content.")
        role = item.get("role")
        if role == "system" and not conv.messages:
            conv.system_prompt = item["content"]
            continue
        if role not in ("user", "assistant", "system"):
            raise StoreError(f"{source}: message {number} has an unknown role {role!r}.")
        conv.append(role, item["content"])
    if title is None:
        first = next((m for m in conv.messages if m.role == "user"), None)
        conv.title = make_title(first.content) if first else "Imported conversation"
    return conv


def import_file(path: str | Path) -> Conversation:
    """Read a chat-tui JSON export or a ``transformers chat`` history file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"No such file: {path}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"Cannot read {path}: {exc}.") from None
    except ValueError as exc:
        raise StoreError(f"{path} is not JSON ({exc}).") from None
    if isinstance(data, dict) and isinstance(data.get("chat_tui"), dict):
        doc = dict(data["chat_tui"])
        conv = codec.from_document(doc, str(path))
        conv.revision = 0
        return conv
    if isinstance(data, dict) and isinstance(data.get("chat_history"), list):
        settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
        conv = _from_chat_list(data["chat_history"], str(path), model=settings.get("model_id"))
        config = settings.get("config")
        if isinstance(config, dict):
            conv.settings = {
                k: v
                for k, v in config.items()
                if k in ("temperature", "top_p", "top_k", "max_new_tokens", "do_sample")
                and isinstance(v, (int, float, bool))
            }
        return conv
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        return _from_chat_list(data["messages"], str(path))
    if isinstance(data, list):
        return _from_chat_list(data, str(path))
    raise StoreError(f"{path} is neither a chat-tui export nor a `transformers chat` history file.")
