"""What the table panes share: a bordered box, a notice line, and a table that keeps its cursor.

Both are where a pane's text reaches the screen, so both make it safe there: every cell and
every notice is a ``Text`` with control characters shown visibly, and a ``str`` is never read
as markup (an agent's file named ``[bold red]x[/]`` shows just so).
"""

from __future__ import annotations

from typing import Iterable, Sequence

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from tui.actions import bindings
from tui.formats import plain, safe_rich

Cells = Sequence[str | Text]


class PaneTable(DataTable):
    """A row-cursor table whose rows are replaced as a whole and whose cursor stays on its key.

    Arrow keys, ``j``/``k`` and home/end move the cursor (the table scope of :mod:`tui.actions`)."""

    BINDINGS = bindings("table")

    DEFAULT_CSS = """
    PaneTable { height: 1fr; background: transparent; scrollbar-size-vertical: 1; }
    PaneTable > .datatable--header { background: transparent; text-style: bold; color: $text-muted; }
    """

    def __init__(self, columns: Sequence[tuple[str, int | None]], **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, show_cursor=True, **kwargs)
        self._columns = columns
        self._shown: list[tuple[str, tuple]] = []
        self._keep: str | None = None  # the selected key across a change of columns

    def on_mount(self) -> None:
        for label, width in self._columns:
            self.add_column(label, width=width, key=label)

    def set_columns(self, columns: Sequence[tuple[str, int | None]]) -> None:
        """Show ``columns`` instead; the rows go with the old ones (replace them next), the cursor's
        key is kept for them."""
        if list(columns) == list(self._columns):
            return
        self._keep = self.selected_key
        self._columns = columns
        self._shown = []
        self.clear(columns=True)
        for label, width in columns:
            self.add_column(label, width=width, key=label)

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0, animate=False, scroll=True)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False, scroll=True)

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        return self._shown[min(self.cursor_row, len(self._shown) - 1)][0]

    def replace_rows(self, rows: Iterable[tuple[str, Cells]]) -> None:
        """Show ``rows`` (key, cells); the cursor stays on the same key when it is still there.

        The same keys in the same order only update the cells that changed (cheap); anything else
        rebuilds the table."""
        new = [(key, tuple(plain(c) if isinstance(c, str) else safe_rich(c) for c in cells)) for key, cells in rows]
        if new == self._shown:
            return
        if [k for k, _ in new] == [k for k, _ in self._shown]:
            for (key, cells), (_, old) in zip(new, self._shown):
                for (label, _), cell, was in zip(self._columns, cells, old):
                    if cell != was:
                        self.update_cell(key, label, cell)
            self._shown = new
            return
        keep = self.selected_key if self._shown else self._keep
        self._shown = new
        self.clear()
        for key, cells in new:
            self.add_row(*cells, key=key)
        keys = [key for key, _ in new]
        if keep in keys:
            self.move_cursor(row=keys.index(keep), animate=False, scroll=True)


class Pane(Vertical, can_focus=False):
    """A titled box holding a notice line above a :class:`PaneTable`."""

    DEFAULT_CSS = """
    Pane { border: round $panel-lighten-2; border-title-color: $text-muted; height: 1fr; }
    Pane:focus-within { border: round $accent; border-title-color: $accent; }
    Pane > .pane--notice { height: auto; padding: 0 1; display: none; }
    Pane > .pane--notice.-shown { display: block; }
    Pane.-stale PaneTable { text-opacity: 60%; }
    """

    COLUMNS: Sequence[tuple[str, int | None]] = ()
    NOTICE_LINES: int | None = None  # lines the notice always keeps (it grows when a long line wraps), or None

    def __init__(self, title: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = title
        self._notice: Text | None = None
        self._scheduled = False
        self._columns = self.COLUMNS

    @classmethod
    def columns_for(cls, width: int) -> Sequence[tuple[str, int | None]]:
        """The columns a pane ``width`` wide shows (a pane with narrower sets says which)."""
        return cls.COLUMNS

    def on_resize(self, event: events.Resize) -> None:
        columns = self.columns_for(event.size.width + 2)  # size: inside the border
        if columns != self._columns:
            self._columns = columns
            self.table.set_columns(columns)
            self._schedule()

    def on_mount(self) -> None:
        self._schedule()

    def _schedule(self) -> None:
        """Redraw once after the current burst of reactive changes: many watchers, one update.

        Subclasses point their watchers here (``watch_rows = Pane._schedule``) and draw in
        ``_update``."""
        if not self._scheduled and self.is_mounted:
            self._scheduled = True
            self.call_later(self._redraw)

    def _redraw(self) -> None:
        self._scheduled = False
        self._update()

    def _update(self) -> None:  # pragma: no cover - every pane draws itself
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        notice = Static(classes="pane--notice")
        if self.NOTICE_LINES:
            notice.styles.min_height = self.NOTICE_LINES
            notice.add_class("-shown")
        yield notice
        yield PaneTable(self.COLUMNS)

    @property
    def table(self) -> PaneTable:
        return self.query_one(PaneTable)

    def set_notice(self, text: str | Text | None, style: str = "") -> None:
        """Show ``text`` above the table (None hides it); unchanged text costs nothing."""
        content = safe_rich(text, style) if text else Text()
        if content == self._notice:
            return
        notice = self.query_one(".pane--notice", Static)
        if not self.NOTICE_LINES:
            notice.set_class(bool(content.plain), "-shown")
        notice.update(content)  # long lines wrap: the height follows the text
        self._notice = content

    def focus(self, scroll_visible: bool = True):
        self.table.focus(scroll_visible)
        return self
