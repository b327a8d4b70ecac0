"""``qms-panel status``: the panel's four panes as one report, for scripts.

The project's agent containers (with the engine's state and, from the gateway's feed, what each
agent is doing and has spent), every checked-out document with its state (ok, stale, orphaned,
missing-copy, unmanaged), inbox counts, and the MCP link, connected once for the report. Exit 0
when the engine answers and the link connects, else 1 (the report is printed either way); a
gateway that is not running is said, and does not fail the report.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime

import anyio
from pydantic import BaseModel

from core.container_board import ContainersView
from core.containers import ContainerRow
from core.engine import CLIENT_TIMEOUT
from core.gateway.calls_board import GatewayView
from core.errors import EngineUnreachable, LinkDown
from core.mcp_link import LinkState
from core.qms_board import QmsView
from core.qms_state import CheckoutRow, ScanWarning
from core.safe_text import safe_line
from core.telemetry.activity import AgentActivity
from core.services import Services, build_services
from tui.cli_common import EXIT_FAILED, EXIT_OK, print_json, settings_from_args
from tui.commands._timeout import add_timeout_argument
from tui.formats import since
from tui.container_cells import shown_state, state_cell, usage_cell

ENGINE_WAIT = CLIENT_TIMEOUT  # seconds the engine (and the scan) may take to answer

NAME = "status"
HELP = "containers, checked-out documents and the MCP link in one report"


class EngineStatus(BaseModel):
    ok: bool
    endpoint: str
    version: str | None = None
    error: str | None = None


class GatewayStatus(BaseModel):
    ok: bool
    feed: str  # where the report read the gateway's feed
    listen: str | None = None  # where the gateway serves agents
    upstream_state: str | None = None
    telemetry_listen: str | None = None
    error: str | None = None


class StatusReport(BaseModel):
    project_root: str
    generated_at: datetime
    engine: EngineStatus
    containers: list[ContainerRow]
    not_launched: list[str]  # the declared agents (settings.agents) that have no container; empty when unknown
    link: LinkState
    gateway: GatewayStatus
    activity: dict[str, AgentActivity]  # by agent, from the gateway's feed (telemetry and hooks)
    checkouts: list[CheckoutRow]
    inboxes: dict[str, int]
    warnings: list[ScanWarning]
    ok: bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_timeout_argument(parser, 5.0, "how long to wait for the MCP link to connect")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def engine_status(view: ContainersView, endpoint: str) -> tuple[EngineStatus, list[ContainerRow] | None]:
    """The engine part of the report from the container board's settled view (rows None: unknown)."""
    engine = view.engine
    if not (engine.up and view.listed):
        error = engine.reason or f"Docker engine unreachable: no answer from {endpoint} in {ENGINE_WAIT} s"
        return EngineStatus(ok=False, endpoint=engine.endpoint or endpoint, error=error), None
    return EngineStatus(ok=True, endpoint=engine.endpoint, version=engine.version), view.rows


async def link_status(services: Services, timeout: float) -> LinkState:
    """Connect the bundle's link once; its state when connected, or when it gave up.

    A server that accepts the connection and never answers leaves the link connecting with no
    reason of its own: the report says what was waited for, and how long."""
    link = services.link
    async with anyio.create_task_group() as tg:
        tg.start_soon(link.run)
        try:
            state = await link.wait_connected(timeout, fail_on_down=True)
        except LinkDown:
            state = link.state
        tg.cancel_scope.cancel()
    if state.status == "connecting" and not state.reason:
        state = state.model_copy(update={"reason": (
            f"no answer within {timeout:g} s: the connection was not refused, but the MCP handshake did not "
            "complete (is the server stalled, or is this not an MCP server?)")})
    return state


async def settle(services: Services, timeout: float) -> tuple[ContainersView, LinkState, QmsView, GatewayStatus,
                                                                GatewayView]:
    """The boards the panel follows, settled once (the engine, the link and the feed at the same time)."""
    containers, link, (calls, feed_error) = await asyncio.gather(
        services.container_board.settle(ENGINE_WAIT), link_status(services, timeout),
        services.calls_board.settle(timeout))
    board = services.qms_board
    board.set_containers(containers.rows if containers.engine.up and containers.listed else None)
    state = calls.state
    gateway = GatewayStatus(ok=feed_error is None and state is not None, feed=services.settings.feed_listen,
                            error=feed_error or (None if state else "the gateway sent no state"))
    if state is not None:
        gateway = gateway.model_copy(update={"listen": state.listen, "upstream_state": state.upstream_state,
                                             "telemetry_listen": state.telemetry_listen or None})
    return containers, link, await board.settle(ENGINE_WAIT), gateway, calls


def collect(services: Services, timeout: float) -> StatusReport:
    containers, link, qms, gateway, calls = anyio.run(settle, services, timeout)
    engine, rows = engine_status(containers, services.containers.endpoint)
    snapshot = qms.snapshot
    assert snapshot is not None  # a settled QMS board has scanned
    return StatusReport(
        project_root=str(services.project_root), generated_at=services.now(), engine=engine,
        containers=rows or [], link=link, not_launched=not_launched(services.settings.agents, rows), gateway=gateway, activity=calls.activity.agents,
        checkouts=snapshot.checkouts,
        inboxes={agent: len(tasks) for agent, tasks in snapshot.inboxes.items()},
        warnings=snapshot.warnings, ok=engine.ok and link.status == "connected",
    )


def not_launched(agents: list[str], rows: list[ContainerRow] | None) -> list[str]:
    """The declared agents no container serves (none known when the engine did not answer)."""
    if rows is None:
        return []
    have = {row.agent for row in rows}
    return [agent for agent in agents if agent not in have]


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
    rows = [tuple(safe_line(cell) for cell in row) for row in rows]  # as shown, so the columns line up
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in (header, *rows):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


def _ago(when: datetime | None, now: datetime) -> str:
    return since(when, now) if when else "-"


def _state(row: ContainerRow, activity: AgentActivity | None) -> str:
    """As the Containers pane says it: what the agent does while its container runs, else the container's state."""
    if row.managed and activity is not None and shown_state(row, activity) is not None:
        return state_cell(row, None, True, activity).plain
    return row.status_text or row.state


def said_once(reason: str | None, title: str) -> str:
    """``reason`` without a leading ``title: `` the line has said already (``UNREACHABLE``)."""
    return (reason or "").removeprefix(f"{title}: ")


def print_report(report: StatusReport) -> None:
    now = report.generated_at
    engine, link = report.engine, report.link
    print(f"project  {report.project_root}")
    print(f"engine   {'up' if engine.ok else 'UNREACHABLE'}  {engine.endpoint}"
          + (f"  ({engine.version})" if engine.version else f"  {said_once(engine.error, EngineUnreachable.title)}"))
    latency = f", {link.latency_ms:.0f} ms" if link.latency_ms is not None else ""
    tools = f", {len(link.tools)} tools" if link.tools else ""
    print(f"mcp      {link.status.upper() if link.status != 'connected' else 'connected'}  {link.url}"
          f"  ({link.transport}{latency}{tools})"
          + (f"  {link.reason or 'no answer'}" if link.status != "connected" else ""))
    gateway = report.gateway
    if gateway.ok:
        telemetry = f", telemetry {gateway.telemetry_listen}" if gateway.telemetry_listen else ", telemetry off"
        print(f"gateway  up  {gateway.listen}  (upstream {gateway.upstream_state}{telemetry})")
    else:
        print(f"gateway  NOT READ  {gateway.feed}  {gateway.error}")
    print()
    if not engine.ok:
        print("containers: unknown (engine unreachable)")
    elif not report.containers:
        print("containers: none for this project")
    else:
        print("containers:")
        _table(("AGENT", "NAME", "STATE", "STARTED", "RESTARTS", "INBOX", "USAGE", "MANAGED"), [
            (r.agent or "-", r.name, _state(r, report.activity.get(r.agent or "")), _ago(r.started_at, now),
             str(r.restart_count), str(report.inboxes.get(r.agent, 0)), usage_cell(report.activity.get(r.agent or "")).plain,
             "yes" if r.managed else "NO")
            for r in report.containers
        ])
    if report.not_launched:
        names = ", ".join(report.not_launched)
        print(f"no container: {names} (declared in agents; `qms-panel launch AGENT` makes one)")
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
