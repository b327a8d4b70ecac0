"""``qms-panel status``: the panel's four panes as one report, for scripts.

The project's agent containers (with the engine's state), every checked-out document with its
state (ok, stale, orphaned, missing-copy, unmanaged), inbox counts, and the MCP link, connected
once for the report. Exit 0 when the engine answers and the link connects, else 1 (the report is
printed either way).
"""

from __future__ import annotations

import argparse
from datetime import datetime

import anyio
from pydantic import BaseModel

from core.containers import ContainerRow
from core.errors import EngineError, LinkDown
from core.mcp_link import LinkState
from core.qms_state import CheckoutRow, ScanWarning
from core.services import Services, build_services
from tui.cli_common import EXIT_FAILED, EXIT_OK, print_json, settings_from_args
from tui.formats import since

NAME = "status"
HELP = "containers, checked-out documents and the MCP link in one report"


class EngineStatus(BaseModel):
    ok: bool
    endpoint: str
    version: str | None = None
    error: str | None = None


class StatusReport(BaseModel):
    project_root: str
    generated_at: datetime
    engine: EngineStatus
    containers: list[ContainerRow]
    link: LinkState
    checkouts: list[CheckoutRow]
    inboxes: dict[str, int]
    warnings: list[ScanWarning]
    ok: bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="how long to wait for the MCP link (default: 5)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def engine_status(services: Services) -> tuple[EngineStatus, list[ContainerRow] | None]:
    manager = services.containers
    try:
        info = manager.engine()
        rows = manager.list()
    except EngineError as err:
        return EngineStatus(ok=False, endpoint=manager.endpoint, error=str(err)), None
    return EngineStatus(ok=True, endpoint=info.endpoint, version=info.version), rows


async def link_status(services: Services, timeout: float) -> LinkState:
    """Connect the bundle's link once; its state when connected, or when it gave up."""
    link = services.link
    async with anyio.create_task_group() as tg:
        tg.start_soon(link.run)
        try:
            state = await link.wait_connected(timeout, fail_on_down=True)
        except LinkDown:
            state = link.state
        tg.cancel_scope.cancel()
    return state


def collect(services: Services, timeout: float) -> StatusReport:
    engine, rows = engine_status(services)
    link = anyio.run(link_status, services, timeout)
    snapshot = services.scan(rows)
    return StatusReport(
        project_root=str(services.project_root), generated_at=services.now(), engine=engine,
        containers=rows or [], link=link, checkouts=snapshot.checkouts,
        inboxes={agent: len(tasks) for agent, tasks in snapshot.inboxes.items()},
        warnings=snapshot.warnings, ok=engine.ok and link.status == "connected",
    )


def run(args: argparse.Namespace) -> int:
    services = build_services(settings_from_args(args))
    try:
        report = collect(services, args.timeout)
    finally:
        services.close()
    if args.json:
        print_json(report)
    else:
        print_report(report)
    return EXIT_OK if report.ok else EXIT_FAILED


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in (header, *rows):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


def _ago(when: datetime | None, now: datetime) -> str:
    return since(when, now) if when else "-"


def print_report(report: StatusReport) -> None:
    now = report.generated_at
    engine, link = report.engine, report.link
    print(f"project  {report.project_root}")
    print(f"engine   {'up' if engine.ok else 'UNREACHABLE'}  {engine.endpoint}"
          + (f"  ({engine.version})" if engine.version else f"  {engine.error}"))
    latency = f", {link.latency_ms:.0f} ms" if link.latency_ms is not None else ""
    tools = f", {len(link.tools)} tools" if link.tools else ""
    print(f"mcp      {link.status.upper() if link.status != 'connected' else 'connected'}  {link.url}"
          f"  ({link.transport}{latency}{tools})" + (f"  {link.reason}" if link.status != "connected" else ""))
    print()
    if not engine.ok:
        print("containers: unknown (engine unreachable)")
    elif not report.containers:
        print("containers: none for this project")
    else:
        print("containers:")
        _table(("AGENT", "NAME", "STATE", "STARTED", "RESTARTS", "INBOX", "MANAGED"), [
            (r.agent or "-", r.name, r.status_text or r.state, _ago(r.started_at, now), str(r.restart_count),
             str(report.inboxes.get(r.agent, 0)), "yes" if r.managed else "NO")
            for r in report.containers
        ])
    print()
    if not report.checkouts:
        print("checkouts: none")
    else:
        print("checkouts:")
        _table(("DOCUMENT", "STATUS", "HOLDER", "HELD SINCE", "LAST EDIT", "STATE"), [
            (c.doc_id, f"{c.status or '?'} v{c.version or '?'}", c.holder or "-", _ago(c.held_since, now),
             _ago(c.last_edit, now) if c.last_edit else "no copy", str(c.state.value))
            for c in report.checkouts
        ])
    for warning in report.warnings:
        print(f"warning: {warning.path}: {warning.reason}")
