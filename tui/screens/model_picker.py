"""The model picker (ctrl+l): the bundled model, the local Hugging Face cache, recent
models, an endpoint's models, any typed Hub id, folder or .gguf path, or a server's URL;
with the precision and device to load it at."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.fuzzy import Matcher
from textual.message import Message
from textual.widgets import Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from .. import safe_text
from ..engine.controller import SERVER_PREFIX
from ..widgets.select import SafeSelect
from .base import Dialog


@dataclass
class ModelChoice:
    source: str
    label: str
    kind: str  # bundled, cached, recent, typed


@dataclass(frozen=True)
class Picked:
    """What the picker chose: a model (or ``server:NAME``, or a server's URL), and the
    precision (``@bf16`` style tag without the @) and device to load it at (None: as the
    loaded model has them)."""

    source: str
    precision: str | None = None
    device: str | None = None

    @property
    def spec_text(self) -> str:
        """The choice in the SPEC grammar ``MODEL[@PRECISION]`` (a URL or a server
        model as it is)."""
        if self.precision and not self.source.startswith((SERVER_PREFIX, "http://", "https://")):
            return f"{self.source}@{self.precision}"
        return self.source


SAME = "same"
PRECISION_CHOICES = [
    ("precision: as loaded", SAME),
    ("fp32", "fp32"),
    ("bf16", "bf16"),
    ("fp16", "fp16"),
    ("8-bit", "8bit"),
    ("4-bit nf4", "4bit"),
]


def _is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


class ModelPicker(Dialog[Picked | None]):
    """Pick a model: the bundled default, the local Hugging Face cache, recent ones, any
    typed Hub id / folder / .gguf path, or a server's URL. Fuzzy filter; Tab reaches the
    precision and device; Enter loads."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="picker.cancel"),
        Binding("down", "cursor(1)", "Down", show=False, id="picker.down"),
        Binding("up", "cursor(-1)", "Up", show=False, id="picker.up"),
    ]

    @dataclass
    class CacheScanned(Message):
        choices: list[ModelChoice]
        cached: int | None  # models in the Hub cache; None: no cache folder

    SERVER_PREFIX = SERVER_PREFIX

    def __init__(
        self,
        recent: list[str],
        current: str | None = None,
        endpoint=None,
        devices: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.devices = devices or ["auto", "cpu"]
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
            yield Label(
                "Load a model: pick one, or type a Hub id, a folder, a .gguf path or a "
                "server's http:// URL. Tab: precision and device."
            )
            yield Input(placeholder="filter, or a model to load", id="picker-input")
            with Horizontal(id="picker-options"):
                yield SafeSelect(
                    PRECISION_CHOICES, value=SAME, allow_blank=False, id="picker-precision"
                )
                yield SafeSelect(
                    [("device: as loaded", SAME)] + [(d, d) for d in self.devices],
                    value=SAME,
                    allow_blank=False,
                    id="picker-device",
                )
            yield OptionList(id="picker-list")
            yield Static("scanning the Hugging Face cache…", id="picker-note", classes="note")

    def on_mount(self) -> None:
        self.refresh_list("")
        self.query_one(Input).focus()
        self.scan_cache()

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def scan_cache(self) -> None:
        choices: list[ModelChoice] = []
        cached: int | None = None
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
            cached = 0
            for repo in sorted(info.repos, key=lambda r: r.repo_id):
                if repo.repo_type == "model":
                    size = repo.size_on_disk / 1e9
                    cached += 1
                    choices.append(
                        ModelChoice(repo.repo_id, f"{repo.repo_id}  ({size:.1f} GB)", "cached")
                    )
        except Exception:  # no cache folder (CacheNotFound), or one that cannot be read
            cached = None
        self.post_message(self.CacheScanned(choices, cached))

    def on_model_picker_cache_scanned(self, message: CacheScanned) -> None:
        known = {c.source for c in self.choices}
        self.choices += [c for c in message.choices if c.source not in known]
        count = message.cached
        if count is None:
            note = "no Hugging Face cache on this machine"
        else:
            note = f"{count} model{'' if count == 1 else 's'} in the Hugging Face cache"
        servers = sum(1 for c in message.choices if c.kind == "server")
        if servers:
            note += f"; {servers} on the server"
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
            kind = "[server] connect to" if _is_url(query) else "[load]"
            options.add_option(Option(Text(f"{kind} {safe_text.one_line(query)}"), id=query))
        if options.option_count:
            options.highlighted = 0

    @on(Input.Changed, "#picker-input")
    def filter_changed(self, event: Input.Changed) -> None:
        self.refresh_list(event.value)

    @on(Input.Submitted, "#picker-input")
    def input_submitted(self, event: Input.Submitted) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is not None and options.option_count:
            self._choose(options.get_option_at_index(options.highlighted).id)
        elif event.value.strip():
            self._choose(event.value.strip())

    @on(OptionList.OptionSelected)
    def option_selected(self, event: OptionList.OptionSelected) -> None:
        self._choose(event.option.id)

    def _choose(self, source: str | None) -> None:
        if not source:
            return
        precision = self.query_one("#picker-precision", Select).value
        device = self.query_one("#picker-device", Select).value
        self.dismiss(
            Picked(
                source,
                None if precision == SAME else str(precision),
                None if device == SAME else str(device),
            )
        )

    def action_cursor(self, step: int) -> None:
        options = self.query_one(OptionList)
        if options.option_count:
            current = options.highlighted or 0
            options.highlighted = max(0, min(options.option_count - 1, current + step))

    def action_cancel(self) -> None:
        self.dismiss(None)
