"""The containers pane: one row per agent, what state its container is in, and whether it reaches MCP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual.message import Message
from textual.reactive import var
from textual.widgets import DataTable

from core.container_board import EngineView
from core.containers import ContainerRow
from core.doctor import ProbeResult
from core.gateway.calls_board import AgentCalls, GatewayView
from tui.formats import age, plain
from tui.widgets.pane import Pane

STATE_STYLE = {
    "running": "bold green",
    "restarting": "bold yellow",
    "paused": "yellow",
    "created": "cyan",
    "removing": "yellow",
    "exited": "bold red",
    "dead": "bold red",
}


def state_cell(row: ContainerRow | None, busy: str | None, engine_up: bool = True) -> Text:
    if busy:
        return Text(f"⟳ {busy}", style="bold yellow")
    if row is None:
        return Text("not created" if engine_up else "unknown", style="dim")
    state = row.state
    text = Text(state, style=STATE_STYLE.get(state, ""))
    if state == "exited" and row.exit_code is not None:
        text.append(f" ({row.exit_code})", style="red")
    if row.health and row.health not in ("none", "healthy"):
        text.append(f" {row.health}", style="yellow")
    return text


def mcp_cell(row: ContainerRow | None, probe: ProbeResult | None) -> Text:
    """MCP as seen from inside the container (the doctor's probe)."""
    if row is None or row.state != "running" or not row.agent:
        return Text("—", style="dim")
    if probe is None:
        return Text("…", style="dim")
    if probe.ok:
        latency = f" {probe.latency_ms:.0f} ms" if probe.latency_ms is not None else ""
        return Text(f"✓{latency}", style="green")
    return plain(f"✗ {probe.failure or 'unreachable'}", "bold red")  # what the container said, all of it


def calls_cells(calls: AgentCalls | None, now: datetime | None) -> tuple[Text, Text]:
    """Last call (tool, age), then calls in the last minute and failures (errors, refusals) in the
    last ten minutes (``3/m 2✗``); amber while the agent's calls fail."""
    if calls is None or calls.last_at is None:
        return Text("—", style="dim"), Text("—", style="dim")
    tool = (calls.last_tool or "?").removeprefix("qms_")
    style = "bold yellow" if calls.failing else ""
    last = plain(tool, style)
    if now:
        last.append(f" {age(now - calls.last_at)}", style="dim")
    counts = Text(f"{calls.calls_last_minute}/m")
    if calls.failures_last_10m:
        counts.append(f" {calls.failures_last_10m}✗", style="bold yellow")
    return last, counts


class ContainersPane(Pane):
    """Rows are :class:`core.containers.ContainerRow`; agents with no container show as not created."""

    COLUMNS = (("AGENT", 9), ("STATE", 11), ("UP", 5), ("RST", 3), ("MCP", 8), ("LAST CALL", 14), ("CALLS", 7),
               ("INBOX", 5), ("OURS", 4))

    rows: var[list[ContainerRow]] = var(list)
    agents: var[list[str]] = var(list)  # configured agent ids (shown even without a container)
    probes: var[dict[str, ProbeResult]] = var(dict)  # agent -> the doctor's probe from inside its container
    inbox: var[dict[str, int]] = var(dict)  # agent -> inbox task count
    busy: var[dict[str, str]] = var(dict)  # agent -> what is in progress ("restarting")
    engine: var[EngineView] = var(EngineView)  # the engine, and whether it has the agent image
    now: var[datetime | None] = var(None)
    gateway: var[GatewayView] = var(GatewayView)  # the agents' calls through the gateway

    @dataclass
    class Selected(Message):
        """The cursor moved to another agent."""

        agent: str | None

    def __init__(self, **kwargs) -> None:
        super().__init__("Containers", **kwargs)
        self._announced: str | None = None

    watch_rows = watch_agents = watch_probes = watch_inbox = watch_busy = Pane._schedule
    watch_engine = watch_now = watch_gateway = Pane._schedule

    @property
    def selected_agent(self) -> str | None:
        return self.table.selected_key

    def row(self, agent: str | None) -> ContainerRow | None:
        return next((r for r in self.rows if r.agent == agent), None)

    def _update(self) -> None:
        by_agent = {r.agent: r for r in self.rows if r.agent}
        order = list(dict.fromkeys([*self.agents, *sorted(by_agent)]))
        rows = []
        for agent in order:
            row = by_agent.get(agent)
            rows.append((agent, self._cells(agent, row)))
        # containers that mount the project but carry no agent id (made by hand)
        for r in self.rows:
            if not r.agent:
                rows.append((r.name, self._cells(r.name, r)))
        self.table.replace_rows(rows)
        self._update_notice()
        self.set_class(self.engine.status == "down", "-stale")
        self._announce()

    def _cells(self, agent: str, row: ContainerRow | None) -> tuple:
        busy = self.busy.get(agent)
        running = row is not None and row.state == "running"
        uptime = age(self.now - row.started_at) if running and row.started_at and self.now else "—"
        managed = "—" if row is None else ("yes" if row.managed else Text("no", style="bold yellow"))
        inbox = self.inbox.get(agent)
        calls = self.gateway.agents.get(agent)
        failing = calls is not None and calls.failing
        name_style = "bold yellow" if failing else "bold" if row is not None else "dim"
        return (
            Text(("⚠ " if failing else "") + agent, style=name_style),
            state_cell(row, busy, self.engine.up),
            uptime,
            str(row.restart_count) if row is not None else "—",
            mcp_cell(row, self.probes.get(agent)),
            *calls_cells(calls, self.now),
            str(inbox) if inbox else ("0" if inbox == 0 else "—"),
            managed,
        )

    def _update_notice(self) -> None:
        engine = self.engine
        if engine.status == "down":
            retry = f" Retrying in {engine.retry_in:.0f} s (attempt {engine.attempt})." if engine.retry_in else ""
            where = f" at {engine.endpoint}" if engine.endpoint and engine.endpoint not in engine.reason else ""
            self.set_notice(
                f"Docker engine unreachable{where}.{retry}\n{engine.reason or 'no answer'}\n"
                "Start dockerd / Docker Desktop, or check DOCKER_HOST."
                + ("\nThe rows are the last known state." if self.rows else ""),
                "bold red",
            )
        elif engine.image_present is False:
            self.set_notice(f"Agent image {engine.image!r} is not on the engine.\n"
                            "Build it with `qms-panel image build`.", "bold yellow")
        elif engine.status == "unknown" and not self.rows:
            self.set_notice("Connecting to the Docker engine…", "dim")
        elif engine.status == "up" and not self.rows:
            self.set_notice("No agent containers yet.\nLaunch one with `qms-panel launch AGENT`.", "dim")
        else:
            self.set_notice(None)

    def _announce(self) -> None:
        agent = self.selected_agent
        if agent != self._announced:
            self._announced = agent
            self.post_message(self.Selected(agent))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._announce()
