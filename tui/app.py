"""The Textual app (minimal until the app issue: one conversation, streamed)."""

from __future__ import annotations

import argparse
import threading
from dataclasses import dataclass

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Input, Markdown, ProgressBar, Static
from textual.worker import Worker, WorkerState


@dataclass
class LoadProgress(Message):
    fraction: float
    stage: str


@dataclass
class ModelReady(Message):
    description: str


@dataclass
class TokenChunk(Message):
    text: str


@dataclass
class GenerationFinished(Message):
    text: str
    stats: str
    error: str | None


class ChatApp(App):
    TITLE = "chat-tui"
    CSS = """
    #log { height: 1fr; }
    #status { height: 1; color: $text-muted; }
    .user { color: $accent; }
    """
    BINDINGS = [
        Binding("escape", "stop", "Stop", id="stop"),
        Binding("ctrl+q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, spec, settings_args: list[str], system_prompt: str | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.settings_args = settings_args
        self.system_prompt = system_prompt
        self.engine = None
        self.messages: list[dict[str, str]] = []
        self.stop_event = threading.Event()
        self.reply: Markdown | None = None
        self.stream = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield VerticalScroll(id="log")
        yield ProgressBar(total=1.0, id="progress", show_eta=False)
        yield Static("loading…", id="status")
        yield Input(placeholder="Type a message, Enter to send", id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self.load_model()

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load_model(self) -> None:
        from .engine import Engine, GenerationSettings

        settings = GenerationSettings()
        settings.update(self.settings_args)
        engine = Engine(settings=settings)
        loaded = engine.load(self.spec, lambda f, s: self.post_message(LoadProgress(f, s)))
        self.engine = engine
        self.post_message(
            ModelReady(
                f"{loaded.name} · {loaded.spec.precision_label}/{loaded.dtype} · {loaded.device}"
            )
        )

    def on_load_progress(self, message: LoadProgress) -> None:
        self.query_one(ProgressBar).update(progress=message.fraction)
        self.query_one("#status", Static).update(message.stage)

    def on_model_ready(self, message: ModelReady) -> None:
        self.query_one(ProgressBar).display = False
        self.query_one("#status", Static).update(message.description)

    @on(Input.Submitted)
    async def send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text or self.engine is None or self.reply is not None:
            if self.engine is None:
                self.notify("The model is still loading.")
            return
        event.input.clear()
        log = self.query_one("#log")
        self.messages.append({"role": "user", "content": text})
        await log.mount(Static(f"> {text}", classes="user"))
        self.reply = Markdown("")
        await log.mount(self.reply)
        self.stream = Markdown.get_stream(self.reply)
        self.stop_event = threading.Event()
        self.generate(list(self.messages), self.stop_event)

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def generate(self, messages: list[dict[str, str]], stop: threading.Event) -> None:
        result = self.engine.chat(
            messages,
            system_prompt=self.system_prompt,
            conversation_id="main",
            stop_event=stop,
            on_text=lambda chunk: self.post_message(TokenChunk(chunk)),
        )
        self.post_message(
            GenerationFinished(result.text, result.stats.describe(), result.stats.error)
        )

    async def on_token_chunk(self, message: TokenChunk) -> None:
        if self.stream is not None:
            await self.stream.write(message.text)
            self.query_one("#log", VerticalScroll).scroll_end(animate=False)

    async def on_generation_finished(self, message: GenerationFinished) -> None:
        if self.stream is not None:
            await self.stream.stop()
        self.messages.append({"role": "assistant", "content": message.text})
        self.stream = None
        self.reply = None
        self.query_one("#status", Static).update(message.stats)
        if message.error:
            self.notify(message.error, severity="error", timeout=10)

    def action_stop(self) -> None:
        self.stop_event.set()

    @on(Worker.StateChanged)
    def worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(str(error), title="Error", severity="error", timeout=15)
            self.query_one("#status", Static).update(f"error: {error}")


def run_app(ns: argparse.Namespace, spec, settings_args: list[str]) -> int:
    ChatApp(spec, settings_args, ns.system_prompt).run()
    return 0
