"""The access-matrix pane: for the selected container, what the vision declares, what is mounted,
what the live probes found, and the verdict. Drift in red."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.reactive import var

from core.audit_rows import AuditRow, ContainerAudit, MountFact, ProbeFact, ProbeStatus, Severity, Verdict
from core.container_board import EngineView
from core.layout import AGENT_CAPABILITIES, Access
from core.safe_text import safe_line
from tui.formats import clock_time
from tui.widgets.pane import Pane

VERDICT_STYLE = {Verdict.OK: "green", Verdict.DRIFT: "bold red", Verdict.MISSING: "bold red",
                 Verdict.EXTRA: "bold red", Verdict.PROBE_FAILED: "yellow", Verdict.NOT_PROBED: "dim"}
HIGH_STYLE = "bold white on red"  # a high-severity problem: production writable, the Docker socket, NET_RAW
VERDICT_LABEL = {Verdict.PROBE_FAILED: "no probe", Verdict.NOT_PROBED: "unprobed"}
DECLARED = {Access.READ_WRITE: "R/W", Access.READ_ONLY: "read-only", Access.BAKED: "baked", Access.LAUNCH: "launch"}


def mounted_brief(mount: MountFact) -> str:
    """``bind ro``; ``↑ bind ro`` under a parent mount; ``image``; ``env HOME=/``; ``7 caps``."""
    if mount.kind == "launch":
        return "all caps" if mount.values == ["ALL"] else f"{len(mount.values)} caps"
    if mount.kind in ("image", "env"):
        return safe_line(mount.text)
    brief = " ".join(p for p in (mount.kind, None if mount.rw is None else ("rw" if mount.rw else "ro")) if p)
    return f"↑ {brief}" if mount.via else brief


def probe_brief(probe: ProbeFact) -> str:
    """The live probe in a word: writable, read-only, readable, absent, not run, HOME=/, +NET_RAW."""
    if probe.status is ProbeStatus.CAPABILITIES:
        extra = sorted(set(probe.values) - set(AGENT_CAPABILITIES))
        return "+" + ",".join(extra) if extra else "as set"
    if probe.status is ProbeStatus.SEEN:
        return "HOME unset" if probe.value is None else safe_line(f"HOME={probe.value}")
    if probe.status is not ProbeStatus.FOUND:
        return probe.status.value
    if probe.write is not None:
        return "writable" if probe.write else "read-only"
    return "readable" if probe.read else "unreadable"


def verdict_cell(row: AuditRow) -> Text:
    if row.severity is Severity.HIGH:
        return Text(row.verdict.value.upper(), style=HIGH_STYLE)
    return Text(VERDICT_LABEL.get(row.verdict, row.verdict.value), style=VERDICT_STYLE.get(row.verdict, ""))


def tail_depth(paths: list[str], width: int) -> int | None:
    """How many last folders every path longer than ``width`` keeps after ``…/`` so that all fit
    (the same for every row, so they read alike); None when every path fits whole."""
    long = [p.split("/") for p in paths if len(p) > width]
    if not long:
        return None
    deepest = max(len(parts) for parts in long)
    return next((k for k in range(deepest - 1, 0, -1)
                 if all(len("…/" + "/".join(parts[-k:])) <= width for parts in long)), 1)


def short_path(path: str, width: int, depth: int | None) -> str:
    """``path`` in ``width`` cells: whole when it fits, else its last ``depth`` folders after
    ``…/`` (``…/workspace``; the pane's title names the agent), cut at the end if still too long."""
    if len(path) <= width or depth is None:
        return path
    tail = "…/" + "/".join(path.split("/")[-depth:])
    return tail if len(tail) <= width else tail[: max(width - 1, 0)] + "…"


def _declared(access: Access | None) -> str:
    return "none" if access is None else DECLARED.get(access, access.value)


class MatrixPane(Pane):
    """Declared rules (:class:`core.layout.PathRule`) merged with an audit's rows, when there is one."""

    NOTICE_LINES = 3
    PATH_WIDTH = 44  # the longest path of the matrix, whole
    COLUMNS = (("PATH", PATH_WIDTH), ("VERDICT", 8), ("DECLARED", 9), ("MOUNTED", 10), ("PROBE", 9))
    # narrower: what is declared against what the probe found (the notice line tells the mount)
    NARROW_COLUMNS = (("PATH", PATH_WIDTH), ("VERDICT", 8), ("DECLARED", 9), ("PROBE", 9))

    agent: var[str | None] = var(None)
    rules: var[tuple] = var(tuple)  # PathRule, declared for ``agent``
    audit: var[ContainerAudit | None] = var(None)  # the audit of ``agent``'s container
    auditing: var[bool] = var(False)
    audited_at: var[datetime | None] = var(None)
    engine: var[EngineView] = var(EngineView)
    container_state: var[str | None] = var(None)  # the selected agent's container state; None: no container

    def __init__(self, **kwargs) -> None:
        super().__init__("Access matrix", **kwargs)
        self._paths: list[str] = []
        self._depth: int | None = None  # the folders a shortened path keeps (tail_depth)

    @classmethod
    def columns_for(cls, width: int) -> tuple:
        """Every column when the pane is ``width`` wide enough for whole paths, else the narrow set;
        the path column takes the width the others leave (at least 12)."""
        def room(columns) -> int:
            return width - 2 - sum(w + 2 for label, w in columns if label != "PATH") - 5

        columns = cls.COLUMNS if room(cls.COLUMNS) >= cls.PATH_WIDTH else cls.NARROW_COLUMNS
        path = max(min(room(columns), 60), 12)
        return (("PATH", path), *columns[1:])

    watch_agent = watch_rules = watch_audit = watch_auditing = watch_audited_at = watch_engine = watch_container_state = Pane._schedule

    def _update(self) -> None:
        self.border_title = f"Access matrix · {self.agent}" if self.agent else "Access matrix"
        audited = list(self.audit.rows) if self.audit is not None else []
        seen = {r.path for r in audited}
        paths = [r.path for r in audited] + [rule.container_path for rule in self.rules if rule.container_path not in seen]
        self._depth = tail_depth([safe_line(p) for p in paths], self._columns[0][1])
        rows = [(r.path, self._cells(r.path, _declared(r.declared), r)) for r in audited]
        rows += [(rule.container_path, self._cells(rule.container_path, _declared(rule.access), None))
                 for rule in self.rules if rule.container_path not in seen]
        # keyed by position: another agent's matrix of the same shape only updates cells
        self._paths = [path for path, _ in rows]
        self.table.replace_rows((str(i), cells) for i, (_, cells) in enumerate(rows))
        self._update_notice()

    def _cells(self, path: str, declared: str, found: AuditRow | None) -> tuple:
        shown = short_path(safe_line(path), self._columns[0][1], self._depth)
        if found is None:
            dash = Text("—", style="dim")
            cells = {"PATH": shown, "VERDICT": dash, "DECLARED": declared, "MOUNTED": dash, "PROBE": dash}
        else:
            drift = not found.ok
            style = "red" if drift else ""
            cells = {
                "PATH": Text(shown, style="bold red" if drift else ""),
                "VERDICT": verdict_cell(found),
                "DECLARED": declared,
                "MOUNTED": Text(mounted_brief(found.mount) or "—", style=style),
                "PROBE": Text(probe_brief(found.probe) or "—", style=style),
            }
        return tuple(cells[label] for label, _ in self._columns)

    def _selected_audit_row(self) -> AuditRow | None:
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
            high = "HIGH " if row.severity is Severity.HIGH else ""
            self.set_notice(f"{safe_line(row.path)}: {high}{row.verdict.value} · declared {_declared(row.declared)}"
                            f" · mounted {safe_line(row.mounted)}\n"
                            f"probe: {safe_line(row.probed)}" + (f"\n{safe_line(row.detail)}" if row.detail else ""),
                            "green" if row.ok else "bold red")
            return
        if not self.agent:
            self.set_notice("Select a container to see its access matrix.", "dim")
        elif self.auditing:
            self.set_notice("Auditing: reading mounts and probing each path…", "yellow")
        elif self.audit is not None and not self.audit.audited:
            self.set_notice(f"Declared matrix only: {safe_line(self.audit.note) or self.audit.state}.", "dim")
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
            bad = sorted(self.audit.problems, key=lambda r: r.severity is not Severity.HIGH)  # high first
            when = f" at {clock_time(self.audited_at, self.audited_at.tzinfo)}" if self.audited_at else ""
            if bad:
                first = bad[0]
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                high = "HIGH " if first.severity is Severity.HIGH else ""
                self.set_notice(f"Audited{when}: {safe_line(first.path)} {high}{first.verdict.value}{more}\n"
                                f"{safe_line(first.detail)}", "bold red")
            elif not self.audit.probed:
                self.set_notice(f"Audited{when} from the engine's facts only: {safe_line(self.audit.note)}", "dim")
            else:
                self.set_notice(f"Audited{when}: every path matches the matrix.", "green")
