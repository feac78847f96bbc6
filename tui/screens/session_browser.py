"""The session browser (ctrl+o): search, open, rename, delete and export saved
conversations, through the sessions service (so an open conversation is changed in
its tab, not behind its back)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from .. import safe_text
from ..store.errors import StoreError
from .dialogs import ConfirmScreen, TextPrompt

if TYPE_CHECKING:
    from ..store.sessions import Sessions


class SessionBrowser(ModalScreen[str | None]):
    """Saved conversations: search, open (Enter), rename (r), delete (d), export (e).

    Deleting the conversation of an open tab closes that tab (the main screen hears of
    it from the sessions service); renaming it relabels the tab."""

    BINDINGS = [
        Binding("escape", "cancel", "Close", id="browser.close"),
        Binding("r", "rename", "Rename", id="browser.rename"),
        Binding("d", "delete", "Delete", id="browser.delete"),
        Binding("e", "export", "Export", id="browser.export"),
    ]

    def __init__(self, sessions: Sessions) -> None:
        super().__init__()
        self.sessions = sessions

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Conversations: Enter opens · r rename · d delete · e export · Esc closes")
            yield Input(placeholder="search every conversation (Enter)", id="browser-search")
            yield DataTable(id="browser-table", cursor_type="row")
            yield Static("", id="browser-note", classes="note", markup=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("title", "model", "updated", "messages")
        self.reload()
        table.focus()

    def reload(self, ids: list[str] | None = None) -> None:
        infos, problems = self.sessions.store.scan()
        if ids is not None:
            infos = [i for i in infos if i.id in ids]
        table = self.query_one(DataTable)
        table.clear()
        for info in infos:
            table.add_row(
                Text(safe_text.one_line(info.title, 50)),
                Text(safe_text.one_line(info.model or "-", 40)),
                info.updated.replace("T", " ")[:16],
                str(info.messages),
                key=info.id,
            )
        note = f"{len(infos)} conversation(s)"
        if problems:
            note += "; unreadable (left unchanged): " + "; ".join(str(p) for p in problems)
        self.query_one("#browser-note", Static).update(Text(safe_text.one_line(note)))

    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    @on(Input.Submitted, "#browser-search")
    def search(self, event: Input.Submitted) -> None:
        query = event.value.strip()
        if not query:
            self.reload()
            return
        hits = self.sessions.store.search(query)
        self.reload([h.info.id for h in hits])
        self.query_one(DataTable).focus()

    @on(DataTable.RowSelected)
    def open_row(self, event: DataTable.RowSelected) -> None:
        self.dismiss(event.row_key.value)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_rename(self) -> None:
        conv_id = self.selected()
        if conv_id is None:
            return

        def done(value: str | None) -> None:
            if value and value.strip():
                try:
                    self.sessions.rename(conv_id, value)
                except StoreError as exc:
                    self.notify(str(exc), title="Not renamed", severity="error", timeout=10)
                self.reload()

        self.app.push_screen(TextPrompt("New title", self.sessions.title_of(conv_id)), done)

    def action_delete(self) -> None:
        conv_id = self.selected()
        if conv_id is None:
            return
        title = self.sessions.title_of(conv_id)
        tab = " It is open in a tab, which will close." if self.sessions.is_open(conv_id) else ""

        def done(yes: bool | None) -> None:
            if yes:
                try:
                    self.sessions.delete(conv_id)
                except StoreError as exc:
                    self.notify(str(exc), title="Not deleted", severity="error", timeout=10)
                self.reload()

        self.app.push_screen(
            ConfirmScreen(f"Delete '{title}'? It is kept in the trash.{tab}"), done
        )

    def action_export(self) -> None:
        conv_id = self.selected()
        if conv_id is None:
            return
        from ..store import export as exporter
        from ..store.atomic import atomic_write, ensure_dir

        try:
            conv = self.sessions.load_for_view(conv_id)
            folder = ensure_dir(self.sessions.store.root / "exports")
            for fmt in ("md", "json"):
                atomic_write(folder / f"{conv_id}.{fmt}", exporter.export(conv, fmt))
        except (StoreError, OSError) as exc:
            self.notify(f"Could not export: {exc}", title="Not exported", severity="error")
            return
        self.notify(f"Exported to {folder}/{conv_id}.md and .json", timeout=8)
