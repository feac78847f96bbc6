"""The main screen: the tab bar of conversations, the side panel, the load progress and
the keys that act on tabs and models.

Dialogs (help, the model picker, the session browser) are screens pushed above this
one, so while one is open none of these keys reach here. Conversations come from the
sessions service; the model from the model controller; what to remember between runs
goes to the app state. The screen subscribes to the sessions service, so a rename or a
delete made anywhere (the browser, a slash command) relabels or closes the right tab.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Header, ProgressBar, TabbedContent, TabPane

from .. import safe_text
from ..engine.controller import EndpointTarget, LocalTarget, Target
from ..engine.errors import EngineError
from ..keys import MAIN_BINDINGS
from ..palette import ConversationProvider, ModelProvider, SlashCommandProvider
from ..store.errors import StoreError
from ..store.model import Conversation
from ..store.sessions import Deleted, Event, Renamed
from ..widgets.chat_pane import ChatPane
from ..widgets.footer import ChatFooter
from ..widgets.memory_meter import MemoryMeter
from ..widgets.settings_panel import SettingsPanel
from ..worker_messages import LoadProgress, MemorySample, ModelLoaded, ModelLoadFailed
from .model_picker import ModelPicker, Picked
from .session_browser import SessionBrowser

if TYPE_CHECKING:
    from ..engine.controller import ModelController
    from ..engine.remote import Endpoint
    from ..state import AppState
    from ..store.sessions import Sessions

TAB_TITLE_WIDTH = 24


UNSEEN_MARK = "• "
"""Before the title of a tab whose reply finished while another tab was shown."""

GENERATING_MARK = "▸ "
"""Before the title of a tab that is making a reply (streaming, or waiting to)."""


def tab_title(conv: Conversation, unseen: bool = False, generating: bool = False) -> Content:
    """The tab label: plain text (never markup), controls neutralized, cut short."""
    title = conv.title if conv.title != "New conversation" else "new"
    mark = GENERATING_MARK if generating else UNSEEN_MARK if unseen else ""
    return Content(mark + safe_text.one_line(title, TAB_TITLE_WIDTH))


class ConversationTabs(TabbedContent):
    """Tabs that ignore a stale focus report.

    Textual activates the tab holding a newly focused widget; focus is applied a moment
    after it is asked for, so after two quick tab switches the first pane's late focus
    report would switch back to it. A report for a pane that no longer holds the focus
    is dropped."""

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        focused = self.screen.focused
        if focused is None or event.tab_pane not in focused.ancestors_with_self:
            event.stop()
            return
        super()._on_tab_pane_focused(event)


class MainScreen(Screen):
    BINDINGS = MAIN_BINDINGS
    COMMANDS = {ConversationProvider, ModelProvider, SlashCommandProvider}

    def __init__(
        self,
        sessions: Sessions,
        controller: ModelController,
        state: AppState,
        *,
        system_prompt: str | None = None,
        load_on_start: bool = True,
        endpoint: Endpoint | None = None,
        endpoint_model: str = "default",
    ) -> None:
        super().__init__()
        self.sessions = sessions
        self.controller = controller
        self.state = state
        self.system_prompt = system_prompt
        self.load_on_start = load_on_start
        self.start_endpoint = endpoint
        self.start_endpoint_model = endpoint_model
        self._tab_counter = 0
        self.ready = False  # set once the tabs are restored
        self._deleted: list[str] = []  # conversations deleted while a dialog was open
        self._unseen: set[str] = set()  # tabs whose reply finished while not shown
        self._unsubscribe = sessions.subscribe(self._session_event)

    # -- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="main"):
            with Vertical(id="chat-area"):
                yield ProgressBar(total=1.0, show_eta=False, id="load-progress")
                yield ConversationTabs(id="tabs")
            with Vertical(id="sidebar"):
                yield SettingsPanel(self.controller.spec, id="settings")
                yield MemoryMeter(id="memory")
        yield ChatFooter()

    async def on_mount(self) -> None:
        self.query_one("#sidebar").display = self.state.show_sidebar
        self.query_one(SettingsPanel).endpoint_hint = self.state.last_endpoint
        await self.restore_tabs()
        if self.app.return_code is not None:
            return  # the app is ending (a hangup at start): load nothing
        self.ready = True
        # keys typed while the screen was being built, now that the prompt has the focus
        replay = getattr(self.app, "replay_early_input", None)
        if replay is not None:
            self.call_after_refresh(replay)
        self.set_interval(1.0, self.sample_memory)
        if self.start_endpoint is not None:
            self.load(EndpointTarget(self.start_endpoint, self.start_endpoint_model))
        elif self.load_on_start and not self.controller.ready.is_set():
            self.call_after_refresh(self.load, LocalTarget(self.controller.spec))
        else:
            self.query_one("#load-progress").display = False
            self._show_model()

    def on_unmount(self) -> None:
        self._unsubscribe()

    # -- tabs ------------------------------------------------------------------------------
    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#tabs", TabbedContent)

    def panes(self) -> list[ChatPane]:
        """The open conversations, in the order of the tab bar."""
        from textual.widgets._tabbed_content import ContentTab

        found = {p.parent.id: p for p in self.query(ChatPane) if p.parent is not None}
        order = [ContentTab.sans_prefix(t.id or "") for t in self.tabs.query(ContentTab)]
        ordered = [found.pop(pane_id) for pane_id in order if pane_id in found]
        return ordered + list(found.values())

    @property
    def active_pane(self) -> ChatPane | None:
        pane = self.tabs.active_pane
        if pane is None:
            return None
        found = pane.query(ChatPane)
        return found.first() if found else None

    def pane_for(self, conv_id: str) -> ChatPane | None:
        return next((p for p in self.panes() if p.conversation.id == conv_id), None)

    async def restore_tabs(self) -> None:
        opened = 0
        for conv_id in self.state.open_tabs:
            if self.app.return_code is not None:
                return  # ending (a hangup at start): the record of open tabs stays whole
            if self.pane_for(conv_id) is not None:
                continue
            try:
                conv = self.sessions.open(conv_id)
            except StoreError as exc:
                self.notify(str(exc), severity="warning", timeout=10)
                continue
            await self.add_tab(conv, remember=False)
            opened += 1
        if self.app.return_code is not None:
            return
        if not opened:
            await self.add_tab(self.new_conversation(), remember=False)
        self.remember_tabs()

    def new_conversation(self) -> Conversation:
        return self.sessions.new(
            model=self.controller.spec.to_dict(),
            system_prompt=self.system_prompt or "",
            settings=self.controller.default_settings(),
        )

    async def add_tab(self, conv: Conversation, remember: bool = True) -> ChatPane:
        """A tab for ``conv``, right after the active one, made active."""
        self._tab_counter += 1
        pane_id = f"tab-{self._tab_counter}"
        pane = ChatPane(conv, self.controller, self.sessions, id=f"chat-{self._tab_counter}")
        after = self.tabs.active or None
        await self.tabs.add_pane(TabPane(tab_title(conv), pane, id=pane_id), after=after)
        self.tabs.active = pane_id
        self.set_focus(pane.prompt)
        self._reveal_active_tab()
        self._show_conversation_settings(pane)
        if remember:
            self.remember_tabs()
        return pane

    def focus_prompt(self) -> None:
        """Focus goes home: the active tab's prompt."""
        pane = self.active_pane
        if pane is not None and pane.is_mounted:
            self.set_focus(pane.prompt)

    def relabel(self, pane: ChatPane) -> None:
        tab_pane = pane.parent
        # a tab being closed has lost its label already (its reply, stopped by the
        # close, still reports that it ended)
        if isinstance(tab_pane, TabPane) and tab_pane.id and not pane.closing:
            unseen = tab_pane.id in self._unseen
            label = tab_title(pane.conversation, unseen, pane.generating)
            self.tabs.get_tab(tab_pane.id).label = label
            if pane is self.active_pane:
                self._reveal_active_tab()  # a longer title may push it out of view

    def _reveal_active_tab(self, tries: int = 20) -> None:
        """Scroll the tab bar so the active tab shows, once the bar has laid it out (a
        tab just added, or just given a longer title, takes its new width some
        refreshes later: it is looked at again every 50 ms, for a second at most)."""
        from textual.widgets import Tabs

        def reveal(tries: int) -> None:
            found = self.tabs.query(Tabs)
            active = found.first().active_tab if found else None
            if active is None:
                return
            laid_out = active.virtual_region.width >= active.label.cell_length
            if not laid_out and tries > 0:
                self.set_timer(0.05, lambda: reveal(tries - 1))
                return
            scroll = found.first().query_one("#tabs-scroll")
            # Textual's own scroll on activation may still be animating towards where
            # the tab was before: stop it, then go where the tab is now
            self.app.animator.force_stop_animation(scroll, "scroll_x")
            scroll.scroll_to_center(active, force=True, animate=False)

        self.call_after_refresh(reveal, tries)

    def remember_tabs(self, closed: tuple[str, ...] = ()) -> None:
        """Record the open tabs (those with a file) in the app state."""
        shown = [p.conversation.id for p in self.panes()]
        on_disk = [c for c in shown if self.sessions.on_disk(c)]
        self.state.set_open_tabs(on_disk, closed=closed)

    async def open_conversation(self, conv_id: str) -> None:
        pane = self.pane_for(conv_id)
        if pane is not None:
            self.tabs.active = pane.parent.id
            self.set_focus(pane.prompt)
            return
        try:
            conv = self.sessions.open(conv_id)
        except StoreError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        await self.add_tab(conv)

    async def close_pane(self, pane: ChatPane, save: bool = True) -> None:
        """Close a tab, saving it first; if it cannot be saved, ask before losing it."""
        if save and not pane.interrupt_and_save() and pane.unsaved:
            self.ask_about_unsaved([pane], then=lambda: self._remove_pane(pane), verb="Close")
            return
        await self._remove_pane(pane)

    def ask_about_unsaved(self, panes: list[ChatPane], then, verb: str) -> None:
        """Some conversations could not be saved: say why, and let the user save them as
        new conversations (when they can no longer go where they were), retry, discard
        them, or cancel. ``then`` runs once nothing unsaved is left or they are discarded."""
        from .dialogs import ChoiceScreen

        titles = ", ".join(f"'{p.conversation.title}'" for p in panes[:3])
        more = f" and {len(panes) - 3} more" if len(panes) > 3 else ""
        reasons = " ".join(dict.fromkeys(p.unsaved_reason for p in panes))
        choices = {"retry": ("r", "Retry saving")}
        if any(p.cannot_merge for p in panes):
            choices = {"new": ("s", "Save as new")}
        choices |= {"discard": ("d", f"{verb} and discard them"), "cancel": ("escape", "Cancel")}

        async def answered(answer: str | None) -> None:
            if answer == "discard":
                await then()
                return
            if answer in ("retry", "new"):
                left = [
                    p
                    for p in panes
                    if not (p.save_as_new() if answer == "new" and p.cannot_merge else p.save())
                ]
                if left:
                    self.ask_about_unsaved(left, then, verb)
                else:
                    await then()

        self.app.push_screen(
            ChoiceScreen(f"{titles}{more}: not saved. {reasons}", choices), answered
        )

    async def _remove_pane(self, pane: ChatPane) -> None:
        conv_id = pane.conversation.id
        pane.closing = True
        pane.action_stop()
        self.controller.forget(conv_id)
        self.sessions.close(conv_id)
        await self.tabs.remove_pane(pane.parent.id)
        if not self.panes():
            await self.add_tab(self.new_conversation(), remember=False)
        self.remember_tabs(closed=(conv_id,))

    async def action_new_tab(self) -> None:
        await self.add_tab(self.new_conversation())

    async def action_close_tab(self) -> None:
        pane = self.active_pane
        if pane is not None:
            await self.close_pane(pane)

    def _cycle(self, step: int) -> None:
        panes = list(self.panes())
        ids = [p.parent.id for p in panes]
        if len(ids) < 2:
            return
        index = ids.index(self.tabs.active) if self.tabs.active in ids else 0
        index = (index + step) % len(ids)
        self._show_tab(panes[index])

    def _show_tab(self, pane: ChatPane) -> None:
        self.tabs.active = pane.parent.id
        # focus moves now, with the tab: a focus report still on its way from the tab we
        # leave then finds the focus elsewhere and is dropped, instead of switching back
        self.set_focus(pane.prompt)
        self._reveal_active_tab()

    def action_go_tab(self, number: int) -> None:
        """alt+1…9: the tab in that place in the tab bar (alt+9: the last one)."""
        panes = self.panes()
        if panes:
            self._show_tab(panes[min(number, len(panes)) - 1] if number < 9 else panes[-1])

    def action_next_tab(self) -> None:
        self._cycle(1)

    def action_previous_tab(self) -> None:
        self._cycle(-1)

    @on(TabbedContent.TabActivated)
    def tab_activated(self, event) -> None:
        pane = self.active_pane
        if pane is not None and not pane.closing:  # a key can reach a tab being closed
            if pane.parent.id in self._unseen:
                self._unseen.discard(pane.parent.id)
                self.relabel(pane)
            self.set_focus(pane.prompt)
            pane.update_status()
            self._show_conversation_settings(pane)
            self.sample_memory()

    def action_stop(self) -> None:
        """Esc: stop what the tab is doing; with nothing to stop, focus goes home to the
        prompt (from a message, the tab bar or the side panel)."""
        pane = self.active_pane
        if pane is None:
            return
        if pane.generating or pane.side_task:
            pane.action_stop()
        else:
            self.focus_prompt()

    async def run_on_pane(self, action: str) -> None:
        """Run a chat-pane action (a slash command picked in the palette)."""
        pane = self.active_pane
        if pane is not None:
            await pane.run_action(action)

    # -- what the panes and the sessions service report ---------------------------------------
    @on(ChatPane.TitleChanged)
    def _title_changed(self, message: ChatPane.TitleChanged) -> None:
        self.relabel(message.pane)
        self.remember_tabs()

    @on(ChatPane.SettingsChanged)
    def _settings_changed(self, message: ChatPane.SettingsChanged) -> None:
        if message.pane is self.active_pane:
            self._show_conversation_settings(message.pane)

    @on(ChatPane.StreamsChanged)
    def _streams_changed(self, message: ChatPane.StreamsChanged) -> None:
        """A tab started or ended a reply: its label, and every status line's count of
        the replies streaming."""
        if message.pane.is_mounted:
            self.relabel(message.pane)
        panes = self.panes()
        total = sum(p.stream.streams for p in panes)
        for pane in panes:
            if pane.streaming_total != total:
                pane.streaming_total = total
                pane.update_status()

    @on(ChatPane.ReplyFinished)
    def _reply_finished(self, message: ChatPane.ReplyFinished) -> None:
        pane = message.pane
        if pane is not self.active_pane and pane.is_mounted and pane.parent.id:
            self._unseen.add(pane.parent.id)  # marked until the tab is shown
            self.relabel(pane)
        self.remember_tabs()
        self.sample_memory()

    def _session_event(self, event: Event) -> None:
        if isinstance(event, Renamed):
            pane = self.pane_for(event.conversation.id)
            if pane is not None:
                self.relabel(pane)
        elif isinstance(event, Deleted) and self.pane_for(event.conversation_id) is not None:
            # closed once the dialog that deleted it is gone: removing a tab under an
            # open dialog would move focus behind it
            self._deleted.append(event.conversation_id)
            if self.app.screen is self:
                self.call_later(self._close_deleted)

    async def on_screen_resume(self) -> None:
        """Back from a dialog (picker, browser, help, a question): focus goes home."""
        await self._close_deleted()
        if self.ready:
            self.focus_prompt()

    async def _close_deleted(self) -> None:
        while self._deleted:
            pane = self.pane_for(self._deleted.pop())
            if pane is not None:
                await self.close_pane(pane, save=False)

    # -- the side panel -------------------------------------------------------------------
    def _show_conversation_settings(self, pane: ChatPane) -> None:
        panel = self.query_one(SettingsPanel)
        if panel.is_mounted:
            panel.show_conversation(pane.conversation.system_prompt, pane.conversation.settings)

    def action_toggle_sidebar(self) -> None:
        """ctrl+b shows or hides the side panel; either way the focus goes to the prompt
        (Tab reaches the panel's fields)."""
        sidebar = self.query_one("#sidebar")
        sidebar.display = not sidebar.display
        self.state.set_sidebar(bool(sidebar.display))
        self.focus_prompt()

    @on(SettingsPanel.Applied)
    def settings_applied(self, message: SettingsPanel.Applied) -> None:
        pane = self.active_pane
        if pane is not None and not pane.apply_settings(message.system_prompt, message.settings):
            return
        try:
            target = self.controller.target_for_choice(
                message.spec, message.backend, message.endpoint
            )
        except EngineError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        if target is None:
            self.notify("Settings applied.", timeout=3)
        else:
            self.load(target)
        self.focus_prompt()  # Apply done: back to typing

    # -- models ---------------------------------------------------------------------------
    def load_source(self, source: str, device: str | None = None) -> None:
        """Load a model by name: ``server:NAME`` on the current endpoint, a URL's server,
        anything else locally in the SPEC grammar (``./other@8bit``, ``@bf16``)."""
        try:
            self.load(self.controller.target_for_source(source, device))
        except EngineError as exc:
            self.notify(str(exc), title="Model not loaded", severity="error", timeout=10)

    async def action_model(self, source: str = "") -> None:
        """``/model [MODEL][@PRECISION]``: load it; no argument opens the picker."""
        if source.strip():
            self.load_source(source.strip())
        else:
            await self.action_pick_model()

    def action_endpoint(self, url: str = "") -> None:
        """``/endpoint URL``: chat through that OpenAI-compatible server."""
        if not url.strip():
            self.notify(
                "Give the server's URL, e.g. /endpoint http://127.0.0.1:8000/v1.",
                severity="warning",
            )
            return
        text = url.strip()
        if "://" not in text:
            text = "http://" + text
        self.load_source(text)

    async def action_pick_model(self) -> None:
        from ..engine import devices

        model = self.controller.model
        endpoint = getattr(self.controller.engine, "endpoint", None)
        endpoint = endpoint if self.controller.on_endpoint else None
        current = model.spec.source if model is not None else None
        if endpoint is not None and current:
            current = ModelPicker.SERVER_PREFIX + current
        probed, _precisions = devices.peek()  # never probes on the UI thread
        names = ["auto", *(d.name for d in probed)] if probed else ["auto", "cpu"]

        def chosen(picked: Picked | None) -> None:
            if picked is not None:
                self.load_source(picked.spec_text, picked.device)
            self.focus_prompt()

        self.app.push_screen(
            ModelPicker(self.state.recent_models, current, endpoint, names), chosen
        )

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load(self, target: Target) -> None:
        spec = target.spec if isinstance(target, LocalTarget) else None
        name = spec.display_name if spec is not None else target.endpoint.host
        self.post_message(LoadProgress(0.0, f"loading {name}"))
        try:
            model = self.controller.load(target, lambda f, s: self.post_message(LoadProgress(f, s)))
        except EngineError as exc:
            self.post_message(ModelLoadFailed(str(exc), spec))
            return
        self.post_message(ModelLoaded(model))

    def on_load_progress(self, message: LoadProgress) -> None:
        bar = self.query_one("#load-progress", ProgressBar)
        bar.display = True
        bar.update(progress=message.fraction)
        self.controller.loading(message.stage, message.fraction)
        for pane in self.panes():
            pane.update_status()

    def _show_model(self) -> None:
        model = self.controller.model
        self.query_one(MemoryMeter).remote = self.controller.on_endpoint
        if model is None:
            return
        self.query_one(SettingsPanel).show_spec(model.spec, self.controller.endpoint_url)
        self.sub_title = safe_text.one_line(
            f"{model.name} · {model.spec.precision_label}/{model.dtype} · {model.device}"
        )
        for pane in self.panes():
            pane.update_status()

    def on_model_loaded(self, message: ModelLoaded) -> None:
        model = message.model
        self.query_one("#load-progress").display = False
        if self.controller.on_endpoint:
            self.state.remember_endpoint(self.controller.endpoint_url or "")
            self.notify(f"Chatting through {model.device} with {model.name}.", timeout=4)
        else:
            self.state.remember_model(model.spec.to_dict())
            self.notify(f"Loaded {model.name} in {model.load_seconds:.1f} s.", timeout=4)
            if model.spec.device == "auto" or model.device == "cpu":
                self.query_one(SettingsPanel).probe_hardware(model.device)
        self._show_model()
        self.sample_memory()

    def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        self.query_one("#load-progress").display = False
        tail = self.controller.load_failed()
        self._show_model()
        for pane in self.panes():
            pane.update_status()
        self.notify(message.error + tail, title="Model not loaded", severity="error", timeout=20)

    # -- memory ---------------------------------------------------------------------------
    def sample_memory(self) -> None:
        pane = self.active_pane
        self._sample_memory(pane.conversation.id if pane else None)

    @work(thread=True, exclusive=True, group="memory", exit_on_error=False)
    def _sample_memory(self, conv_id: str | None) -> None:
        from ..engine import memory

        model = self.controller.model
        weights = model.footprint_bytes if model is not None else 0
        cache = self.controller.cache_bytes(conv_id)
        every = self.controller.all_cache_bytes()
        self.post_message(MemorySample(memory.snapshot(), weights, cache, every))

    def on_memory_sample(self, message: MemorySample) -> None:
        self.query_one(MemoryMeter).show(message)

    # -- dialogs ----------------------------------------------------------------------------
    def action_browse(self) -> None:
        def chosen(conv_id: str | None) -> None:
            if conv_id and (self.sessions.is_open(conv_id) or self.sessions.on_disk(conv_id)):
                self.app.call_later(self.open_conversation, conv_id)

        self.app.push_screen(SessionBrowser(self.sessions), chosen)
