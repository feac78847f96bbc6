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

    def on_resize(self, event) -> None:
        narrow = event.size.width < 100
        if self.compact != narrow:
            self.compact = narrow
            self.show_command_palette = not narrow

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                rank = self.RANK.get(widget.action.rpartition(".")[2], 3)
                widget.add_class(f"-rank-{rank}")
            yield widget
