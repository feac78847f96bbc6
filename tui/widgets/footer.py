"""The footer: the keys that matter most stay at every width."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class ChatFooter(Footer):
    """The footer, ranking keys so that the few that matter most stay at every width
    (app.tcss hides rank 3 on narrow terminals). Below 100 columns it is compact and
    leaves out the palette's key (ctrl+p, in the help), so that at 80 columns every
    rank 1 and 2 key still shows."""

    RANK = {
        "stop": 1, "new_tab": 1, "pick_model": 1, "browse": 1, "help": 1, "quit": 1,
        "close_tab": 2, "toggle_sidebar": 2,
    }  # fmt: skip

    _drawn: tuple | None = None  # the keys as last composed

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Textual draws a footer's keys only after the first focus change, which on the
        # start screen (nothing to focus) never comes before the main screen replaces
        # it: the window's first frame had no keys. The keys are known now; draw them.
        self.set_reactive(Footer._bindings_ready, True)

    def _keys(self, screen) -> tuple:
        """What the footer draws for ``screen`` now: each shown key and its state."""
        return tuple(
            (b.key, b.action, b.description, enabled, tip, b.group and b.group.description)
            for (_, b, enabled, tip) in screen.active_bindings.values()
            if b.show
        )

    def bindings_changed(self, screen) -> None:
        """Textual rebuilds the footer on every focus change; here only when the keys it
        shows change (a rebuild restyles every key: most of a focus change's cost)."""
        if self._bindings_ready and screen is self.screen and self._keys(screen) == self._drawn:
            return
        super().bindings_changed(screen)

    def on_resize(self, event) -> None:
        narrow = event.size.width < 100
        if self.compact != narrow:
            self.compact = narrow
            self.show_command_palette = not narrow

    def compose(self) -> ComposeResult:
        self._drawn = self._keys(self.screen) if self._bindings_ready else None
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                rank = self.RANK.get(widget.action.rpartition(".")[2], 3)
                widget.add_class(f"-rank-{rank}")
            yield widget
