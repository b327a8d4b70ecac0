"""A yes/no dialog that says exactly what will happen before it happens."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from core.safe_text import safe_line
from tui.actions import bindings


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True (confirmed) or False.

    The title may name an agent's document: it is shown as plain text. The body is the caller's
    renderable, built with :func:`tui.widgets.formats.plain` for anything an agent wrote."""

    BINDINGS = bindings("dialog")

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 84; max-width: 95%; height: auto; max-height: 90%;
        border: thick $accent; background: $surface; padding: 1 2;
    }
    ConfirmScreen.-danger > Vertical { border: thick $error; }
    ConfirmScreen #confirm-body { height: auto; }
    ConfirmScreen Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    ConfirmScreen Button { margin-left: 2; }
    """

    def __init__(self, title: str, body: RenderableType, *, confirm: str = "Yes", danger: bool = False) -> None:
        super().__init__(classes="-danger" if danger else "")
        self._title = title
        self._body = body
        self._confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = Text(safe_line(self._title))
            yield Static(self._body, id="confirm-body")
            with Horizontal():
                yield Button("Cancel (esc)", id="cancel")
                yield Button(f"{self._confirm} (y)", id="confirm", variant="error" if self.has_class("-danger")
                             else "primary")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
