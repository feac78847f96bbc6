"""The sanitizer applied wherever outside text meets the terminal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hostile import CORPUS, ESC, controls_in
from tui import safe_text


@pytest.mark.parametrize("name", list(CORPUS))
def test_visible_leaves_no_control_and_no_surrogate(name: str) -> None:
    out = safe_text.visible(CORPUS[name])
    assert controls_in(out) == set()
    out.encode("utf-8")  # no lone surrogate left
    assert not any(c in out for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@pytest.mark.parametrize("name", list(CORPUS))
def test_strip_leaves_no_control(name: str) -> None:
    out = safe_text.clean(CORPUS[name])
    assert controls_in(out) == set()
    out.encode("utf-8")


def test_visible_shows_a_placeholder_where_an_escape_was() -> None:
    assert safe_text.visible(f"{ESC}]0;title\x07x") == "␛]0;title␇x"
    assert safe_text.visible("a\tb\nc") == "a\tb\nc"
    assert safe_text.visible("a\ud800b") == "a\ufffdb"
    assert safe_text.visible("x\x9by") == "x\ufffdy"


def test_strip_removes_whole_sequences_and_keeps_the_text() -> None:
    assert safe_text.clean(f"{ESC}[31mred{ESC}[0m") == "red"
    assert safe_text.clean(f"{ESC}]0;pwned\x07after") == "after"
    assert safe_text.clean(f"{ESC}]8;;http://x/{ESC}\\click{ESC}]8;;{ESC}\\") == "click"
    assert safe_text.clean(f"{ESC}P1$r0m{ESC}\\tail") == "tail"
    assert safe_text.clean("one\r\ntwo\rthree") == "one\ntwothree"
    assert safe_text.clean("plain [bold] text") == "plain [bold] text"


def test_one_line_folds_newlines_and_cuts() -> None:
    assert safe_text.one_line("a\nb\tc") == "a b c"
    assert safe_text.one_line("abcdef", limit=4) == "abc…"
    assert safe_text.one_line(f"t{ESC}[2J") == "t␛[2J"


def test_a_stream_split_inside_a_sequence_is_stripped_like_the_whole() -> None:
    text = f"before {ESC}]0;a title{ESC}\\ middle {ESC}[3" + "1m red\r\nend"
    for cut in range(1, len(text)):
        stripper = safe_text.StreamStripper()
        out = stripper.feed(text[:cut]) + stripper.feed(text[cut:]) + stripper.flush()
        assert out == safe_text.clean(text), cut


def test_an_unfinished_sequence_is_not_held_forever() -> None:
    stripper = safe_text.StreamStripper()
    out = stripper.feed(f"{ESC}]0;" + "x" * (safe_text.STREAM_HOLD_LIMIT + 10))
    assert out.endswith("x" * 100)


@given(st.lists(st.text(), max_size=8))
def test_stream_stripping_is_clean_for_any_pieces(pieces: list[str]) -> None:
    stripper = safe_text.StreamStripper()
    out = "".join(stripper.feed(p) for p in pieces) + stripper.flush()
    assert controls_in(out) == set()
    out.encode("utf-8")


@given(st.text())
def test_visible_is_clean_for_any_text(text: str) -> None:
    out = safe_text.visible(text)
    assert controls_in(out) == set()
    out.encode("utf-8")
