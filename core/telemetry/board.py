"""The activity board: what each agent is doing, from the ActivityEvents of the gateway's feed.

:meth:`ActivityBoard.apply` folds one :class:`core.gateway.events.ActivityEvent` into the agent's
running facts (bounded: the last ten minutes of API errors, thirty minutes of tokens a minute);
:meth:`ActivityBoard.view` derives every :class:`core.telemetry.activity.AgentActivity` at a
time, with no I/O, so ages and the ``working`` window move with the clock.

Tokens and cost come from Claude Code's ``claude_code.api_request`` log events (each request once;
its cumulative metrics are not added on top). "Since the container started" counts from the first
event of the agent's current container id; "today" from midnight UTC, across its containers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.gateway.events import ActivityEvent
from core.telemetry.activity import SPARK_MINUTES, WORKING_FOR, ActivityState, ActivityView, AgentActivity

ERRORS_FOR = timedelta(minutes=10)
BUSY_HOOKS = frozenset({"PreToolUse", "PostToolUse", "PostToolUseFailure", "UserPromptSubmit", "SubagentStop"})
BUSY_LOGS = frozenset({"claude_code.api_request", "claude_code.tool_result", "claude_code.tool_decision",
                       "claude_code.user_prompt", "claude_code.api_error"})
TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens")


def _number(attributes: dict[str, str], key: str) -> float:
    try:
        return max(0.0, float(attributes.get(key, "") or 0))
    except ValueError:
        return 0.0


@dataclass
class _Agent:
    container: str | None = None
    container_id: str | None = None
    state: ActivityState = "unknown"
    since: datetime | None = None
    busy_at: datetime | None = None  # last tool or API activity
    waiting_tool: str | None = None
    waiting_message: str = ""
    pending_tool: str | None = None  # a PreToolUse not yet followed by its PostToolUse
    last_tool: str | None = None
    last_tool_at: datetime | None = None
    last_event_at: datetime | None = None
    tokens: int = 0
    cost: float = 0.0
    day: str = ""
    tokens_today: int = 0
    cost_today: float = 0.0
    errors: deque[datetime] = field(default_factory=lambda: deque(maxlen=1000))
    minutes: dict[int, int] = field(default_factory=dict)  # minute number -> tokens


class ActivityBoard:
    """See the module docstring."""

    def __init__(self) -> None:
        self._agents: dict[str, _Agent] = {}
        self.ignored = 0

    def apply(self, event: ActivityEvent) -> None:
        agent = event.who.agent
        if agent is None:
            self.ignored += 1
            return
        a = self._agents.setdefault(agent, _Agent())
        if event.who.container_id and event.who.container_id != a.container_id:
            a.container_id, a.tokens, a.cost = event.who.container_id, 0, 0.0  # a new container: its own totals
        a.container = event.who.container or a.container
        a.last_event_at = event.time
        attrs, name = event.attributes, event.name
        if event.source == "otlp-metric":
            return  # heard from; the totals come from the api_request events
        if name == "claude_code.api_request":
            self._tokens(a, event)
        elif name == "claude_code.api_error":
            a.errors.append(event.time)
        tool = attrs.get("tool") or attrs.get("tool_name")
        if name in ("claude_code.tool_result", "PostToolUse", "PostToolUseFailure") and tool:
            a.last_tool, a.last_tool_at, a.pending_tool = attrs.get("tool_name") or tool, event.time, None
        elif name in ("PreToolUse", "PermissionRequest") and tool:
            a.pending_tool = tool
        if name == "Notification" and attrs.get("notification_type") == "permission_prompt":
            self._enter(a, "waiting", event.time)
            a.waiting_tool = a.pending_tool or attrs.get("tool")
            a.waiting_message = attrs.get("message", "")[:200]
        elif name == "PermissionRequest":
            self._enter(a, "waiting", event.time)
            a.waiting_tool, a.waiting_message = tool, attrs.get("message", "")[:200]
        elif name == "Notification" and attrs.get("notification_type") == "idle_prompt" or name == "Stop":
            self._enter(a, "idle", event.time)
        elif name == "SessionEnd":
            self._enter(a, "stopped", event.time)
        elif name == "SessionStart":
            self._enter(a, "idle", event.time)
        elif name in BUSY_HOOKS or name in BUSY_LOGS:
            if name == "claude_code.tool_decision" and a.state == "waiting" and attrs.get("decision") != "accept":
                return  # the operator's answer is still out (a reject ends the wait through the next event)
            a.busy_at = event.time
            self._enter(a, "working", event.time)

    @staticmethod
    def _enter(a: _Agent, state: ActivityState, when: datetime) -> None:
        if state != "waiting":
            a.waiting_tool, a.waiting_message = None, ""
        if a.state != state:
            a.state, a.since = state, when

    @staticmethod
    def _tokens(a: _Agent, event: ActivityEvent) -> None:
        tokens = int(sum(_number(event.attributes, key) for key in TOKEN_KEYS))
        cost = _number(event.attributes, "cost_usd")
        a.tokens += tokens
        a.cost += cost
        day = event.time.date().isoformat()
        if day != a.day:
            a.day, a.tokens_today, a.cost_today = day, 0, 0.0
        a.tokens_today += tokens
        a.cost_today += cost
        minute = int(event.time.timestamp() // 60)
        a.minutes[minute] = a.minutes.get(minute, 0) + tokens
        for old in [m for m in a.minutes if m <= minute - SPARK_MINUTES]:
            del a.minutes[old]

    def view(self, now: datetime) -> ActivityView:
        agents = {}
        this_minute = int(now.timestamp() // 60)
        today = now.date().isoformat()
        for agent, a in sorted(self._agents.items()):
            while a.errors and now - a.errors[0] > ERRORS_FOR:
                a.errors.popleft()
            state, since = a.state, a.since
            if state == "working" and a.busy_at is not None and now - a.busy_at > WORKING_FOR:
                state, since = "idle", a.busy_at + WORKING_FOR  # nothing for a while: at the prompt
            agents[agent] = AgentActivity(
                agent=agent, container=a.container, state=state, since=since, waiting_tool=a.waiting_tool,
                waiting_message=a.waiting_message, last_tool=a.last_tool, last_tool_at=a.last_tool_at,
                last_event_at=a.last_event_at, tokens=a.tokens, cost_usd=round(a.cost, 6),
                tokens_today=a.tokens_today if a.day == today else 0,
                cost_usd_today=round(a.cost_today, 6) if a.day == today else 0.0,
                api_errors_10m=len(a.errors),
                per_minute=[a.minutes.get(m, 0) for m in range(this_minute - SPARK_MINUTES + 1, this_minute + 1)])
        return ActivityView(agents=agents, ignored=self.ignored)
