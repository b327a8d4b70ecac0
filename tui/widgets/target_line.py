"""The target line above the footer: what each key of the focused pane would act on now
(``c check in CR-043 (claude) · R repair: not a missing copy``), so a key never surprises."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui.formats import safe_rich

Targets = tuple[tuple[str, str], ...]  # (key, what it does to the highlighted row)


class TargetLine(Widget):
    DEFAULT_CSS = """
    TargetLine { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    """

    targets: reactive[Targets] = reactive(tuple, layout=True)

    def render(self) -> Text:
        line = Text()
        for i, (key, what) in enumerate(self.targets):
            if i:
                line.append(" · ", style="dim")
            line.append(key, style="bold")
            line.append(" ")
            line.append_text(safe_rich(what))  # document ids and agent names: shown, never markup
        return line
