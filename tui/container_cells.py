"""The Containers pane's cells as rich Text (no Textual): the container's state or what its agent
does, MCP from inside, the agent's calls, usage and sparkline, the detail and waiting lines. The
pane (:mod:`tui.widgets.containers`) and ``qms-panel status`` say them alike."""

from __future__ import annotations

from datetime import datetime

from rich.style import Style
from rich.text import Text

from core.containers import ContainerRow
from core.doctor import ProbeResult
from core.gateway.calls_board import AgentCalls
from core.telemetry.activity import AgentActivity
from tui.formats import age, count, plain, short, sparkline

STATE_STYLE = {
    "running": "bold green",
    "restarting": "bold yellow",
    "paused": "yellow",
    "created": "cyan",
    "removing": "yellow",
    "exited": "bold red",
    "dead": "bold red",
}


ACTIVITY_STYLE = {"working": "bold green", "idle": "green", "stopped": "yellow"}  # waiting: the pane's own
STATE_WIDTH = 16
SPARK_WIDTH = 10  # the sparkline column: 30 minutes, three a cell


def waiting(activity: AgentActivity | None, row: ContainerRow | None) -> bool:
    """The agent waits for the operator's permission (and its container runs: else its state wins)."""
    return activity is not None and activity.state == "waiting" and row is not None and row.state == "running"


def shown_state(row: ContainerRow | None, activity: AgentActivity | None) -> str | None:
    """The activity state the STATE column shows: only while the container runs, and once heard."""
    if row is None or row.state != "running" or activity is None or activity.state == "unknown":
        return None
    return activity.state


def state_cell(row: ContainerRow | None, busy: str | None, engine_up: bool = True,
               activity: AgentActivity | None = None, attention: str | Style = "bold magenta") -> Text:
    """The container's state, or while it runs what the agent does and its tool (``working Bash``)."""
    if busy:
        return Text(f"⟳ {busy}", style="bold yellow")
    if row is None:
        return Text("not created" if engine_up else "unknown", style="dim")
    state = row.state
    doing = shown_state(row, activity)
    if doing is not None and activity is not None:
        tool = activity.waiting_tool if doing == "waiting" else activity.last_tool
        text = Text(doing, style=attention if doing == "waiting" else ACTIVITY_STYLE.get(doing, ""))
        if tool:
            text.append(" " + short(tool, STATE_WIDTH - len(doing) - 1), style=attention if doing == "waiting" else "dim")
        return text
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


def usage_cell(activity: AgentActivity | None) -> Text:
    """Tokens and cost since the container started (``41k $1.23``), then API errors in ten minutes."""
    if activity is None or not (activity.tokens or activity.cost_usd or activity.api_errors_10m):
        return Text("—", style="dim")
    text = Text(f"{count(activity.tokens)} {cost(activity.cost_usd)}")
    if activity.api_errors_10m:
        text.append(f" {activity.api_errors_10m}✗", style="bold red")
    return text


def cost(usd: float) -> str:
    return f"${usd:.2f}" if usd < 100 else f"${usd:.0f}"


def spark_cell(activity: AgentActivity | None, width: int = SPARK_WIDTH) -> Text:
    if activity is None or not any(activity.per_minute):
        return Text("—", style="dim")
    return Text(sparkline(activity.per_minute, width), style="cyan")


def detail_text(agent: str | None, row: ContainerRow | None, activity: AgentActivity | None,
                now: datetime | None, attention: str | Style = "bold magenta") -> Text:
    """One line on the selected agent's activity: its state, tool, tokens and cost (since its
    container started, and today), API errors."""
    if agent is None:
        return Text()
    if activity is None or (activity.state == "unknown" and activity.last_event_at is None):
        return Text.assemble(plain(agent, "bold"), (": nothing heard from its telemetry yet", "dim"))
    ago = (lambda t: f" {age(now - t)}" if now and t else "")
    doing = shown_state(row, activity) or (row.state if row is not None and row.state != "running" else activity.state)
    style = attention if doing == "waiting" else ACTIVITY_STYLE.get(doing, STATE_STYLE.get(doing, ""))
    text = Text.assemble(plain(agent, "bold"), " ", (doing, style), (ago(activity.since), "dim"))
    if activity.last_tool:
        text.append(" · last tool ", style="dim")
        text.append_text(plain(activity.last_tool))
        text.append(f"{ago(activity.last_tool_at)} ago" if now and activity.last_tool_at else "", style="dim")
    text.append(" · ", style="dim")
    text.append(f"{count(activity.tokens)} tokens {cost(activity.cost_usd)}")
    text.append(" since start · today ", style="dim")
    text.append(f"{count(activity.tokens_today)} {cost(activity.cost_usd_today)}")
    if activity.api_errors_10m:
        text.append(f" · {activity.api_errors_10m} API error(s) in 10 min", style="bold red")
    return text


def wait_text(agent: str, activity: AgentActivity, attention: str | Style = "bold magenta") -> Text:
    """What a waiting agent asks for, and how to answer it."""
    text = Text.assemble(plain(f"⚑ {agent} waits for permission: {activity.waiting_tool or 'a tool'}", attention))
    if activity.waiting_message:
        text.append(" · ", style="dim")
        text.append_text(plain(activity.waiting_message))
    text.append(" · t on its row opens its terminal", style="dim")
    return text


def spark_text(activity: AgentActivity | None) -> Text:
    if activity is None:
        return Text()
    return Text.assemble(("tokens a minute, last 30 min ", "dim"), spark_cell(activity, len(activity.per_minute)))
