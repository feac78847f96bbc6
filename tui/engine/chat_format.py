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

from .errors import ContextLengthError, TemplateError

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


def _message(m: dict[str, str]) -> dict[str, str]:
    """A role/content dict, with the reply's reasoning (``reasoning_content``, the field
    chat templates read) when it has some: the template decides whether the model sees
    it again (Qwen3's keeps only the reasoning after the last question)."""
    out = {"role": m["role"], "content": m["content"]}
    if m.get("reasoning_content"):
        out["reasoning_content"] = m["reasoning_content"]
    return out


def with_system(messages: Sequence[dict[str, str]], system_prompt: str | None) -> list[dict]:
    msgs = [_message(m) for m in messages]
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


OWN_PARAMETERS = frozenset(
    {
        "conversation", "messages", "tools", "documents", "chat_template",
        "add_generation_prompt", "continue_final_message", "tokenize", "padding",
        "truncation", "max_length", "return_tensors", "return_dict",
        "return_assistant_tokens_mask", "tokenizer_kwargs", "kwargs",
    }
)  # fmt: skip


def template_arguments(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The chat-template keyword arguments that reach the template (``enable_thinking``):
    names of ``apply_chat_template``'s own parameters are never taken from settings."""
    return {
        k: v
        for k, v in (kwargs or {}).items()
        if isinstance(k, str) and k.isidentifier() and k not in OWN_PARAMETERS
    }


def _render(
    tokenizer: Any,
    messages: list[dict],
    template: str,
    continue_final: bool,
    template_kwargs: dict[str, Any] | None = None,
) -> str:
    return tokenizer.apply_chat_template(
        messages,
        chat_template=template,
        add_generation_prompt=not continue_final,
        continue_final_message=continue_final,
        tokenize=False,
        **template_arguments(template_kwargs),
    )


def build_prompt(
    tokenizer: Any,
    messages: Sequence[dict[str, str]],
    system_prompt: str | None = None,
    template_override: str | None = None,
    continue_final: bool = False,
    template_kwargs: dict[str, Any] | None = None,
) -> Prompt:
    msgs = with_system(messages, system_prompt)
    template = template_override or getattr(tokenizer, "chat_template", None)
    notices: list[str] = []
    fallback = template is None
    if fallback:
        template = FALLBACK_TEMPLATE
        notices.append(FALLBACK_NOTICE)
    try:
        text = _render(tokenizer, msgs, template, continue_final, template_kwargs)
    except Exception as first:
        if not (msgs and msgs[0]["role"] == "system"):
            raise TemplateError(f"The chat template failed to render: {first}.") from None
        try:
            text = _render(tokenizer, fold_system(msgs), template, continue_final, template_kwargs)
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


@dataclass
class FittedPrompt:
    """A prompt cut to the model's context: ``dropped`` oldest messages left out, and
    ``max_new_tokens`` the room the reply has (``None``: no limit known)."""

    prompt: Prompt
    dropped: int = 0
    max_new_tokens: int | None = None
    notices: list[str] = field(default_factory=list)


def reply_reserve(context_limit: int, max_new_tokens: int | None) -> int:
    """Tokens kept free for the reply when cutting the history: ``max_new_tokens``, but
    never more than half the context (a 1,024-token reply setting on a 512-token model
    would otherwise leave no room for any history)."""
    wanted = max_new_tokens if max_new_tokens is not None else context_limit // 4
    return max(1, min(wanted, context_limit // 2))


def _turn_starts(messages: list[dict[str, str]]) -> list[int]:
    """Where the history may be cut: before each user message but the first, so the
    kept part still starts with a user turn (templates that check alternation accept
    it). The last message is always kept."""
    last = len(messages) - 1
    cuts = [i for i in range(1, last + 1) if messages[i]["role"] == "user"]
    if not cuts and last > 0:  # no user turns to cut at: cut anywhere
        cuts = list(range(1, last + 1))
    return cuts


def dropped_notice(dropped: int, context_limit: int) -> str:
    are = "message is" if dropped == 1 else "messages are"
    return (
        f"{dropped} earlier {are} outside the model's context of {context_limit:,} tokens; "
        "the model did not see them this turn."
    )


def fit_prompt(
    tokenizer: Any,
    messages: Sequence[dict[str, str]],
    system_prompt: str | None = None,
    template_override: str | None = None,
    continue_final: bool = False,
    context_limit: int | None = None,
    max_new_tokens: int | None = None,
    max_new_tokens_is_users: bool = False,
    template_kwargs: dict[str, Any] | None = None,
) -> FittedPrompt:
    """Build the prompt; if it does not fit ``context_limit`` minus the room kept for the
    reply (:func:`reply_reserve`), leave out the oldest turns, never the system prompt
    nor the last message. The reply is then capped to the room that is left.

    Raises :class:`ContextLengthError` when the system prompt and the last message alone
    leave no room for a reply."""
    full = build_prompt(
        tokenizer, messages, system_prompt, template_override, continue_final, template_kwargs
    )
    if not context_limit or context_limit <= 0:
        return FittedPrompt(full, 0, max_new_tokens, list(full.notices))
    budget = context_limit - reply_reserve(context_limit, max_new_tokens)
    msgs = with_system(messages, system_prompt)
    head = msgs[:1] if msgs and msgs[0]["role"] == "system" else []
    rest = msgs[len(head) :]
    chosen, dropped = full, 0
    if len(full.ids) > budget:
        cuts = _turn_starts(rest)
        built: dict[int, Prompt] = {}

        def build(cut: int) -> Prompt:
            if cut not in built:
                built[cut] = build_prompt(
                    tokenizer,
                    head + rest[cut:],
                    None,
                    template_override,
                    continue_final,
                    template_kwargs,
                )
            return built[cut]

        # the prompt shrinks as more turns are left out: binary search the first cut
        # that fits, or take the last one (only the final turn kept) if none does
        low, high = 0, len(cuts) - 1
        while low < high:
            mid = (low + high) // 2
            if len(build(cuts[mid]).ids) <= budget:
                high = mid
            else:
                low = mid + 1
        if cuts:
            chosen, dropped = build(cuts[low]), cuts[low]
    room = context_limit - len(chosen.ids)
    if room < 1:
        raise ContextLengthError(_too_long(chosen, head, context_limit))
    notices = list(chosen.notices)
    if dropped:
        notices.append(dropped_notice(dropped, context_limit))
    capped = room if max_new_tokens is None else min(max_new_tokens, room)
    if max_new_tokens is not None and capped < max_new_tokens and max_new_tokens_is_users:
        notices.append(
            f"The reply is limited to {capped:,} tokens (max_new_tokens={max_new_tokens:,}): "
            f"the prompt takes {len(chosen.ids):,} of the model's {context_limit:,}-token "
            "context."
        )
    return FittedPrompt(chosen, dropped, capped, notices)


def _too_long(prompt: Prompt, head: list[dict[str, str]], context_limit: int) -> str:
    tokens = len(prompt.ids)
    what = "The last message and the system prompt take" if head else "The last message takes"
    return (
        f"{what} {tokens:,} tokens, more than this model's whole context of "
        f"{context_limit:,} tokens; shorten the message"
        + (" or the system prompt" if head else "")
        + " (or use a model with a longer context)."
    )
