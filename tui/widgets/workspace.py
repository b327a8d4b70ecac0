"""The workspace pane: every checked-out document, who holds it since when, and whether it looks stuck."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual.message import Message
from textual.reactive import var
from textual.widgets import DataTable

from core.gateway.calls_board import GatewayView
from core.qms_state import CheckoutRow
from core.safe_text import safe_line
from tui.formats import plain, short, since
from tui.widgets.pane import Pane

STATE_STYLE = {
    "active": "bold green",
    "ok": "green",
    "stale": "bold yellow",
    "orphaned": "bold magenta",
    "missing-copy": "bold red",
    "unmanaged": "italic cyan",
    "unsafe": "bold red reverse",
}
STATE_ORDER = {"unsafe": -1, "missing-copy": 0, "orphaned": 1, "stale": 2, "active": 3, "ok": 3, "unmanaged": 4}
STATE_HINT = {
    "active": "active: its holder called a QMS tool on it in the last minutes (through the gateway)",
    "missing-copy": "missing copy: press R to repair",
    "orphaned": "orphaned: no running container; c checks it in",
    "stale": "stale: copy untouched for a while",
    "unsafe": "unsafe: not a regular file in the workspace; checkin and repair refuse it",
}


def state_of(row: CheckoutRow) -> str:
    return str(row.state)


def row_key(row: CheckoutRow) -> str:
    return f"{row.holder or '?'}/{row.doc_id}/{state_of(row) == 'unmanaged'}"


class WorkspacePane(Pane):
    """Rows are :class:`core.qms_state.CheckoutRow` (unmanaged workspace copies included)."""

    COLUMNS = (("DOCUMENT", 16), ("TITLE", 28), ("STATUS", 18), ("HELD BY", 10), ("HELD SINCE", 12),
               ("LAST EDIT", 12), ("STATE", 14))
    # a narrow pane (80 columns): no status, the title takes what the others leave
    NARROW_COLUMNS = (("DOCUMENT", 10), ("TITLE", 12), ("HELD BY", 9), ("HELD SINCE", 10), ("LAST EDIT", 10),
                      ("STATE", 12))

    NOTICE_LINES = 2

    rows: var[list[CheckoutRow]] = var(list)
    warnings: var[int] = var(0)  # files the scan could not read
    link_down: var[str] = var("")  # the link's reason while it is down
    scanned: var[bool] = var(False)
    now: var[datetime | None] = var(None)
    gateway: var[GatewayView] = var(GatewayView)  # whose calls touched which document, recently

    @dataclass
    class Selected(Message):
        """The cursor moved to another document (None: the table is empty)."""

        row: CheckoutRow | None

    def __init__(self, **kwargs) -> None:
        super().__init__("Workspace", **kwargs)
        self._announced: str | None = None

    @classmethod
    def columns_for(cls, width: int) -> tuple:
        """Every column when the pane is ``width`` wide enough, else the narrow set with the title
        as wide as the others leave it."""
        if width >= sum(w + 2 for _, w in cls.COLUMNS) + 2:
            return cls.COLUMNS
        title = width - 2 - sum(w + 2 for label, w in cls.NARROW_COLUMNS if label != "TITLE") - 5
        return tuple((label, max(title, 8) if label == "TITLE" else w) for label, w in cls.NARROW_COLUMNS)


    watch_rows = watch_warnings = watch_link_down = watch_scanned = watch_now = watch_gateway = Pane._schedule

    def _shown_state(self, row: CheckoutRow) -> str:
        """The row's state, or ``active`` while its holder calls tools on it (then an old file is
        not stale: the agent is working in the QMS)."""
        state = state_of(row)
        calls = self.gateway.agents.get(row.holder or "")
        if state in ("ok", "stale") and calls is not None and row.doc_id in calls.active_docs:
            return "active"
        return state

    @property
    def selected(self) -> CheckoutRow | None:
        key = self.table.selected_key
        return next((r for r in self.rows if row_key(r) == key), None)

    def _update(self) -> None:
        ordered = sorted(self.rows, key=lambda r: (STATE_ORDER.get(state_of(r), 9), r.holder or "", r.doc_id))
        self.table.replace_rows((row_key(r), self._cells(r)) for r in ordered)
        stuck = sum(self._shown_state(r) in ("missing-copy", "orphaned", "stale") for r in self.rows)
        held = sum(state_of(r) != "unmanaged" for r in self.rows)
        unsafe = sum(state_of(r) == "unsafe" for r in self.rows)
        self.border_title = (f"Workspace · {held} checked out" + (f" · {stuck} stuck" if stuck else "")
                             + (f" · {unsafe} unsafe" if unsafe else ""))
        self._update_notice()
        key = self.table.selected_key
        if key != self._announced:
            self._announced = key
            self.post_message(self.Selected(self.selected))

    def _cells(self, row: CheckoutRow) -> tuple:
        state = self._shown_state(row)
        now = self.now
        status = " ".join(p for p in (row.status or "", f"v{row.version}" if row.version else "") if p)
        style = STATE_STYLE.get(state, "")
        widths = dict(self._columns)
        cells = {
            "DOCUMENT": plain(row.doc_id, "bold" if state != "unmanaged" else "italic"),  # a file name: every byte
            "TITLE": short(row.title or "", widths.get("TITLE", 28)),
            "STATUS": status or "—",
            "HELD BY": row.holder or "—",
            "HELD SINCE": since(row.held_since, now) if now else "—",
            "LAST EDIT": since(row.last_edit, now) if now and row.last_edit else Text("no copy", style="red"),
            "STATE": Text(state, style=style),
        }
        return tuple(cells[label] for label, _ in self._columns)

    def _update_notice(self) -> None:
        parts: list[tuple[str, str]] = []
        if self.link_down:
            parts.append((f"MCP link down ({short(self.link_down, 60)}): checkin, checkout and repair wait "
                          "for it to reconnect.", "bold red"))
        if not self.scanned:
            parts.append(("Reading the project…", "dim"))
        elif not self.rows:
            parts.append(("No documents checked out.", "dim"))
        selected = self.selected
        hint = STATE_HINT.get(state_of(selected)) if selected is not None else None
        if hint and state_of(selected) == "unsafe" and selected.workspace_file is not None:
            hint = (f"unsafe: {safe_line(selected.workspace_file.name)} {selected.workspace_file.unsafe}; "
                    "checkin and repair refuse it")
        if hint:
            parts.append((f"{selected.doc_id}: {hint}", STATE_STYLE[state_of(selected)]))
        if self.warnings:
            parts.append((f"{self.warnings} file(s) could not be read (see `qms-panel status`).", "yellow"))
        if not parts:
            self.set_notice(None)
            return
        text = Text()
        for i, (line, style) in enumerate(parts[: self.NOTICE_LINES]):
            text.append(("\n" if i else "") + line, style=style)
        self.set_notice(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        key = self.table.selected_key
        if key != self._announced:
            self._announced = key
            self.post_message(self.Selected(self.selected))
            self._update_notice()
