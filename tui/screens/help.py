"""The help screen: every key of the action table, what it does, and what the states mean."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.actions import ACTIONS, bindings, key_label

SECTIONS = (("Panel", "main"), ("In the tables", "table"),
            ("In the live stream", "stream"), ("Logs screen", "logs"), ("Dialogs", "dialog"))

STATES = (
    ("active", "bold green", "its holder called a QMS tool on it in the last ten minutes (through the gateway)"),
    ("ok", "green", "held and recently edited"),
    ("stale", "bold yellow", "the workspace copy has not changed for longer than stuck-after"),
    ("orphaned", "bold magenta", "the holder has no running container: check it in for them (c)"),
    ("missing-copy", "bold red", "checked out, but the workspace copy is gone: repair it (R)"),
    ("unmanaged", "italic cyan", "a file in a workspace that no checkout matches"),
    ("unsafe", "bold red reverse", "a link, fifo, folder or hard link where the copy should be: never read or checked in"),
)


def help_table(keymap: dict[str, str] | None = None) -> Table:
    """Every key: the key, its one name (the footer's and the palette's label) and its help line."""
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style="bold")
    table.add_column(style="bold")
    table.add_column()
    for heading, scope in SECTIONS:
        table.add_row("", Text(heading, style="bold underline"), "")
        for action in (a for a in ACTIONS if a.scope == scope):
            # the operator's keys: not markup
            table.add_row(Text(key_label(action, keymap)), Text(action.label), Text(action.help))
        table.add_row("", "", "")
    table.add_row("", Text("Document states", style="bold underline"), "")
    for name, style, meaning in STATES:
        table.add_row("", Text(name, style=style), meaning)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = bindings("help")

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 120; max-width: 100%; height: auto; max-height: 90%;
        border: thick $accent; background: $surface; padding: 1 2;
    }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "qms-panel keys"
            box.border_subtitle = "esc closes"
            yield Static(help_table(self.app.settings.keymap))
