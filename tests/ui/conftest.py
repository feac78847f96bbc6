"""Pilot fixtures: a scripted stand-in for the model, and an app per test.

``FakeEngine`` replaces only the model. The store, the widgets, the screens and the app
are the real ones, and the fake is driven the way the app drives
:class:`tui.engine.LocalEngine`: ``chat`` runs in the pane's worker thread and streams
through ``on_text``, honours ``stop_event`` between chunks, and returns a real
:class:`~tui.engine.generation.GenerationResult`.

Every test gets its own data and config folders (the app writes ``config.toml`` with
the open tabs, theme and side-panel state).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from textual import events
from textual.pilot import Pilot

from tui.app import ChatApp
from tui.engine.errors import EngineError
from tui.engine.generation import GenerationResult, GenerationStats, TurnInfo
from tui.engine.protocol import Capabilities, ChatEngine, ChatRequest
from tui.engine.reasoning import Reasoning, parts
from tui.engine.settings import GenerationSettings
from tui.engine.spec import ModelSpec
from tui.reasons import StopReason
from tui.store import SessionStore

MiB = 1024**2
FAKE_TTFT = 0.25  # seconds: the status line shows "first token 250 ms"
FAKE_TPS = 40.0  # tokens per second: the status line shows "40.0 tok/s"
HOLD_LIMIT = 30.0  # seconds a held reply waits for the test at most


@dataclass
class FakeModel:
    """What the app reads from ``engine.loaded`` (a LoadedModel without the tensors)."""

    spec: ModelSpec
    name: str = "fake-model"
    dtype: str = "float32"
    device: str = "cpu"
    context_limit: int | None = 2048
    footprint_bytes: int = 50 * MiB
    load_seconds: float = 0.5


@dataclass
class ChatCall:
    """One call of ``FakeEngine.chat``: what the model was shown."""

    messages: list[dict[str, str]]
    system_prompt: str | None
    conversation_id: str | None
    settings: dict[str, Any] | None
    continue_final: bool
    keep_cache: bool = True


def echo(messages: Sequence[dict[str, str]]) -> list[str]:
    """The default script: answer the last user message back, in three chunks."""
    last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return ["Echo", ": ", last]


class FakeEngine(ChatEngine):
    """A scripted model.

    * ``replies``: chunk lists used in call order; when it runs out, ``script`` (``echo``
      by default) makes the chunks from the messages.
    * ``delay``: seconds between chunks (``stop_event.wait``, so a stop is immediate).
    * ``hold_after``: stream this many chunks, count the reply in ``held``, then wait
      until ``release`` or the stop event is set; lets a test act "while a reply
      streams" without timing guesses. (The pane coalesces streamed text into a few
      updates a second, so what it shows may lag what the fake has streamed.)
    * ``chat_error`` / ``load_error``: raised by ``chat`` / ``load``. A failed load
      leaves ``loaded`` as it was, like the real engine.
    * ``waiting_for``: a reply first tells ``on_wait`` this (as the real engine says
      what a reply waits for) and waits until ``proceed`` is set (or it is stopped).
    """

    capabilities = Capabilities(
        kind="local",
        weights_in_memory=True,
        continue_reply=True,
        kv_cache=True,
        token_count=True,
        speculative=False,
    )

    def __init__(
        self,
        replies: Sequence[Sequence[str]] = (),
        *,
        script: Callable[[Sequence[dict[str, str]]], list[str]] = echo,
        delay: float = 0.0,
        hold_after: int | None = None,
    ) -> None:
        self.loaded: FakeModel | None = FakeModel(ModelSpec())
        self.assistant: FakeModel | None = None
        self.settings = GenerationSettings()
        self.replies: list[list[str]] = [list(r) for r in replies]
        self.script = script
        self.delay = delay
        self.hold_after = hold_after
        self.release = threading.Event()
        self.held = 0  # how many replies have reached ``hold_after`` so far
        self.chat_error: BaseException | None = None
        self.waiting_for: str | None = None
        self.proceed = threading.Event()
        self.notices: list[str] = []  # said as each turn starts, and in its result
        self.load_error: EngineError | None = None
        self.calls: list[ChatCall] = []
        self.loads: list[ModelSpec] = []
        self.forgotten: list[str] = []
        self.cache: dict[str, int] = {}
        self.threads: list[threading.Thread] = []  # where each chat ran
        self._lock = threading.Lock()

    # -- loading -------------------------------------------------------------------
    def load(self, spec: ModelSpec, progress: Callable[[float, str], None] | None = None):
        self.loads.append(spec)
        report = progress or (lambda fraction, stage: None)
        report(0.1, "resolving")
        report(0.5, "reading weights")
        if self.load_error is not None:
            raise self.load_error
        report(1.0, "ready")
        name = "fake-model" if spec.is_default else Path(spec.source).name
        model = FakeModel(spec, name=name, dtype=spec.dtype if spec.dtype != "auto" else "float32")
        with self._lock:
            self.loaded = model
            self.cache.clear()
        return model

    def load_assistant(self, spec: ModelSpec | None, progress=None) -> None:
        self.assistant = None if spec is None else FakeModel(spec, name="draft")

    # -- chatting ------------------------------------------------------------------
    def count_tokens(
        self, messages: Sequence[dict[str, str]], system_prompt: str | None = None
    ) -> int:
        words = sum(len(m["content"].split()) for m in messages)
        return words + len((system_prompt or "").split())

    def chat(
        self,
        request: ChatRequest,
        *,
        stop_event: threading.Event | None = None,
        on_text: Callable[[str], None] | None = None,
        on_start: Callable[[TurnInfo], None] | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> GenerationResult:
        stop = stop_event or threading.Event()
        messages, system_prompt = request.messages, request.system_prompt
        conversation_id, settings = request.conversation_id, request.settings
        with self._lock:
            self.threads.append(threading.current_thread())
            self.calls.append(
                ChatCall(
                    [dict(m) for m in messages],
                    system_prompt,
                    conversation_id,
                    dict(settings.values) if settings is not None else None,
                    request.continue_final,
                    request.keep_cache,
                )
            )
            chunks = self.replies.pop(0) if self.replies else self.script(messages)
        if self.loaded is None:
            raise EngineError("No model is loaded yet.")
        if self.waiting_for is not None and on_wait is not None:
            on_wait(self.waiting_for)
            deadline = time.monotonic() + HOLD_LIMIT
            while not self.proceed.wait(0.01):
                if stop.is_set() or time.monotonic() > deadline:
                    return GenerationResult("", GenerationStats(stop_reason=StopReason.STOPPED))
        if on_start is not None:
            on_start(
                TurnInfo(
                    prompt_tokens=self.count_tokens(messages, system_prompt),
                    context_limit=self.loaded.context_limit,
                    notices=list(self.notices),
                )
            )
        if self.chat_error is not None:
            raise self.chat_error
        started = time.perf_counter()
        sent: list[str] = []
        stopped = False
        for index, chunk in enumerate(chunks):
            if index == self.hold_after:
                with self._lock:
                    self.held += 1
                # wait for the test; give up after HOLD_LIMIT so a failing test cannot
                # leave a thread behind that the app's shutdown would wait for
                deadline = time.monotonic() + HOLD_LIMIT
                while not self.release.wait(0.01):
                    if stop.is_set() or time.monotonic() > deadline:
                        break
            if stop.is_set() or (self.delay and stop.wait(self.delay)):
                stopped = True
                break
            sent.append(chunk)
            if on_text is not None:
                on_text(chunk)
        stats = GenerationStats(
            prompt_tokens=self.count_tokens(messages, system_prompt),
            new_tokens=len(sent),
            time_to_first_token=FAKE_TTFT if sent else None,
            tokens_per_second=FAKE_TPS if sent else None,
            total_seconds=time.perf_counter() - started,
            stop_reason=StopReason.STOPPED if stopped else StopReason.EOS,
        )
        if conversation_id is not None:
            with self._lock:
                self.cache[conversation_id] = 4096 * (stats.prompt_tokens + len(sent))
        thought, said = parts(sent)  # Reasoning chunks are the reply's thinking
        if thought:
            stats.reasoning_tokens = sum(isinstance(c, Reasoning) for c in sent)
            stats.reasoning_seconds = 12.0
        result = GenerationResult(said, stats, reasoning=thought)
        result.notices.extend(self.notices)  # as LocalEngine does, for the command line
        return result

    def forget(self, conversation_id: str) -> None:
        with self._lock:
            self.forgotten.append(conversation_id)
            self.cache.pop(conversation_id, None)

    def cache_bytes(self, conversation_id: str | None = None) -> int:
        with self._lock:
            if conversation_id is None:
                return sum(self.cache.values())
            return self.cache.get(conversation_id, 0)


# -- fixtures ------------------------------------------------------------------------------
@dataclass
class Dirs:
    data: Path
    config: Path
    state: Path

    @property
    def config_file(self) -> Path:
        return self.config / "config.toml"

    @property
    def state_file(self) -> Path:
        return self.state / "state.toml"

    def open_tabs(self) -> list[str]:
        """The open tabs the app state records for this test's data dir."""
        from tui.state import AppState

        return AppState.load(self.data).open_tabs

    def set_open_tabs(self, tabs: list[str]) -> None:
        from tui.state import AppState

        AppState.load(self.data).set_open_tabs(tabs)

    def store(self) -> SessionStore:
        """A second, independent view of the data folder (what is really on disk)."""
        return SessionStore(self.data)


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dirs:
    found = Dirs(tmp_path / "data", tmp_path / "config", tmp_path / "state")
    monkeypatch.setenv("CHAT_TUI_CONFIG_DIR", str(found.config))
    monkeypatch.setenv("CHAT_TUI_STATE_DIR", str(found.state))
    monkeypatch.setenv("CHAT_TUI_DATA_DIR", str(found.data))
    return found


@pytest.fixture(autouse=True)
def empty_hub_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model picker scans the Hugging Face cache; make it this machine-independent."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "scan_cache_dir", lambda: SimpleNamespace(repos=[]))


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@dataclass
class Note:
    message: str
    title: str
    severity: str


@pytest.fixture
def make_app(
    dirs: Dirs, engine: FakeEngine, request: pytest.FixtureRequest
) -> Callable[..., ChatApp]:
    """``make_app(**kwargs)``: a ChatApp on this test's folders and the fake engine.

    Every notification is also recorded in ``app.notes`` (toasts expire; the record
    does not), and ``app.run_test()`` ends the app's message loop before shutting it
    down, as a real run does. Animations are off (Pilot waits for each to end: a tab
    switch took 0.5 s instead of 0.2) unless the test is marked ``animated``, as the
    tests of what animations move (the tab bar's scrolling) are."""
    animated = request.node.get_closest_marker("animated") is not None

    def make(**kwargs: Any) -> ChatApp:
        kwargs.setdefault("spec", ModelSpec())
        kwargs.setdefault("engine", engine)
        kwargs.setdefault("load_on_start", False)
        kwargs.setdefault("data_dir", str(dirs.data))
        app = ChatApp(**kwargs)
        if not animated:
            app.animation_level = "none"
        app.notes = []  # type: ignore[attr-defined]
        original = app.notify

        def notify(message: str, *, title: str = "", severity: str = "information", **rest):
            app.notes.append(Note(str(message), title, severity))  # type: ignore[attr-defined]
            return original(message, title=title, severity=severity, **rest)

        app.notify = notify  # type: ignore[method-assign]

        # ``run_test`` shuts the app down from the test while its message loop may still
        # be handling messages (a memory sample arriving as the screens are pruned).
        # A real run ends the loop first, then shuts down: do the same.
        run_test = app.run_test

        @contextlib.asynccontextmanager
        async def run_test_then_exit(*args: Any, **kwargs: Any) -> AsyncIterator[Pilot]:
            async with run_test(*args, **kwargs) as pilot:
                try:
                    await UI.ready(pilot)  # the tabs are restored before the test acts
                    yield pilot
                finally:  # also when the test failed, so its report is the only error
                    if app.is_running:
                        app.exit()
                        deadline = time.monotonic() + 10
                        while app.is_running and time.monotonic() < deadline:
                            await asyncio.sleep(0.01)

        app.run_test = run_test_then_exit  # type: ignore[method-assign]
        return app

    return make


class UI:
    """Small Pilot helpers shared by the UI tests."""

    @staticmethod
    async def wait_until(
        pilot: Pilot, condition: Callable[[], bool], what: str, timeout: float = 20.0
    ) -> None:
        """Let the app run until ``condition()`` holds; fail with ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await pilot.pause(0.02)

    @staticmethod
    async def type(pilot: Pilot, text: str) -> None:
        await pilot.press(*["ctrl+j" if c == "\n" else c for c in text])

    @staticmethod
    async def press(pilot: Pilot, *keys: str, timeout: float = 30.0) -> None:
        """``pilot.press`` then a pause, bounded: if the app crashed while handling
        the key, Pilot's wait for the screen can hang; ``async with run_test()`` then
        raises the app's exception."""
        await asyncio.wait_for(pilot.press(*keys), timeout)
        await asyncio.wait_for(pilot.pause(), timeout)

    @staticmethod
    async def ready(pilot: Pilot) -> None:
        """Wait for the main screen to have its tabs (restored or new)."""
        app = pilot.app
        await UI.wait_until(
            pilot,
            lambda: app._main is not None and app._main.ready,  # type: ignore[attr-defined]
            "the main screen",
        )

    @staticmethod
    async def paste(pilot: Pilot, text: str) -> None:
        """Paste ``text`` into the focused widget (one event: typing long text key by
        key costs a wait-for-idle per key)."""
        await UI.ready(pilot)
        await UI.wait_until(pilot, lambda: pilot.app.focused is not None, "focus to paste into")
        pilot.app.post_message(events.Paste(text))  # as the driver does; the app forwards it
        await pilot.pause()

    @staticmethod
    async def workers_done(pilot: Pilot) -> None:
        """``app.workers.wait_for_complete()``, except that a worker that was cancelled
        (an exclusive memory sample replaced by a newer one) or failed does not raise
        here: failures are what the app's own handlers turn into notifications."""
        workers = list(pilot.app.workers)
        await asyncio.gather(*(w.wait() for w in workers), return_exceptions=True)

    @classmethod
    async def settle(cls, pilot: Pilot) -> None:
        """Wait for every worker and every pane's reply to finish."""
        app = pilot.app
        await pilot.pause()
        await cls.wait_until(
            pilot,
            lambda: not any(p.generating for p in app.main_screen.panes()),  # type: ignore[attr-defined]
            "replies to finish",
        )
        await cls.workers_done(pilot)
        await pilot.pause()

    @classmethod
    async def send(cls, pilot: Pilot, text: str) -> None:
        """Paste ``text`` in the focused prompt, press Enter, wait for the reply."""
        await cls.paste(pilot, text)
        await pilot.press("enter")
        await cls.settle(pilot)

    @staticmethod
    def palette_highlighted(app: ChatApp) -> str:
        """The command palette's highlighted hit ('' when no palette or none yet)."""
        from textual.command import CommandList, CommandPalette

        screen = app.screen
        if not isinstance(screen, CommandPalette):
            return ""
        lists = list(screen.query(CommandList))
        if not lists or lists[0].highlighted is None:
            return ""
        return str(lists[0].get_option_at_index(lists[0].highlighted).prompt)

    @classmethod
    async def choose_theme(cls, pilot: Pilot, query: str, name: str) -> None:
        """ctrl+p, "Change theme", type ``query``, pick ``name``: each key waits for the
        palette that is to receive it (the theme list is a second palette, pushed as the
        first one closes; text pasted in between would land in the closing one)."""
        from textual.command import CommandInput, CommandPalette

        app = pilot.app

        def palette_input(placeholder: str) -> CommandInput | None:
            screen = app.screen
            if not isinstance(screen, CommandPalette):
                return None
            inputs = list(screen.query(CommandInput))
            if not inputs or inputs[0].placeholder != placeholder or app.focused is not inputs[0]:
                return None
            return inputs[0]

        def highlighted() -> str:
            return cls.palette_highlighted(app)

        # Enter picks the highlighted hit, and hits arrive (and reorder) as providers
        # answer: wait for the wanted one to be highlighted before each Enter.
        commands = "Search for commands…"
        await pilot.press("ctrl+p")
        await cls.wait_until(pilot, lambda: palette_input(commands) is not None, "the palette")
        await pilot.press(*"theme")  # keys, not a paste: each waits until handled
        await cls.wait_until(
            pilot, lambda: "Change the current theme" in highlighted(), "the theme command"
        )
        await pilot.press("enter")
        themes = "Search for themes…"
        await cls.wait_until(pilot, lambda: palette_input(themes) is not None, "the theme list")
        await pilot.press(*query)
        await cls.wait_until(
            pilot,
            lambda: getattr(palette_input(themes), "value", None) == query,
            f"{query!r} in the theme search",
        )
        await cls.wait_until(pilot, lambda: name in highlighted(), f"{name} highlighted")
        await pilot.press("enter")
        await cls.wait_until(pilot, lambda: app.theme == name, f"the theme {name}")

    @staticmethod
    def screen_text(app: ChatApp) -> str:
        """What is drawn on the terminal right now, as plain text lines (parsed from
        the app's own SVG screenshot), for asserting on what the user sees."""
        svg = app.export_screenshot()
        rows: dict[int, list[tuple[float, str]]] = {}
        for match in _SVG_TEXT.finditer(svg):
            x, line, text = float(match[1]), int(match[2]), html.unescape(match[3])
            rows.setdefault(line, []).append((x, text))
        lines = []
        for line in sorted(rows):
            out = ""
            for x, text in sorted(rows[line]):
                out = out.ljust(round(x / _CELL_WIDTH)) + text
            lines.append(out.rstrip().replace("\xa0", " "))
        return "\n".join(lines)

    @staticmethod
    def notes(app: ChatApp, severity: str | None = None) -> list[Note]:
        return [n for n in app.notes if severity is None or n.severity == severity]  # type: ignore[attr-defined]


_SVG_TEXT = re.compile(
    r'<text class="[^"]*" x="([\d.]+)" y="[\d.]+" textLength="[\d.]+" '
    r'clip-path="url\(#terminal-[\w-]*?line-(\d+)\)">(.*?)</text>'
)
_CELL_WIDTH = 12.2  # Rich's SVG export: 0.61 x the 20 px font size


@pytest.fixture
def ui() -> type[UI]:
    return UI


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fix what varies between runs for snapshots: the memory meter and the estimate."""
    from tui.engine import loader
    from tui.widgets.memory_meter import MemoryMeter

    def show(self: MemoryMeter, sample: Any) -> None:
        from textual.widgets import Sparkline, Static

        self.query_one(".memory-lines", Static).update(
            "RAM app  512.0 MiB\nfree     6.0 GiB / 8.0 GiB\n"
            "weights  50.0 MiB\nKV cache 0 B (this tab)"
        )
        self.query_one(Sparkline).data = [float(i % 7) for i in range(60)]

    class Estimate:
        def describe(self) -> str:
            return "135M parameters: weights 513.0 MiB (fits)"

    monkeypatch.setattr(MemoryMeter, "show", show)
    monkeypatch.setattr(loader, "estimate_for", lambda spec: Estimate())
