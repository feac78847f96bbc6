"""A reasoning model on the command line: stdout gets the answer alone, --show-thinking
puts the reasoning on stderr, --think/--no-think switch the template, --stats counts
both parts; the conversation keeps the reasoning (TOML, both exports, --import), and
compare and replay handle both parts. Tiny forced-output models: tests/thinking_models.py.
"""

from __future__ import annotations

import json
import re

from tests.support import run_cli
from tui.store import SessionStore


def one_shot(model, data, *args: str):
    return run_cli(
        "--model", str(model), "--data-dir", str(data), "max_new_tokens=20", *args
    )  # fmt: skip


def test_one_shot_prints_the_answer_alone(qwen3_thinking_dir, tmp_path) -> None:
    done = one_shot(qwen3_thinking_dir, tmp_path, "--prompt", "Capital?", "--stats")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Paris.\n"
    assert "so France" not in done.stderr
    assert "8 new (4 reasoning, 4 answer)" in done.stderr

    shown = one_shot(qwen3_thinking_dir, tmp_path, "--prompt", "Capital?", "--show-thinking")
    assert shown.stdout == "Paris.\n"
    assert shown.stderr.startswith("so France\n")


def test_no_think_switches_the_template(qwen3_thinking_dir, tmp_path) -> None:
    done = one_shot(qwen3_thinking_dir, tmp_path, "--prompt", "Hi", "--no-think", "--session", "n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Paris.\n"
    store = SessionStore(tmp_path)
    conv = store.load(store.find("n").id)
    reply = conv.transcript[1]
    assert reply.reasoning is None and reply.reasoning_tokens is None
    assert reply.provenance["settings"]["enable_thinking"] is False


def test_the_conversation_keeps_the_reasoning_everywhere(prefill_thinking_dir, tmp_path) -> None:
    for question in ("Capital?", "Sure?"):
        done = one_shot(prefill_thinking_dir, tmp_path, "--session", "t", "--prompt", question)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "Paris.\n"
    store = SessionStore(tmp_path)
    conv = store.load(store.find("t").id)
    replies = [m for m in conv.transcript if m.role == "assistant"]
    assert [m.reasoning for m in replies] == ["the capital is"] * 2
    assert [m.content for m in replies] == ["Paris."] * 2
    assert replies[0].reasoning_tokens == 6 and replies[0].reasoning_seconds >= 0
    # the second turn's prompt held the first reply's reasoning (this template keeps it)
    assert replies[1].prompt_tokens > replies[0].prompt_tokens + replies[0].new_tokens

    exported = run_cli("--data-dir", str(tmp_path), "--export", "t", "--format", "json")
    data = json.loads(exported.stdout)
    assert data["messages"][1] == {
        "role": "assistant",
        "content": "Paris.",
        "reasoning_content": "the capital is",
    }
    markdown = run_cli("--data-dir", str(tmp_path), "--export", "t").stdout
    folded = r"<details><summary>Thought for \d+ s · 6 tokens</summary>\n\nthe capital is\n"
    assert re.search(folded, markdown)

    other = tmp_path / "other"
    path = tmp_path / "t.json"
    path.write_text(exported.stdout)
    imported = run_cli("--data-dir", str(other), "--import", str(path))
    assert imported.returncode == 0, imported.stderr
    again = SessionStore(other)
    (summary,) = again.list()
    assert again.load(summary.id).transcript[1].reasoning == "the capital is"


def test_import_of_a_plain_history_with_reasoning(tmp_path) -> None:
    """A ``transformers chat``-style list: the reasoning under any name transformers
    reads (reasoning_content, thinking, reasoning)."""
    history = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b", "reasoning_content": "r1"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d", "thinking": "r2\n[bold]x[/]\u001b[2J"},
        {"role": "user", "content": "e"},
        {"role": "assistant", "content": "f", "reasoning": ""},
    ]
    path = tmp_path / "history.json"
    path.write_text(json.dumps(history))
    done = run_cli("--data-dir", str(tmp_path), "--import", str(path))
    assert done.returncode == 0, done.stderr
    store = SessionStore(tmp_path)
    (summary,) = store.list()
    conv = store.load(summary.id)
    assert [m.reasoning for m in conv.transcript if m.role == "assistant"] == [
        "r1",
        "r2\n[bold]x[/]\u001b[2J",
        None,
    ]
    markdown = run_cli("--data-dir", str(tmp_path), "--export", summary.id).stdout
    assert "\u001b" not in markdown and "r2\n[bold]x[/]" in markdown


def test_compare_and_replay_handle_both_parts(qwen3_thinking_dir, tmp_path) -> None:
    done = one_shot(
        qwen3_thinking_dir, tmp_path, "--prompt", "Capital?", "--session", "c",
        "--compare", "@bf16", "--show-thinking",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "so France" not in done.stdout and done.stdout.count("Paris.") == 2
    assert "[@fp32 (reference) thinking]\nso France\n[@bf16 thinking]\nso France\n" in done.stderr
    # the similarity is the answers': both 1.00, identical
    table = done.stdout.splitlines()[-1]
    assert "identical" in table and "1.00" in table
    store = SessionStore(tmp_path)
    conv = store.load(store.find("c").id)
    replies = conv.children()[conv.transcript[0].id]
    assert [m.reasoning for m in replies] == ["so France", "so France"]

    model = ("--model", str(qwen3_thinking_dir))
    replay = run_cli("--data-dir", str(tmp_path), "--replay", "c", *model)
    assert (replay.returncode, replay.stdout) == (0, "identical\n"), replay.stderr
    conv.transcript[1].reasoning = "so Spain"  # the answer is the same, the thought not
    store.save(conv)
    replay = run_cli("--data-dir", str(tmp_path), "--replay", "c", *model)
    assert replay.returncode == 1
    assert "the reasoning before the answer differs" in replay.stdout + replay.stderr
