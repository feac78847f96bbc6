"""Tiny reasoning models whose greedy output is known, with real tokenizer files.

Each is a one-layer model whose attention and MLP write nothing, so the next token
depends on the current one alone, and whose LM head is built so that each token of a
chosen chain is followed by the next (as ``bigram_dir`` in conftest.py). The tokenizer
is the bundled model's (byte-level BPE, ChatML markers); the templates are two families
of reasoning chat templates:

* :func:`build_qwen3`: ``model_type`` qwen3 with a Qwen3-style template
  (``enable_thinking``; older turns' reasoning dropped) and ``<think>``/``</think>``
  added as tokens, as Qwen3's tokenizer has them. The tokenizer ships no
  ``response_template``: transformers serve's fallback for qwen3 splits the reply.
  Thinking on, it writes ``<think> so France</think>\\n\\n Paris.``; with
  ``enable_thinking=false`` the template writes the empty ``<think>`` block itself and
  the model answers `` Paris.``
* :func:`build_prefill`: a llama whose template opens the reasoning itself (the
  generation prompt ends ``<think>\\n``, as DeepSeek-R1's does) and keeps every turn's
  reasoning in the history; its tokenizer ships its own ``response_template``. The
  model writes `` the capital is</think>\\n\\n Paris.``, the closing tag split over
  three tokens (``</``, ``think``, ``>``).

``python -m tests.thinking_models DIR [qwen3|prefill]`` writes one for trying the app.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

QWEN3_TEMPLATE = (
    "{%- if messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}"
    "{%- for message in messages[::-1] %}"
    "{%- set index = (messages|length - 1) - loop.index0 %}"
    "{%- if ns.multi_step_tool and message.role == 'user' %}"
    "{%- set ns.multi_step_tool = false %}{%- set ns.last_query_index = index %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{%- set content = message.content %}{%- set reasoning_content = '' %}"
    "{%- if message.reasoning_content is string %}"
    "{%- set reasoning_content = message.reasoning_content %}"
    "{%- elif '</think>' in content %}"
    "{%- set reasoning_content = content.split('</think>')[0].rstrip('\\n')"
    ".split('<think>')[-1].lstrip('\\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}"
    "{{- '<|im_start|>assistant\\n<think>\\n' + reasoning_content.strip('\\n')"
    " + '\\n</think>\\n\\n' + content.lstrip('\\n') }}"
    "{%- else %}{{- '<|im_start|>assistant\\n' + content }}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)

PREFILL_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if message.reasoning_content %}"
    "{{- '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{{- message.content + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)

PREFILL_RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "reasoning_content": {"open": "<think>", "close": "</think>", "content": "text"},
        "content": {"close_pattern": r"\s*<\|im_end\|>", "content": "text"},
    },
}

QWEN3_CHAIN = ("\n", "<think>", " so", " France", "</think>", "\n\n", " Paris", ".")
PREFILL_CHAIN = ("\n", " the", " capital", " is", "</", "think", ">", "\n\n", " Paris", ".")


def _one(tokenizer: Any, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, (text, ids)
    return ids[0]


def _forced(tokenizer: Any, kind: str, chain: tuple[str, ...], folder: Path, seed: int) -> None:
    """A one-layer ``kind`` model that writes ``chain`` (each token followed by the next,
    the last by the end-of-turn token) and the tokenizer, saved in ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

    ids = [_one(tokenizer, text) for text in chain] + [tokenizer.eos_token_id]
    assert len(set(ids)) == len(ids), "a chain token repeats: the output would loop"
    config_class = {"llama": LlamaConfig, "qwen3": Qwen3Config}[kind]
    torch.manual_seed(seed)
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        head = model.lm_head.weight
        head.zero_()
        embed = model.model.embed_tokens.weight
        for current, following in itertools.pairwise(ids):
            head[following] += 10 * embed[current] / embed[current].norm()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def build_qwen3(tokenizer_dir: Path, folder: Path) -> Path:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.add_tokens(["<think>", "</think>"])
    tokenizer.chat_template = QWEN3_TEMPLATE
    _forced(tokenizer, "qwen3", QWEN3_CHAIN, folder, 3)
    return folder


def build_prefill(tokenizer_dir: Path, folder: Path) -> Path:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.chat_template = PREFILL_TEMPLATE
    tokenizer.response_template = PREFILL_RESPONSE_TEMPLATE
    _forced(tokenizer, "llama", PREFILL_CHAIN, folder, 4)
    return folder


if __name__ == "__main__":  # python -m tests.thinking_models DIR [qwen3|prefill]
    from tui.engine import default_model

    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    build = build_prefill if sys.argv[2:] == ["prefill"] else build_qwen3
    print(build(default_model.ensure_converted(), target))
