"""Turn a conversation into prompt tokens with the model's chat template.

Models without a chat template (base models) get :data:`FALLBACK_TEMPLATE`, a plain
transcript::

    <system prompt>

    User: <message>
    Assistant: <reply>
    User: <message>
    Assistant:

and generation stops at the next ``\\nUser:``. ``--chat-template FILE`` overrides
either. A system prompt on a template that rejects the system role is folded into
the first user turn, with a notice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import TemplateError

FALLBACK_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
FALLBACK_STOP_STRINGS = ("\nUser:",)
FOLDED_SYSTEM_NOTICE = (
    "This model's chat template has no system role, so the system prompt was added to the "
    "first user message."
)
FALLBACK_NOTICE = (
    "This model has no chat template; using chat-tui's plain 'User:/Assistant:' transcript "
    "(override with --chat-template FILE)."
)


@dataclass
class Prompt:
    ids: list[int]
    text: str
    stop_strings: tuple[str, ...] = ()
    notices: list[str] = field(default_factory=list)
    uses_fallback: bool = False


def with_system(messages: Sequence[dict[str, str]], system_prompt: str | None) -> list[dict]:
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    if system_prompt and not (msgs and msgs[0]["role"] == "system"):
        msgs.insert(0, {"role": "system", "content": system_prompt})
    return msgs


def fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Move a leading system message into the first user message."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    for message in rest:
        if message["role"] == "user":
            message["content"] = f"{system}\n\n{message['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]


def _render(tokenizer: Any, messages: list[dict], template: str, continue_final: bool) -> str:
    return tokenizer.apply_chat_template(
        messages,
        chat_template=template,
        add_generation_prompt=not continue_final,
        continue_final_message=continue_final,
        tokenize=False,
    )


def build_prompt(
    tokenizer: Any,
    messages: Sequence[dict[str, str]],
    system_prompt: str | None = None,
    template_override: str | None = None,
    continue_final: bool = False,
) -> Prompt:
    msgs = with_system(messages, system_prompt)
    template = template_override or getattr(tokenizer, "chat_template", None)
    notices: list[str] = []
    fallback = template is None
    if fallback:
        template = FALLBACK_TEMPLATE
        notices.append(FALLBACK_NOTICE)
    try:
        text = _render(tokenizer, msgs, template, continue_final)
    except Exception as first:
        if not (msgs and msgs[0]["role"] == "system"):
            raise TemplateError(f"The chat template failed to render: {first}.") from None
        try:
            text = _render(tokenizer, fold_system(msgs), template, continue_final)
        except Exception as second:
            raise TemplateError(f"The chat template failed to render: {second}.") from None
        notices.append(FOLDED_SYSTEM_NOTICE)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return Prompt(
        ids=list(ids),
        text=text,
        stop_strings=FALLBACK_STOP_STRINGS if fallback else (),
        notices=notices,
        uses_fallback=fallback,
    )
