"""The folder's index is a cache, never the truth: an entry someone wrote into
``.index.json`` cannot make a file show (or be opened) under another conversation's
name, and exports are JSON whatever numbers a file held."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.store.helpers import run_cli
from tui.store import SessionStore
from tui.store.store import INDEX_NAME


def _two(root: Path) -> tuple[SessionStore, str, str]:
    store = SessionStore(root)
    ids = []
    for name in ("alpha", "beta"):
        conv = store.new(name=name)
        conv.append("user", f"I am {name}")
        store.save(conv)
        ids.append(conv.id)
    store.list()  # the index now holds both
    return store, ids[0], ids[1]


def test_a_spoofed_index_entry_is_not_believed(tmp_path: Path) -> None:
    store, alpha, beta = _two(tmp_path)
    index_path = store.folder / INDEX_NAME
    index = json.loads(index_path.read_text())
    entries = index["files"]
    # the attacker relabels alpha's file as "beta" (size and time left as they are)
    entries[f"{alpha}.toml"]["info"]["name"] = "beta"
    entries[f"{alpha}.toml"]["info"]["title"] = "beta's secrets"
    # and hides beta's file behind a made-up problem
    entries[f"{beta}.toml"] = {
        "size": entries[f"{beta}.toml"]["size"],
        "mtime_ns": entries[f"{beta}.toml"]["mtime_ns"],
        "problem": "unreadable",
        "mac": entries[f"{beta}.toml"]["mac"],
    }
    index_path.write_text(json.dumps(index))

    fresh = SessionStore(tmp_path)
    infos, problems = fresh.scan()
    assert problems == []
    assert {(i.id, i.name) for i in infos} == {(alpha, "alpha"), (beta, "beta")}
    assert fresh.find("beta").id == beta
    code, out, _err = run_cli("--data-dir", str(tmp_path), "--export", "beta")
    assert code == 0 and "I am beta" in out and "I am alpha" not in out


def test_an_index_written_by_an_older_version_is_rebuilt(tmp_path: Path) -> None:
    store, alpha, _beta = _two(tmp_path)
    index_path = store.folder / INDEX_NAME
    index = json.loads(index_path.read_text())
    for entry in index["files"].values():
        del entry["mac"]
    index_path.write_text(json.dumps(index))
    assert SessionStore(tmp_path).find("alpha").id == alpha
    assert all("mac" in e for e in json.loads(index_path.read_text())["files"].values())


def test_json_exports_never_hold_nan_or_infinity(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    conv = store.new(name="numbers", settings={"temperature": math.nan, "top_p": 0.9})
    conv.append("user", "hi")
    conv.append(
        "assistant",
        "hello",
        tokens_per_second=math.inf,
        provenance={"settings": {"temperature": -math.inf}, "seed": 1},
    )
    store.save(conv)
    code, out, _err = run_cli(
        "--data-dir", str(tmp_path), "--export", "numbers", "--format", "json"
    )
    assert code == 0

    def strict(text: str) -> None:
        raise ValueError(f"not JSON: {text}")

    data = json.loads(out, parse_constant=strict)
    assert data["chat_tui"]["settings"] == {"top_p": 0.9}
    assert data["chat_tui"]["messages"][-1]["provenance"] == {"settings": {}, "seed": 1}
