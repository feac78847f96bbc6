"""Modal screens: model picker, session browser, help, confirmation, text prompt."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.fuzzy import Matcher
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Markdown, OptionList, Static
from textual.widgets.option_list import Option

from .. import chat_commands


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class TextPrompt(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__()
        self.question, self.value = question, value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            yield Input(self.value)

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1", "dismiss", "Close", id="help.close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        rows = "\n".join(f"| `{key}` | {desc} |" for key, desc in self.keys)
        text = (
            "# chat-tui\n\n## Keys\n\n| key | action |\n| --- | --- |\n"
            + rows
            + "\n\n## Commands\n\n"
            + chat_commands.help_markdown()
            + "\n\nStart a message with `//` to send a literal `/`.\n\n*Esc closes this help.*"
        )
        with Vertical(classes="dialog wide"):
            yield Markdown(text)


@dataclass
class ModelChoice:
    source: str
    label: str
    kind: str  # bundled, cached, recent, typed


class ModelPicker(ModalScreen[str | None]):
    """Pick a model: the bundled default, the local Hugging Face cache, recent ones, or
    any typed Hub id / folder / .gguf path. Fuzzy filter; Enter loads."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="picker.cancel"),
        Binding("down", "cursor(1)", "Down", show=False, id="picker.down"),
        Binding("up", "cursor(-1)", "Up", show=False, id="picker.up"),
    ]

    @dataclass
    class CacheScanned(Message):
        choices: list[ModelChoice]

    SERVER_PREFIX = "server:"

    def __init__(self, recent: list[str], current: str | None = None, endpoint=None) -> None:
        super().__init__()
        self.endpoint = endpoint  # engine.remote.Endpoint: also list the server's models
        self.choices: list[ModelChoice] = [
            ModelChoice("default", "SmolLM2-135M-Instruct (bundled, offline)", "bundled")
        ]
        for source in recent:
            if source != "default":
                self.choices.append(ModelChoice(source, source, "recent"))
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Load a model: pick one, or type a Hub id, a folder or a .gguf path")
            yield Input(placeholder="filter, or a model to load", id="picker-input")
            yield OptionList(id="picker-list")
            yield Static("scanning the Hugging Face cache…", id="picker-note", classes="note")

    def on_mount(self) -> None:
        self.refresh_list("")
        self.query_one(Input).focus()
        self.scan_cache()

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def scan_cache(self) -> None:
        choices: list[ModelChoice] = []
        if self.endpoint is not None:
            from ..engine.remote import RemoteError, list_models

            try:
                for model in list_models(self.endpoint):
                    choices.append(
                        ModelChoice(
                            self.SERVER_PREFIX + model,
                            f"{model}  (on {self.endpoint.host})",
                            "server",
                        )
                    )
            except RemoteError:
                pass
        try:
            from huggingface_hub import scan_cache_dir

            info = scan_cache_dir()
            for repo in sorted(info.repos, key=lambda r: r.repo_id):
                if repo.repo_type == "model":
                    size = repo.size_on_disk / 1e9
                    choices.append(
                        ModelChoice(repo.repo_id, f"{repo.repo_id}  ({size:.1f} GB)", "cached")
                    )
        except Exception:
            pass
        self.post_message(self.CacheScanned(choices))

    def on_model_picker_cache_scanned(self, message: CacheScanned) -> None:
        known = {c.source for c in self.choices}
        self.choices += [c for c in message.choices if c.source not in known]
        note = f"{len(message.choices)} model(s) in the Hugging Face cache"
        self.query_one("#picker-note", Static).update(note)
        self.refresh_list(self.query_one(Input).value)

    def refresh_list(self, query: str) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        query = query.strip()
        scored = []
        matcher = Matcher(query) if query else None
        for choice in self.choices:
            score = matcher.match(f"{choice.source} {choice.label}") if matcher else 1.0
            if score > 0:
                scored.append((score, choice))
        scored.sort(key=lambda item: -item[0])
        for _score, choice in scored:
            marker = " (loaded)" if choice.source == self.current else ""
            label = Text(f"[{choice.kind}] ") + Text(choice.label + marker)
            options.add_option(Option(label, id=choice.source))
        if query and query not in {c.source for c in self.choices}:
            options.add_option(Option(Text(f"[load] {query}"), id=query))
        if options.option_count:
            options.highlighted = 0

    @on(Input.Changed, "#picker-input")
    def filter_changed(self, event: Input.Changed) -> None:
        self.refresh_list(event.value)

    @on(Input.Submitted, "#picker-input")
    def input_submitted(self, event: Input.Submitted) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is not None and options.option_count:
            self.dismiss(options.get_option_at_index(options.highlighted).id)
        elif event.value.strip():
            self.dismiss(event.value.strip())

    @on(OptionList.OptionSelected)
    def option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cursor(self, step: int) -> None:
        options = self.query_one(OptionList)
        if options.option_count:
            current = options.highlighted or 0
            options.highlighted = max(0, min(options.option_count - 1, current + step))

    def action_cancel(self) -> None:
        self.dismiss(None)


class SessionBrowser(ModalScreen[str | None]):
    """Saved conversations: search, open (Enter), rename (r), delete (d), export (e)."""

    BINDINGS = [
        Binding("escape", "cancel", "Close", id="browser.close"),
        Binding("r", "rename", "Rename", id="browser.rename"),
        Binding("d", "delete", "Delete", id="browser.delete"),
        Binding("e", "export", "Export", id="browser.export"),
    ]

    def __init__(self, store) -> None:
        super().__init__()
        self.store = store
        self.deleted: set[str] = set()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Conversations: Enter opens · r rename · d delete · e export · Esc closes")
            yield Input(placeholder="search every conversation (Enter)", id="browser-search")
            yield DataTable(id="browser-table", cursor_type="row")
            yield Static("", id="browser-note", classes="note")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("title", "model", "updated", "messages")
        self.reload()
        table.focus()

    def reload(self, ids: list[str] | None = None) -> None:
        infos, problems = self.store.scan()
        if ids is not None:
            infos = [i for i in infos if i.id in ids]
        table = self.query_one(DataTable)
        table.clear()
        for info in infos:
            table.add_row(
                Text(info.title[:50]),
                Text(info.model or "-"),
                info.updated.replace("T", " ")[:16],
                str(info.messages),
                key=info.id,
            )
        note = f"{len(infos)} conversation(s)"
        if problems:
            note += "; unreadable (left unchanged): " + "; ".join(str(p) for p in problems)
        self.query_one("#browser-note", Static).update(note)

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
        hits = self.store.search(query)
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
        title = self.store.load(conv_id).title

        def done(value: str | None) -> None:
            if value:
                self.store.rename(conv_id, value)
                self.reload()

        self.app.push_screen(TextPrompt("New title", title), done)

    def action_delete(self) -> None:
        conv_id = self.selected()
        if conv_id is None:
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.store.delete(conv_id)
                self.deleted.add(conv_id)  # the app closes its tab once this dialog closes
                self.reload()

        self.app.push_screen(
            ConfirmScreen(f"Delete conversation {conv_id}? (kept in the trash)"), done
        )

    def action_export(self) -> None:
        conv_id = self.selected()
        if conv_id is None:
            return
        from ..store import export as exporter
        from ..store.atomic import atomic_write, ensure_dir

        folder = ensure_dir(self.store.root / "exports")
        conv = self.store.load(conv_id)
        for fmt in ("md", "json"):
            atomic_write(folder / f"{conv_id}.{fmt}", exporter.export(conv, fmt))
        self.app.notify(f"Exported to {folder}/{conv_id}.md and .json", timeout=8)
