"""A hypothesis fuzz of the sessions folder: random bytes and random TOML documents
(random shapes, nesting and types, often with the keys of a real conversation) beside
one healthy conversation, plus a random index. --list, --search, --export of the
healthy one, find and scan never raise, finish in time, print no control characters
and never change a byte of the hostile files."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.hostile import TERMINAL_CONTROLS
from tests.store.helpers import HEALTHY_NAME, add_healthy, finishes, run_cli, snapshot_files
from tui.store import SessionStore

KEYS = st.text(max_size=12).filter(lambda k: k != "name")
SCALARS = st.one_of(
    st.text(max_size=30),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(timezones=st.none() | st.just(UTC)),
    st.dates(),
    st.times(),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=20,
)
IDS = st.sampled_from(["a", "b", "c", "m1", "m2"])


def likely(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a plausible value, sometimes anything at all."""
    return st.one_of(strategy, strategy, strategy, VALUES)


MESSAGE = st.fixed_dictionaries(
    {
        "id": likely(IDS),
        "role": likely(st.sampled_from(["user", "assistant", "system", "robot"])),
        "content": likely(st.text(max_size=40)),
    },
    optional={
        "parent": likely(IDS),
        "time": likely(st.datetimes(timezones=st.none() | st.just(UTC))),
        "prompt_tokens": likely(st.integers(-5, 10)),
        "tokens_per_second": likely(st.floats()),
        "stop_reason": likely(st.sampled_from(["eos", "stopped"])),
        "escaped": likely(
            st.dictionaries(st.sampled_from(["content", "error"]), st.text(max_size=10))
        ),
    },
)
FLAT = st.one_of(
    st.text(max_size=10),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=3),
)
DOCUMENT = st.fixed_dictionaries(
    {
        "schema_version": likely(st.sampled_from([2, 2, 2, 1, 3, 0])),
        "id": likely(st.text(min_size=1, max_size=10)),
        "messages": likely(st.lists(MESSAGE, max_size=6)),
    },
    optional={
        "revision": likely(st.integers(-3, 5)),
        "head": likely(IDS),
        "title": likely(st.text(max_size=20)),
        "name": likely(st.text(max_size=10).filter(lambda n: n != HEALTHY_NAME)),
        "system_prompt": likely(st.text(max_size=20)),
        "created": likely(st.datetimes(timezones=st.none() | st.just(UTC))),
        "model": likely(st.dictionaries(KEYS, FLAT, max_size=3)),
        "settings": likely(st.dictionaries(KEYS, FLAT, max_size=3)),
        "escaped": likely(
            st.dictionaries(st.sampled_from(["title", "settings", "model"]), st.text(max_size=20))
        ),
    },
)


@st.composite
def toml_documents(draw: st.DrawFn) -> bytes:
    document = draw(DOCUMENT)
    document.update(draw(st.dictionaries(KEYS, VALUES, max_size=3)))
    try:
        return tomli_w.dumps(document).encode("utf-8")
    except (TypeError, ValueError):  # a shape TOML cannot express (e.g. a time with a zone)
        assume(False)
        raise


FILE_NAMES = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="/\0"), min_size=1, max_size=30
).filter(lambda n: not n.startswith(".") and len((n + ".toml").encode()) < 200)
CONTENTS = st.one_of(toml_documents(), st.binary(max_size=600))
INDEX = (
    st.none() | st.binary(max_size=200) | VALUES.map(lambda v: json.dumps(v, default=str).encode())
)

UNSAFE = TERMINAL_CONTROLS | set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> None:
    assert not {c for c in text if c in UNSAFE}


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    files=st.dictionaries(FILE_NAMES, CONTENTS, min_size=1, max_size=4),
    index=INDEX,
)
def test_the_sessions_folder_survives_any_neighbours(files: dict[str, bytes], index: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SessionStore(Path(tmp) / "data")
        healthy = add_healthy(store)
        healthy_file = store.path_for(healthy.id).name
        for name, body in files.items():
            if name + ".toml" != healthy_file:
                (store.folder / f"{name}.toml").write_bytes(body)
        if index is not None:
            (store.folder / ".index.json").write_bytes(index)
        before = snapshot_files(store.folder)
        del before[store.path_for(healthy.id)]

        def everything() -> None:
            infos, problems = store.scan()
            assert healthy.id in {i.id for i in infos}
            assert len(infos) + len(problems) == len(before) + 1
            assert store.find(HEALTHY_NAME).id == healthy.id
            assert store.load(healthy.id).transcript[-1].content == "general kenobi"
            code, out, err = run_cli("--data-dir", str(store.root), "--list")
            assert code == 0 and err == "", err
            printable(out)
            code, out, err = run_cli("--data-dir", str(store.root), "--search", "zebra")
            assert code == 0 and HEALTHY_NAME in out, err
            printable(out)
            for fmt in ("md", "json"):
                code, out, err = run_cli(
                    "--data-dir", str(store.root), "--export", HEALTHY_NAME, "--format", fmt
                )
                assert code == 0 and "general kenobi" in out, err
                printable(out)

        finishes(everything, 60)
        for path, body in before.items():
            assert path.read_bytes() == body, path.name
