"""What each agent is doing right now, as the panel shows it: the view of the activity board.

The gateway's telemetry receiver turns Claude Code's OTLP log records, metric points and hook calls
into :class:`core.gateway.events.ActivityEvent`\\ s on the live feed, attributed by peer address. The
activity board applies them and derives, per agent and at a time, an :class:`AgentActivity`.

States: ``working`` (a tool or API event in the last ``WORKING_FOR``), ``waiting`` (a
``Notification`` hook of type ``permission_prompt`` not yet followed by other activity: the tool and
its summary are in ``waiting_tool``/``waiting_message``), ``idle`` (at the prompt: a ``Stop`` hook or
an ``idle_prompt`` notification, or nothing for a while), ``stopped`` (its session ended), ``unknown``
(nothing heard from it). Whether the container runs at all is the container board's fact; the pane
combines the two.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

ActivityState = Literal["working", "waiting", "idle", "stopped", "unknown"]
WORKING_FOR = timedelta(seconds=30)  # tool or API activity this recent: working
SPARK_MINUTES = 30  # the per-minute series the pane draws


class AgentActivity(BaseModel):
    """One agent's activity, derived at a time (every string may come from the agent: show it safe)."""

    agent: str
    container: str | None = None  # the container the latest event came from
    state: ActivityState = "unknown"
    since: datetime | None = None  # when it entered that state
    waiting_tool: str | None = None  # waiting: the tool that asks for permission
    waiting_message: str = ""  # waiting: the notification's text (one line, bounded)
    last_tool: str | None = None
    last_tool_at: datetime | None = None
    last_event_at: datetime | None = None
    tokens: int = 0  # since the container started (its current container id)
    cost_usd: float = 0.0  # since the container started
    tokens_today: int = 0  # since midnight UTC, across its containers
    cost_usd_today: float = 0.0
    api_errors_10m: int = 0
    per_minute: list[int] = Field(default_factory=lambda: [0] * SPARK_MINUTES)  # tokens a minute, oldest first


class ActivityView(BaseModel):
    agents: dict[str, AgentActivity] = Field(default_factory=dict)
    ignored: int = 0  # activity events the board could not use (unknown names, no agent)
