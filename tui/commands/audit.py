"""`qms-panel audit`: each running agent container against the access matrix (mounts, capabilities, live probes).

Containers qms-panel did not make are judged from the engine's facts only, with no exec into
them, unless ``--probe-unmanaged``. Exit 1 when any row is a problem; high-severity drift is
listed once more at the end.
"""

from __future__ import annotations

from core.access_audit import AuditReport, ContainerAudit, Severity, audit_all
from core.errors import ContainerNotFound
from core.layout import Access
from core.safe_text import safe_line
from core.services import build_services
from core.settings import check_agent_id
from tui.cli_common import EXIT_FAILED, EXIT_OK, print_json, settings_from_args

NAME = "audit"
HELP = "check each running agent container's mounts, capabilities and live access against the access matrix"

_DECLARED = {Access.READ_WRITE: "rw", Access.READ_ONLY: "ro", Access.BAKED: "baked", Access.LAUNCH: "launch",
             None: "-"}
_COLUMNS = ("path", "declared", "mounted", "probe", "verdict")


def add_arguments(parser) -> None:
    parser.add_argument("--agent", metavar="A", help="audit only this agent's container(s)")
    parser.add_argument("--probe-unmanaged", action="store_true",
                        help="also run the live probes (an exec that writes and removes a file) in containers "
                             "qms-panel did not make")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    settings = settings_from_args(args)
    agent = check_agent_id(args.agent) if args.agent is not None else None
    report = audit_all(build_services(settings).containers, settings, agent=agent, probe_unmanaged=args.probe_unmanaged)
    if agent is not None and not report.containers:
        raise ContainerNotFound(f"no container of agent {agent!r} for project {settings.project_root}")
    if args.json:
        print_json(report)
    else:
        print_report(report)
    return EXIT_OK if report.ok else EXIT_FAILED


def print_report(report: AuditReport) -> None:
    if not report.containers:
        print("no agent containers for this project")
        return
    for audit in report.containers:
        _print_container(audit)
        print()
    problems = report.problems
    high = [r for r in problems if r.severity is Severity.HIGH]
    unprobed = [c for c in report.containers if c.audited and not c.probed]
    if report.ok:
        print(f"all ok: {sum(c.audited for c in report.containers)} container(s) audited"
              + (f" ({len(unprobed)} from the engine's facts only)" if unprobed else ""))
        return
    for line in report.high_drift:
        print(f"HIGH: {safe_line(line)}")
    print(f"NOT ok: {len(problems)} problem(s), {len(high)} of high severity")


def _print_container(audit: ContainerAudit) -> None:
    who = f"agent {safe_line(audit.agent)} (from {audit.agent_source})" if audit.agent else "agent unknown"
    kind = "managed" if audit.managed else "NOT made by qms-panel"
    user = f", probes as uid {safe_line(audit.probe_user)}" if audit.probe_user else ""
    print(f"{safe_line(audit.container)} ({audit.container_id[:12]}): {who}, {kind}, {audit.state}{user}")
    if audit.note:
        print(f"  {safe_line(audit.note)}")
    if not audit.rows:
        return
    table = [[safe_line(r.path), _DECLARED[r.declared], safe_line(r.mounted), safe_line(r.probed),
              r.verdict.value if r.ok else f"{r.verdict.value.upper()} ({r.severity})"] for r in audit.rows]
    widths = [max(len(c), *(len(line[i]) for line in table)) for i, c in enumerate(_COLUMNS)]
    print("  " + "  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths)).rstrip())
    for row, line in zip(audit.rows, table):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        if not row.ok and row.detail:
            print(f"    -> {safe_line(row.detail)}")
