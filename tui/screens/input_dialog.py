"""A one-line question: a prompt, an input, and a check of the answer before it is accepted."""

from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from core.safe_text import safe_line
from tui.actions import bindings


class InputScreen(ModalScreen[str | None]):
    """Dismisses with the accepted text, or None when cancelled.

    ``check`` returns an error line for a bad answer (shown under the input), or None.
    """

    BINDINGS = [b for b in bindings("dialog") if b.action == "cancel"]

    DEFAULT_CSS = """
    InputScreen { align: center middle; }
    InputScreen > Vertical {
        width: 70; max-width: 95%; height: auto; border: thick $accent; background: $surface; padding: 1 2;
    }
    InputScreen #input-error { color: $error; height: auto; }
    InputScreen #input-help { color: $text-muted; height: auto; }
    """

    def __init__(self, title: str, prompt: str, *, placeholder: str = "",
                 check: Callable[[str], str | None] | None = None, blink: bool = True) -> None:
        super().__init__()
        self._title = title
        self._prompt = prompt
        self._placeholder = placeholder
        self._check = check
        self._blink = blink

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self._title
            yield Static(self._prompt)
            field = Input(placeholder=self._placeholder, id="input-value")
            field.cursor_blink = self._blink
            yield field
            yield Static("", id="input-error")
            yield Static("enter accepts · esc cancels", id="input-help")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        problem = self._check(value) if self._check else None
        if problem:
            self.query_one("#input-error", Static).update(Text(safe_line(problem)))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
