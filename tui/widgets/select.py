"""Textual's Select, safe for fast keys.

Found by ``bench/monkey.py``: a page key that reached a Select's list before the list
had ever been laid out (opened and paged in one burst of keys) raised ``KeyError``
inside Textual's OptionList. Here such a key does nothing, as it would on an empty list.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Select
from textual.widgets._select import SelectCurrent, SelectOverlay


class _Overlay(SelectOverlay):
    def _move_page(self, direction: int) -> None:
        if (self.highlighted or 0) not in self._index_to_line:
            return  # not laid out yet: the key came before the list was drawn
        super()._move_page(direction)


class SafeSelect(Select):
    def compose(self) -> ComposeResult:
        yield SelectCurrent(self.prompt)
        yield _Overlay(type_to_search=self._type_to_search).data_bind(compact=Select.compact)
