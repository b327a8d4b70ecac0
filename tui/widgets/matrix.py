"""The access-matrix pane: for the selected container, what the vision declares, what is mounted,
what the live probes found, and the verdict. Drift in red."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual.reactive import var

from core.container_board import EngineView
from tui.formats import clock_time
from tui.widgets.pane import Pane

VERDICT_STYLE = {"ok": "green", "drift": "bold red", "missing": "bold red", "extra": "bold red",
                 "probe failed": "yellow"}
VERDICT_LABEL = {"probe failed": "no probe"}
DECLARED = {"read-write": "R/W", "baked into the image": "baked"}


def mounted_brief(text: str) -> str:
    """``bind ro /srv/pd`` -> ``bind ro``; ``via /pipe-dream: bind ro /srv/pd`` -> ``↑ bind ro``."""
    inherited = text.startswith("via ")
    words = text.split(": ", 1)[-1].split()
    brief = " ".join(words[:2]) if words and words[0] in ("bind", "volume", "tmpfs") else text
    return f"↑ {brief}" if inherited else brief


def probe_brief(text: str) -> str:
    """The live probe in a word: writable, read-only, readable, absent, not run."""
    if text.startswith("not run"):
        return "not run"
    if "write ok" in text or text.endswith("; writable"):
        return "writable"
    if "write refused" in text or "not writable" in text:
        return "read-only"
    if text.startswith("read ok"):
        return "readable"
    return text.removeprefix("sh: ")


def _value(v: Any) -> str:
    return "" if v is None else str(getattr(v, "value", v))


def _declared(v: Any) -> str:
    text = _value(v)
    return DECLARED.get(text, text)


def verdict_cell(row: Any) -> Text:
    verdict = _value(row.verdict)
    style = VERDICT_STYLE.get(verdict, "bold red" if _value(getattr(row, "severity", "")) == "high" else "")
    return Text(VERDICT_LABEL.get(verdict, verdict), style=style)


class MatrixPane(Pane):
    """Declared rules (:class:`core.layout.PathRule`) merged with an audit's rows, when there is one."""

    NOTICE_LINES = 3
    COLUMNS = (("PATH", 44), ("VERDICT", 8), ("DECLARED", 9), ("MOUNTED", 9), ("PROBE", 9))

    agent: var[str | None] = var(None)
    rules: var[tuple] = var(tuple)  # PathRule, declared for ``agent``
    audit: var[Any | None] = var(None)  # ContainerAudit of ``agent``'s container
    auditing: var[bool] = var(False)
    audited_at: var[datetime | None] = var(None)
    engine: var[EngineView] = var(EngineView)
    container_state: var[str | None] = var(None)  # the selected agent's container state; None: no container

    def __init__(self, **kwargs) -> None:
        super().__init__("Access matrix", **kwargs)
        self._paths: list[str] = []

    watch_agent = watch_rules = watch_audit = watch_auditing = watch_audited_at = watch_engine = watch_container_state = Pane._schedule

    def _update(self) -> None:
        self.border_title = f"Access matrix · {self.agent}" if self.agent else "Access matrix"
        audited = list(self.audit.rows) if self.audit is not None else []
        seen = {r.path for r in audited}
        rows = [(r.path, self._cells(r.path, _declared(r.declared) or "undeclared", r)) for r in audited]
        rows += [(rule.container_path, self._cells(rule.container_path, _declared(rule.access), None))
                 for rule in self.rules if rule.container_path not in seen]
        # keyed by position: another agent's matrix of the same shape only updates cells
        self._paths = [path for path, _ in rows]
        self.table.replace_rows((str(i), cells) for i, (_, cells) in enumerate(rows))
        self._update_notice()

    def _cells(self, path: str, declared: str, found: Any | None) -> tuple:
        if found is None:
            return (path, Text("—", style="dim"), declared, Text("—", style="dim"), Text("—", style="dim"))
        drift = _value(found.verdict) != "ok"
        style = "red" if drift else ""
        return (
            Text(path, style="bold red" if drift else ""),
            verdict_cell(found),
            declared,
            Text(mounted_brief(_value(found.mounted)) or "—", style=style),
            Text(probe_brief(_value(found.probe)) or "—", style=style),
        )

    def _selected_audit_row(self) -> Any | None:
        key = self.table.selected_key
        if self.audit is None or not self.table.has_focus or key is None:
            return None
        path = self._paths[int(key)]
        return next((r for r in self.audit.rows if r.path == path), None)

    def on_data_table_row_highlighted(self, event) -> None:
        event.stop()
        self._update_notice()

    def on_descendant_focus(self) -> None:
        self._update_notice()

    def on_descendant_blur(self) -> None:
        self._update_notice()

    def _update_notice(self) -> None:
        row = self._selected_audit_row()
        if row is not None:
            ok = _value(row.verdict) == "ok"
            self.set_notice(f"{row.path}: {_value(row.verdict)} · mounted {row.mounted}\nprobe: {row.probe}"
                            + (f"\n{row.detail}" if row.detail else ""), "green" if ok else "bold red")
            return
        if not self.agent:
            self.set_notice("Select a container to see its access matrix.", "dim")
        elif self.auditing:
            self.set_notice("Auditing: reading mounts and probing each path…", "yellow")
        elif self.audit is not None and not self.audit.audited:
            self.set_notice(f"Declared matrix only: not audited ({self.audit.note or self.audit.state}).", "dim")
        elif self.audit is None:
            if self.engine.status == "down":
                why = "the Docker engine is unreachable"
            elif self.container_state is None:
                why = f"{self.agent} has no container"
            elif self.container_state != "running":
                why = f"{self.agent}'s container is {self.container_state}; only running ones are audited"
            else:
                why = "not audited yet (press a)"
            self.set_notice(f"Declared matrix only: {why}.", "dim")
        else:
            bad = [r for r in self.audit.rows if _value(r.verdict) != "ok"]
            when = f" at {clock_time(self.audited_at, self.audited_at.tzinfo)}" if self.audited_at else ""
            if bad:
                first = bad[0]
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                self.set_notice(f"Audited{when}: {first.path} {_value(first.verdict)}{more}\n{first.detail}",
                                "bold red")
            else:
                self.set_notice(f"Audited{when}: every path matches the matrix.", "green")
