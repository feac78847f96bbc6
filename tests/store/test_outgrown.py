"""A conversation that outgrows its file: several long replies (each within the 2 MiB
reply bound) pass the 16 MiB a file may hold. Before, the save was refused and every
later message of that conversation stayed NOT SAVED. Now the longest texts are cut to
fit, each keeping its beginning and a marker, and everything else is saved."""

from __future__ import annotations

from pathlib import Path

from tui.engine.remote import MAX_REPLY
from tui.store import SessionStore
from tui.store import store as store_module
from tui.store.fit import KEEP_CHARS, describe
from tui.store.schema import MAX_FILE_BYTES

# a reply of control characters takes six bytes a character in the file (\u001b)
ESCAPED = "\x1b" * (MAX_REPLY // 4)


def test_long_replies_past_the_file_limit_are_cut_and_the_rest_is_saved(tmp_path: Path):
    store = SessionStore(tmp_path)
    conv = store.new(title="long")
    replies = [f"reply {n} " + chr(ord("a") + n) * MAX_REPLY for n in range(9)]
    for n, reply in enumerate(replies):
        conv.append("user", f"question {n}")
        conv.append("assistant", reply, reasoning=ESCAPED if n == 0 else None)
        if n in (6, 8):
            store.save(conv)  # never refused
    conv.append("user", "and after them?")
    store.save(conv)
    path = store.path_for(conv.id)
    assert path.stat().st_size <= MAX_FILE_BYTES
    back = store.load(conv.id)
    assert [m.content for m in back.messages] == [m.content for m in conv.messages]
    assert back.messages[-1].content == "and after them?"
    cut = [m for m in back.messages if "were cut here" in m.content]
    assert cut, "something had to be cut"
    for m in back.messages[1::2]:  # each reply keeps its beginning, cut or not
        n = back.messages.index(m) // 2
        assert m.content.startswith(replies[n][:KEEP_CHARS])
    whole = [m for m in back.messages[1::2] if m.content in replies]
    assert len(whole) + len(cut) == 9 and whole, "only what had to be cut is cut"


def test_the_cuts_are_told_once_and_a_text_that_fits_is_never_cut(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(store_module, "MAX_FILE_BYTES", 1 << 20)  # the same, smaller
    store = SessionStore(tmp_path)
    conv = store.new(title="told")
    conv.append("user", "q")
    conv.append("assistant", "x" * (MAX_REPLY >> 4))
    store.save(conv)
    assert conv.last_cuts == []
    for _ in range(8):
        conv.append("user", "q")
        conv.append("assistant", "y" * (MAX_REPLY >> 4))
        store.save(conv)
        if conv.last_cuts:
            break
    cuts = conv.last_cuts
    assert cuts and all(c.chars > 0 for c in cuts)
    notice = describe(cuts)
    assert "MiB" in notice and "cut" in notice and "ctrl+n" in notice
    store.save(conv)  # unchanged: nothing more is cut
    conv.append("user", "short")
    store.save(conv)
    assert conv.last_cuts == []
