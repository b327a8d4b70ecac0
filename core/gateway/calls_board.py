"""The agents' MCP calls as the panel shows them, built from the gateway's feed.

:class:`CallsBoard` applies the feed's events (:mod:`core.gateway.events`) and keeps, per agent,
the calls of the last ``WINDOW`` (bounded); everything the panes show is derived from that at a
time (:meth:`CallsBoard.view`): the last call and its age, calls in the last minute, failures
(errors, refusals, identity, upstream down) in the last ten minutes, whether the agent's calls are
failing now, and the documents it worked on recently (the Workspace pane's ``active``). The
feed's activity events (Claude Code's telemetry and hooks) go to its :class:`ActivityBoard`,
whose view is :attr:`GatewayView.activity`.

:meth:`CallsBoard.follow` reads a :class:`core.gateway.feed_client.FeedClient` and yields one
:class:`CallsUpdate` per event; it ends only by failure (the app's feed runner restarts it, and
the client resumes after the last event it got).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import anyio
from pydantic import BaseModel, Field

from core.errors import FeedDown, FeedEnded
from core.gateway.events import ActivityEvent, FeedGap, GatewayState, McpEvent, PeerEvent
from core.telemetry.activity import ActivityView
from core.telemetry.board import ActivityBoard

WINDOW = timedelta(minutes=10)
ACTIVE_FOR = timedelta(minutes=10)  # a document the holder called a tool on this recently is active
PER_AGENT = 2000  # calls kept per agent (the window is bounded by this too)
FAILURES = ("refused", "identity", "error", "upstream-down")


class AgentCalls(BaseModel):
    agent: str
    connected: bool = False
    last_tool: str | None = None
    last_doc: str | None = None
    last_at: datetime | None = None
    last_outcome: str | None = None
    calls_last_minute: int = 0
    failures_last_10m: int = 0
    failing: bool = False  # its latest call failed, or most of its last five did
    active_docs: dict[str, datetime] = Field(default_factory=dict)


class GatewayView(BaseModel):
    state: GatewayState | None = None
    agents: dict[str, AgentCalls] = Field(default_factory=dict)
    missed: int = 0  # events the panel did not get (gaps)
    activity: ActivityView = Field(default_factory=ActivityView)  # what each agent is doing (telemetry, hooks)


class CallsUpdate(BaseModel):
    view: GatewayView
    event: McpEvent | PeerEvent | GatewayState | ActivityEvent | FeedGap | None = None


class CallsBoard:
    """See the module docstring."""

    def __init__(self, client_factory: Callable[[], object] | None = None, *,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.client_factory = client_factory
        self._client = None
        self.now = now
        self.state: GatewayState | None = None
        self.missed = 0
        self._calls: dict[str, deque[McpEvent]] = {}
        self._connected: dict[str, int] = {}
        self.activity = ActivityBoard()  # what the agents say of themselves (telemetry, hooks)

    def apply(self, event) -> None:
        if isinstance(event, GatewayState):
            if self.state is not None and event.run != self.state.run:
                self._connected.clear()
            self.state = event
        elif isinstance(event, McpEvent) and event.direction == "out" and event.outcome and event.who.agent:
            self._calls.setdefault(event.who.agent, deque(maxlen=PER_AGENT)).append(event)
        elif isinstance(event, PeerEvent) and event.who.agent and event.state in ("connected", "disconnected"):
            n = self._connected.get(event.who.agent, 0) + (1 if event.state == "connected" else -1)
            self._connected[event.who.agent] = max(0, n)
        elif isinstance(event, ActivityEvent):
            self.activity.apply(event)
        elif isinstance(event, FeedGap) and event.missed:
            self.missed += event.missed

    def view(self, now: datetime | None = None) -> GatewayView:
        now = now or self.now()
        agents: dict[str, AgentCalls] = {}
        live = set(self.state.agents) if self.state else set()
        for agent in set(self._calls) | set(self._connected) | live:
            calls = self._calls.get(agent, deque())
            while calls and now - calls[0].time > WINDOW:
                calls.popleft()
            row = AgentCalls(agent=agent, connected=agent in live or self._connected.get(agent, 0) > 0)
            if calls:
                last = calls[-1]
                row.last_tool, row.last_doc, row.last_at, row.last_outcome = (last.tool or last.method, last.doc_id,
                                                                               last.time, last.outcome)
                row.calls_last_minute = sum(1 for c in calls if now - c.time <= timedelta(minutes=1))
                row.failures_last_10m = sum(1 for c in calls if c.outcome in FAILURES)
                recent = list(calls)[-5:]
                row.failing = last.outcome in FAILURES or sum(c.outcome in FAILURES for c in recent) >= 3
                row.active_docs = {c.doc_id: c.time for c in calls if c.doc_id and now - c.time <= ACTIVE_FOR}
            agents[agent] = row
        return GatewayView(state=self.state, agents=dict(sorted(agents.items())), missed=self.missed,
                           activity=self.activity.view(now))

    async def settle(self, timeout: float) -> tuple[GatewayView, str | None]:
        """The view after the gateway's whole buffer, read once (for ``qms-panel status``); with the
        reason when the feed could not be read (the view is then empty)."""
        client = self.client_factory()
        try:
            with anyio.fail_after(timeout):
                events = await client.backlog()
        except TimeoutError:
            return self.view(), f"the gateway feed at {client.listen} sent no whole backlog in {timeout:g} s"
        except (FeedDown, FeedEnded) as err:
            return self.view(), str(err)
        for event in events:
            self.apply(event)
        return self.view(), None

    async def follow(self) -> AsyncIterator[CallsUpdate]:
        """The feed's events applied, one update each (see the module docstring)."""
        if self._client is None:
            self._client = self.client_factory()
        async for event in self._client.events(from_start=True):
            self.apply(event)
            yield CallsUpdate(view=self.view(), event=event)
