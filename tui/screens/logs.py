"""The logs screen: one container's log, following new lines as they come.

A container writes what it likes (colours, cursor moves, a terminal title): each line is shown
with its control characters visible."""

from __future__ import annotations

from typing import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Log, Static

from core.safe_text import safe_line
from tui.actions import bindings


class LogsScreen(Screen[None]):
    """Shows lines handed to :meth:`append`; the app's worker reads them (this screen does no I/O)."""

    BINDINGS = bindings("logs")

    DEFAULT_CSS = """
    LogsScreen #logs-title { height: 1; background: $panel; padding: 0 1; text-style: bold; }
    LogsScreen Log { height: 1fr; border: round $panel-lighten-2; overflow: auto auto; }
    LogsScreen #logs-state { height: 1; padding: 0 1; color: $text-muted; }
    """

    following: reactive[bool] = reactive(True)
    state: reactive[str] = reactive("connecting…")

    def __init__(self, agent: str, container: str) -> None:
        super().__init__()
        self.agent = agent
        self.container = container

    def compose(self) -> ComposeResult:
        yield Static(Text(safe_line(f"Logs · {self.agent} · {self.container}")), id="logs-title")
        yield Log(max_lines=10_000, id="logs")
        yield Static(self._state_text(), id="logs-state")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Log).focus()

    def append(self, lines: Iterable[str]) -> None:
        self.query_one(Log).write_lines((safe_line(line) for line in lines), scroll_end=self.following)

    def watch_following(self) -> None:
        for log in self.query(Log).results(Log):
            log.auto_scroll = self.following
            if self.following:
                log.scroll_end(animate=False)
        self._show_state()

    def watch_state(self) -> None:
        self._show_state()

    def _state_text(self) -> str:
        return f"{self.state} · {'following' if self.following else 'not following (f follows)'}"

    def _show_state(self) -> None:
        for label in self.query("#logs-state").results(Static):
            label.update(Text(self._state_text()))

    def action_toggle_follow(self) -> None:
        self.following = not self.following

    def action_close(self) -> None:
        self.dismiss(None)
