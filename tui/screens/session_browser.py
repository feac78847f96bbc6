"""The session browser (ctrl+o): find, open, rename, delete and export saved
conversations, through the sessions service (so an open conversation is changed in
its tab, not behind its back).

Typing always goes to the search box; Up/Down move through the results and Enter
opens one. Actions are on keys that cannot be typed by accident (ctrl+r rename,
ctrl+d delete, ctrl+e export). Reading the folder and searching run in a worker
thread, so a large or slow folder never freezes the window; a file that cannot be
read is listed with its reason and left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from .. import safe_text
from ..store.errors import StoreError
from .base import Dialog
from .dialogs import ConfirmScreen, TextPrompt

if TYPE_CHECKING:
    from ..store.sessions import Sessions
    from ..store.store import Problem, SessionInfo

SEARCH_DELAY = 0.25  # seconds of no typing before a search runs
HELP_LINE = (
    "Conversations: type to search · ↑↓ choose · Enter opens · ctrl+r rename · "
    "ctrl+d delete · ctrl+e export · ctrl+t trash · Esc closes"
)
TRASH_LINE = (
    "Deleted conversations: type to filter · ↑↓ choose · Enter restores · "
    "ctrl+t back to the list · Esc closes"
)
MATCH_STYLE = "bold reverse"


@dataclass
class Row:
    info: SessionInfo
    snippets: list[str]
    deleted: str | None = None  # when it went to the trash (trash rows only)


def highlight(text: str, query: str, style: str = MATCH_STYLE) -> Text:
    """``text`` (already safe) with every case-insensitive occurrence of ``query``
    styled."""
    out = Text(text)
    needle = query.casefold()
    if needle:
        folded = text.casefold()
        start = folded.find(needle)
        while start >= 0 and len(folded) == len(text):
            out.stylize(style, start, start + len(needle))
            start = folded.find(needle, start + len(needle))
    return out


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def row_prompt(row: Row, query: str, width: int = 100) -> Text:
    info = row.info
    title = safe_text.one_line(info.title, 60)
    if row.deleted is not None:
        meta = safe_text.one_line(f"  deleted {row.deleted.replace('T', ' ')[:16]}", width)
    else:
        meta = safe_text.one_line(
            f"  {info.model or '-'} · {info.updated.replace('T', ' ')[:16]} · "
            f"{info.messages} messages",
            width,
        )
    prompt = highlight(title, query) + Text(meta, style="dim")
    for snippet in row.snippets[:2]:
        prompt += Text("\n    ") + highlight(safe_text.one_line(snippet, width), query)
    return prompt


class SessionBrowser(Dialog[str | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Close", id="browser.close"),
        Binding("down", "move(1)", "Down", show=False, id="browser.down", priority=True),
        Binding("up", "move(-1)", "Up", show=False, id="browser.up", priority=True),
        Binding("pagedown", "move(10)", show=False, id="browser.page_down", priority=True),
        Binding("pageup", "move(-10)", show=False, id="browser.page_up", priority=True),
        Binding("ctrl+r", "rename", "Rename", id="browser.rename", priority=True),
        Binding("ctrl+d", "delete", "Delete", id="browser.delete", priority=True),
        Binding("ctrl+e", "export", "Export", id="browser.export", priority=True),
        Binding("ctrl+t", "toggle_trash", "Trash", id="browser.trash", priority=True),
    ]

    @dataclass
    class Listed(Message):
        rows: list[Row]
        problems: list[Problem]
        query: str
        trash: bool = False

    def __init__(self, sessions: Sessions) -> None:
        super().__init__()
        self.sessions = sessions
        self.query_text = ""
        self.rows: list[Row] = []
        self.loaded = False  # the first listing has arrived
        self.showing_trash = False  # ctrl+t: the deleted conversations
        self.trash_rows: dict[str, str] = {}  # option id -> trash file name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(HELP_LINE, id="browser-help")
            yield Input(placeholder="search every conversation", id="browser-search")
            yield OptionList(id="browser-list")
            yield Static("reading…", id="browser-note", classes="note", markup=False)

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self.refresh_list()

    # -- listing and searching (worker thread) ----------------------------------------------
    def refresh_list(self) -> None:
        self._list(self.query_text)

    @work(thread=True, exclusive=True, group="browse", exit_on_error=False)
    def _list(self, query: str) -> None:
        store = self.sessions.store
        if self.showing_trash:
            from ..store.store import SessionInfo

            trashed, problems = store.trashed()
            needle = query.strip().casefold()
            rows = [
                Row(
                    SessionInfo(t.trash_name, t.title, t.name, "", t.deleted, "deleted", 0, ""),
                    [],
                )
                for t in trashed
                if needle in t.title.casefold() or needle in (t.name or "").casefold()
            ]
            self.post_message(self.Listed(rows, problems, query, trash=True))
            return
        infos, problems = store.scan()
        if query.strip():
            rows = [Row(hit.info, hit.snippets) for hit in store.search(query.strip())]
        else:
            rows = [Row(info, []) for info in infos]
        self.post_message(self.Listed(rows, problems, query))

    def on_session_browser_listed(self, message: Listed) -> None:
        if message.query != self.query_text or message.trash != self.showing_trash:
            return  # an older search (or the other view) finished after a newer one started
        self.query_one("#browser-help", Label).update(TRASH_LINE if message.trash else HELP_LINE)
        self.rows = message.rows
        self.loaded = True
        options = self.query_one(OptionList)
        keep = self.selected()
        options.clear_options()
        for row in self.rows:
            options.add_option(Option(row_prompt(row, message.query.strip()), id=row.info.id))
        if self.rows:
            ids = [r.info.id for r in self.rows]
            options.highlighted = ids.index(keep) if keep in ids else 0
        count = _count(len(self.rows), "conversation")
        if message.trash:
            note = f"{_count(len(self.rows), 'deleted conversation')} in the trash"
        elif message.query.strip():
            note = f"{count} mention {message.query.strip()!r}"
        else:
            note = count
        if message.problems:
            note += "; unreadable (left unchanged): " + "; ".join(str(p) for p in message.problems)
        self.query_one("#browser-note", Static).update(Text(safe_text.one_line(note)))

    @on(Input.Changed, "#browser-search")
    def _typed(self, event: Input.Changed) -> None:
        self.query_text = event.value
        self.set_timer(SEARCH_DELAY, lambda value=event.value: self._search_if_still(value))

    def _search_if_still(self, value: str) -> None:
        if value == self.query_text:
            self._list(value)

    # -- choosing ----------------------------------------------------------------------------
    def selected(self) -> str | None:
        options = self.query_one(OptionList)
        if options.highlighted is None or not options.option_count:
            return None
        return options.get_option_at_index(options.highlighted).id

    def action_move(self, step: int) -> None:
        options = self.query_one(OptionList)
        if options.option_count:
            current = options.highlighted if options.highlighted is not None else 0
            options.highlighted = max(0, min(options.option_count - 1, current + step))

    @on(Input.Submitted, "#browser-search")
    def _enter(self) -> None:
        conv_id = self.selected()
        if conv_id is not None:
            self._open_or_restore(conv_id)

    @on(OptionList.OptionSelected)
    def _clicked(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self._open_or_restore(event.option.id)

    def _open_or_restore(self, option_id: str) -> None:
        if self.showing_trash:
            self._restore(option_id)
        else:
            self.dismiss(option_id)

    def action_cancel(self) -> None:
        self.dismiss(None)

    # -- actions -------------------------------------------------------------------------
    def action_rename(self) -> None:
        conv_id = self.selected()
        if conv_id is None or self.showing_trash:
            return

        def done(value: str | None) -> None:
            if value and value.strip():
                try:
                    self.sessions.rename(conv_id, value)
                except StoreError as exc:
                    self.notify(str(exc), title="Not renamed", severity="error", timeout=10)
                self.refresh_list()

        current = safe_text.one_line(self.sessions.title_of(conv_id))
        self.app.push_screen(TextPrompt("New title", current), done)

    def action_delete(self) -> None:
        conv_id = self.selected()
        if conv_id is None or self.showing_trash:
            return
        title = self.sessions.title_of(conv_id)
        tab = " It is open in a tab, which will close." if self.sessions.is_open(conv_id) else ""

        def done(yes: bool | None) -> None:
            if yes:
                try:
                    self.sessions.delete(conv_id)
                except StoreError as exc:
                    self.notify(str(exc), title="Not deleted", severity="error", timeout=10)
                self.refresh_list()

        self.app.push_screen(
            ConfirmScreen(f"Delete '{title}'? It is kept in the trash.{tab}"), done
        )

    def action_export(self) -> None:
        """ctrl+e: ask the format and the folder (the current one by default), then
        write files named after the conversation (never over an existing file)."""
        conv_id = self.selected()
        if conv_id is None or self.showing_trash:
            return
        from ..store.export import export_to_folder, readable_stem
        from .export_dialog import ExportChoice, ExportScreen

        def chosen(choice: ExportChoice | None) -> None:
            self.query_one(Input).focus()
            if choice is None:
                return
            try:
                conv = self.sessions.load_for_view(conv_id)
                paths = export_to_folder(
                    conv, choice.folder, choice.formats, stem=readable_stem(conv)
                )
            except StoreError as exc:
                self.notify(str(exc), title="Not exported", severity="error", timeout=15)
                return
            names = " and ".join(p.name for p in paths)
            self.notify(f"Exported to {choice.folder}: {names}.", timeout=8)

        self.app.push_screen(ExportScreen(self.sessions.title_of(conv_id)), chosen)

    # -- the trash ---------------------------------------------------------------------
    def action_toggle_trash(self) -> None:
        """ctrl+t: the deleted conversations (Enter restores one) or back to the list."""
        self.showing_trash = not self.showing_trash
        self.query_one(Input).value = ""
        self.query_text = ""
        self.refresh_list()

    def _restore(self, trash_name: str) -> None:
        try:
            conv_id = self.sessions.restore(trash_name)
        except StoreError as exc:
            self.notify(str(exc), title="Not restored", severity="error", timeout=10)
            return
        title = safe_text.one_line(self.sessions.title_of(conv_id), 60)
        self.notify(f"Restored '{title}'.", timeout=6)
        self.refresh_list()
