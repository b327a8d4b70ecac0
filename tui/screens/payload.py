"""The full payload of one stream line (a JSON-RPC message, a Docker event, an audit record).

Everything here came from a server, an agent or the engine: it is shown with its control
characters visible (JSON keeps ``\\u001b``; a C1 control or a bidi override in a string is
escaped the same way) and never read as markup."""

from __future__ import annotations

from datetime import tzinfo

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.actions import bindings
from core.safe_text import safe_text
from tui.formats import clock_time, short
from tui.widgets.stream import StreamLine


class PayloadScreen(ModalScreen[None]):
    BINDINGS = bindings("payload")

    DEFAULT_CSS = """
    PayloadScreen { align: center middle; }
    PayloadScreen > VerticalScroll {
        width: 90%; height: 80%; border: thick $accent; background: $surface; padding: 0 1;
    }
    PayloadScreen #payload-summary { height: auto; margin-bottom: 1; text-style: bold; }
    """

    def __init__(self, line: StreamLine, tz: tzinfo | None = None) -> None:
        super().__init__()
        self.line = line
        self.tz = tz

    def compose(self) -> ComposeResult:
        line = self.line
        with VerticalScroll() as box:
            box.border_title = Text(f"{line.source} · {short(line.agent, 40)} · {clock_time(line.time, self.tz)}")
            box.border_subtitle = "esc closes"
            yield Static(Text(safe_text(line.summary)), id="payload-summary")
            if line.payload is None:
                yield Static("(no payload)")
            elif isinstance(line.payload, str):
                yield Static(Text(safe_text(line.payload)))
            else:
                yield Static(Syntax(safe_text(line.payload_text()), "json", word_wrap=True,
                                    background_color="default"))
