"""The containers pane: one row per agent, what state its container is in, whether it reaches MCP,
its calls through the gateway, and what the agent is doing (Claude Code's telemetry and hooks).

The STATE column says the container's state while it is not running; while it runs, what the agent
does (working, waiting, idle, stopped: :mod:`core.telemetry.activity`) and its tool. An agent that
waits for permission has its row in the attention colour (``containers--waiting``, not the amber
of failing calls). A line under the table tells the selected agent's activity in full (today's
tokens and cost, API errors, tokens a minute over half an hour); the per-agent sparkline column
shows only when the pane is wide enough for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.message import Message
from textual.reactive import var
from textual.widgets import DataTable, Static

from core.container_board import EngineView
from core.containers import ContainerRow
from core.doctor import ProbeResult
from core.gateway.calls_board import GatewayView
from tui.container_cells import (
    SPARK_WIDTH, STATE_WIDTH, calls_cells, detail_text, mcp_cell, spark_cell, spark_text, state_cell, usage_cell,
    wait_text, waiting,
)
from tui.formats import age
from tui.widgets.pane import Pane


class ContainersPane(Pane):
    """Rows are :class:`core.containers.ContainerRow`; agents with no container show as not created."""

    COLUMNS = (("AGENT", 9), ("STATE", STATE_WIDTH), ("UP", 5), ("RST", 3), ("MCP", 8), ("LAST CALL", 14),
               ("CALLS", 7), ("USAGE", 12), ("INBOX", 5), ("OURS", 4))
    WIDE_COLUMNS = (*COLUMNS[:8], ("TOK/30M", SPARK_WIDTH), *COLUMNS[8:])
    # a narrow pane (80 columns) keeps what says what an agent is doing; the rest is in the detail line
    NARROW_COLUMNS = tuple(c for c in COLUMNS if c[0] in ("AGENT", "STATE", "UP", "MCP", "LAST CALL", "USAGE"))
    COMPONENT_CLASSES = {"containers--waiting"}

    DEFAULT_CSS = """
    ContainersPane > .containers--waiting { color: #ff5fd7; text-style: bold; }
    ContainersPane.-waiting { border: round #ff5fd7; }
    ContainersPane > #containers-detail { height: auto; min-height: 2; padding: 0 1; }
    """

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

    def compose(self) -> ComposeResult:
        yield from super().compose()
        yield Static(id="containers-detail")

    @staticmethod
    def width_of(columns) -> int:
        """The pane's width that shows ``columns`` whole (cell padding and the border)."""
        return sum(width + 2 for _, width in columns) + 2

    @classmethod
    def columns_for(cls, width: int):
        """The widest column set that fits a pane ``width`` wide (the narrow one when none does)."""
        return next((c for c in (cls.WIDE_COLUMNS, cls.COLUMNS) if width >= cls.width_of(c)), cls.NARROW_COLUMNS)


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
            rows.append((agent, self._shown(self._cells(agent, row))))
        # containers that mount the project but carry no agent id (made by hand)
        for r in self.rows:
            if not r.agent:
                rows.append((r.name, self._shown(self._cells(r.name, r))))
        self.table.replace_rows(rows)
        self.set_class(any(waiting(self.gateway.activity.agents.get(a), by_agent.get(a)) for a in order),
                       "-waiting")
        self._update_detail()
        self._update_notice()
        self.set_class(self.engine.status == "down", "-stale")
        self._announce()

    def _shown(self, cells: dict) -> tuple:
        return tuple(cells[label] for label, _ in self._columns)

    def _cells(self, agent: str, row: ContainerRow | None) -> dict:
        """Every column's cell, by label; the pane shows those of its width."""
        busy = self.busy.get(agent)
        running = row is not None and row.state == "running"
        uptime = age(self.now - row.started_at) if running and row.started_at and self.now else "—"
        managed = "—" if row is None else ("yes" if row.managed else Text("no", style="bold yellow"))
        inbox = self.inbox.get(agent)
        calls = self.gateway.agents.get(agent)
        activity = self.gateway.activity.agents.get(agent) if row is None or row.agent else None
        failing = calls is not None and calls.failing
        attention = self.get_component_rich_style("containers--waiting", partial=True)
        if waiting(activity, row):
            name = Text("⚑ " + agent, style=attention)
        else:
            name = Text(("⚠ " if failing else "") + agent,
                        style="bold yellow" if failing else "bold" if row is not None else "dim")
        last_call, calls_now = calls_cells(calls, self.now)
        return {
            "AGENT": name,
            "STATE": state_cell(row, busy, self.engine.up, activity, attention),
            "UP": uptime,
            "RST": str(row.restart_count) if row is not None else "—",
            "MCP": mcp_cell(row, self.probes.get(agent)),
            "LAST CALL": last_call,
            "CALLS": calls_now,
            "USAGE": usage_cell(activity),
            "TOK/30M": spark_cell(activity),
            "INBOX": str(inbox) if inbox else ("0" if inbox == 0 else "—"),
            "OURS": managed,
        }

    def _update_detail(self) -> None:
        """The selected agent's activity; under it the first agent that waits for permission (any
        row), else the selected agent's tokens a minute."""
        agent = self.selected_agent
        row = self.row(agent)
        agents = self.gateway.activity.agents
        activity = agents.get(agent) if agent else None
        attention = self.get_component_rich_style("containers--waiting", partial=True)
        waits = next(((a, act) for a, act in agents.items() if waiting(act, self.row(a))), None)
        second = wait_text(*waits, attention) if waits else spark_text(activity)
        self.query_one("#containers-detail", Static).update(
            Text("\n").join([detail_text(agent, row, activity, self.now, attention), second]))

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
            self._update_detail()
            self.post_message(self.Selected(agent))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._announce()
