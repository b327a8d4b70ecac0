"""A yes/no dialog that says exactly what will happen before it happens, optionally asking why."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from core.safe_text import safe_line
from tui.actions import bindings


@dataclass(frozen=True)
class Confirmation:
    """The dialog's answer; true when confirmed. ``reason``: what the operator typed in the reason
    field (None when it was empty, not offered, or the dialog was cancelled), for the action log."""

    confirmed: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.confirmed


class ConfirmScreen(ModalScreen[Confirmation]):
    """Dismisses with a :class:`Confirmation` (truthy when confirmed).

    The title may name an agent's document: it is shown as plain text. The body is the caller's
    renderable, built with :func:`tui.formats.plain` for anything an agent wrote.

    ``reason``: offer an optional one-line reason field; it has the focus, so the operator types
    at once, ``enter`` confirms and ``esc`` cancels.
    """

    BINDINGS = bindings("dialog")

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 84; max-width: 95%; height: auto; max-height: 90%;
        border: thick $accent; background: $surface; padding: 1 2;
    }
    ConfirmScreen.-danger > Vertical { border: thick $error; }
    ConfirmScreen #confirm-body { height: auto; }
    ConfirmScreen #confirm-reason { margin-top: 1; }
    ConfirmScreen #confirm-reason-help { color: $text-muted; height: auto; }
    ConfirmScreen Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    ConfirmScreen Button { margin-left: 2; }
    """

    def __init__(self, title: str, body: RenderableType, *, confirm: str = "Yes", danger: bool = False,
                 reason: bool = False, blink: bool = True) -> None:
        super().__init__(classes="-danger" if danger else "")
        self._title = title
        self._body = body
        self._confirm = confirm
        self._ask_reason = reason
        self._blink = blink

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = Text(safe_line(self._title))
            yield Static(self._body, id="confirm-body")
            if self._ask_reason:
                field = Input(placeholder="reason (optional; kept in the action log)", id="confirm-reason")
                field.cursor_blink = self._blink
                yield field
                yield Static(f"enter: {self._confirm.lower()} · esc: cancel", id="confirm-reason-help")
            with Horizontal():
                yield Button("Cancel (esc)", id="cancel")
                yield Button(f"{self._confirm} ({'enter' if self._ask_reason else 'y'})", id="confirm", variant="error" if self.has_class("-danger")
                             else "primary")

    def on_mount(self) -> None:
        self.query_one("#confirm-reason" if self._ask_reason else "#cancel").focus()

    def _answer(self, confirmed: bool) -> None:
        reason = None
        if confirmed and self._ask_reason:
            reason = self.query_one("#confirm-reason", Input).value.strip() or None
        self.dismiss(Confirmation(confirmed, reason))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._answer(event.button.id == "confirm")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._answer(True)

    def action_confirm(self) -> None:
        self._answer(True)

    def action_cancel(self) -> None:
        self._answer(False)
