"""The pane strip: the panes' names on one line, the one shown marked, while a pane fills the
screen (a small terminal shows one pane at a time; ``z`` zooms one on a large one)."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

PANE_NAMES = (("containers", "Containers"), ("matrix", "Access matrix"), ("workspace", "Workspace"),
              ("stream", "Live stream"))


class PaneTabs(Widget):
    """``Containers │ Access matrix │ [Workspace] │ Live stream   tab: next pane``."""

    DEFAULT_CSS = """
    PaneTabs { height: 1; padding: 0 1; background: $panel-darken-1; display: none; }
    """

    current: reactive[str] = reactive("containers")
    hint: reactive[str] = reactive("tab: next pane")

    def render(self) -> Text:
        line = Text()
        for i, (pane, name) in enumerate(PANE_NAMES):
            if i:
                line.append(" │ ", style="dim")
            line.append(f" {name} ", style="bold reverse" if pane == self.current else "")
        line.append(f"   {self.hint}", style="dim")
        return line
