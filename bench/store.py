"""Session store benchmark: 1,000 conversations of 100 messages each, and one of 100,000.

Measures listing (with the index, and the naive baseline that parses every file),
opening one conversation, appending and saving one message (atomic write with fsync),
and full-text search; then importing, opening and exporting one 100k-message
conversation, against a bare ``tomllib.loads`` of its file (the suite round-trips 20k
messages; the size of a conversation is this file's to measure).
Run: ``.venv/bin/python bench/store.py``.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui.engine.devices import cpu_name
from tui.store import SessionStore, codec
from tui.store import export as exporter

CONVERSATIONS = int(os.environ.get("BENCH_CONVERSATIONS", "1000"))
MESSAGES = 100
BIG = int(os.environ.get("BENCH_BIG_MESSAGES", "100000"))
WORDS = [
    "river",
    "valley",
    "lighthouse",
    "keeper",
    "model",
    "token",
    "cache",
    "memory",
    "python",
    "terminal",
    "window",
    "question",
    "answer",
    "story",
    "garden",
    "winter",
    "summer",
    "mountain",
    "ocean",
    "city",
    "library",
]


def timed(fn, repeats: int = 5) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def one_big_conversation(tmp: str) -> list[tuple[str, float]]:
    """Import a ``BIG``-message JSON chat, open it, export it; rows in ms."""
    store = SessionStore(Path(tmp) / "big")
    chat = [{"role": "system", "content": "be brief"}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} \u00e9"}
        for i in range(BIG)
    ]
    source = Path(tmp) / "big.json"
    source.write_text(json.dumps({"messages": chat}))
    holder: list = []
    import_ms = timed(
        lambda: holder.append(store.import_conversation(exporter.import_file(source))), 1
    )
    conv = holder[-1]
    path = store.folder / f"{conv.id}.toml"
    text = path.read_text(encoding="utf-8")
    open_ms = timed(lambda: store.load(conv.id), 3)
    parse_ms = timed(lambda: tomllib.loads(text), 3)
    export_ms = timed(lambda: exporter.to_json(conv), 3)
    return [
        (f"import a {BIG:,}-message JSON chat (+ save)", import_ms),
        (f"open it ({len(text) / 1e6:.1f} MB of TOML)", open_ms),
        ("baseline: tomllib.loads of the same file", parse_ms),
        ("export it as JSON", export_ms),
    ]


def main() -> None:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = SessionStore(tmp)
        start = time.perf_counter()
        ids = []
        for i in range(CONVERSATIONS):
            conv = store.new(model={"source": "default", "dtype": "fp32"})
            for j in range(MESSAGES):
                text = " ".join(rng.choice(WORDS) for _ in range(30))
                if i % 97 == 0 and j == 50:
                    text += " the zanzibar needle"
                conv.append("user" if j % 2 == 0 else "assistant", text)
            store.save(conv)
            ids.append(conv.id)
        build_s = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in store.folder.glob("*.toml")) / 1e6

        store.rebuild_index()
        list_ms = timed(store.list)
        (store.folder / ".index.json").unlink()
        cold_ms = timed(store.list, repeats=1)  # rebuilds the index: parses every file

        def naive() -> None:
            convs = [codec.loads(p.read_text(), str(p)) for p in store.folder.glob("*.toml")]
            assert len(convs) == CONVERSATIONS

        naive_ms = timed(naive, repeats=1)
        target = ids[CONVERSATIONS // 2]
        open_ms = timed(lambda: store.load(target))
        conv = store.load(target)

        def append_save() -> None:
            conv.append("user", "one more message " * 5)
            store.save(conv)

        save_ms = timed(append_save)
        hits: list = []
        search_ms = timed(lambda: hits.append(store.search("zanzibar needle")), repeats=3)
        miss_ms = timed(lambda: store.search("no such phrase anywhere"), repeats=3)
        assert len(hits[-1]) == len(range(0, CONVERSATIONS, 97))
        big_rows = one_big_conversation(tmp)

    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()}"
    )
    print(
        f"data: {CONVERSATIONS} conversations x {MESSAGES} messages, {size_mb:.1f} MB of "
        f"TOML, written in {build_s:.1f} s"
    )
    print()
    print(f"{'operation':<48}{'ms':>10}")
    print("-" * 58)
    rows = [
        ("list all (index valid)", list_ms),
        ("list all (no index: parse every file, rebuild)", cold_ms),
        ("baseline: parse every file, no index", naive_ms),
        ("open one conversation", open_ms),
        ("append one message and save (fsync)", save_ms),
        (f"search all, {len(hits[-1])} hits", search_ms),
        ("search all, no hits", miss_ms),
        *big_rows,
    ]
    for label, value in rows:
        print(f"{label:<48}{value:>10.1f}")
    print()
    print(
        f"list1000_ms={list_ms:.0f} open_ms={open_ms:.1f} save_ms={save_ms:.1f} "
        f"search_ms={search_ms:.0f} list_vs_parse_all={naive_ms / list_ms:.0f}x"
    )


if __name__ == "__main__":
    main()
