"""The model picker (ctrl+l): the bundled model, the local Hugging Face cache, recent
models, an endpoint's models, or any typed Hub id, folder or .gguf path."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.fuzzy import Matcher
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from .. import safe_text
from ..engine.controller import SERVER_PREFIX


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

    SERVER_PREFIX = SERVER_PREFIX

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
            label = Text(f"[{choice.kind}] ") + Text(safe_text.one_line(choice.label + marker))
            options.add_option(Option(label, id=choice.source))
        if query and query not in {c.source for c in self.choices}:
            options.add_option(Option(Text(f"[load] {safe_text.one_line(query)}"), id=query))
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
