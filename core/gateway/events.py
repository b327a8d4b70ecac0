"""What the gateway says on its live feed: one typed event per thing that happened.

Every event is a plain pydantic model with a ``kind`` (the discriminator) and is carried over the
feed as one JSON object. Readers parse with :func:`parse_event`; a kind they do not know (a newer
gateway) parses to None and is skipped, never an error. Every string in an event may come from an
agent or a server: a reader shows it through :mod:`core.safe_text`, never raw.

``seq`` and ``run`` are set by the hub when an event is published: ``seq`` counts from 1 in one run
of the gateway, ``run`` names that run, so a reader can tell "I missed some" from "it restarted".
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

Outcome = Literal["ok", "refused", "identity", "error", "upstream-down"]
"""How an agent's message ended. ``ok``: the server answered and the tool did not fail.
``refused``: the gateway turned the peer or message away (not a container of this project, bad
request). ``identity``: the identity rules refused it (``user`` is not the container's agent, a
second container for one agent, or the server's own IDENTITY errors). ``error``: the server
answered with a JSON-RPC error or a failed tool (``isError``). ``upstream-down``: the gateway
could not reach the server, or the server did not answer in time."""

AgentTransport = Literal["sse", "streamable-http"]


class _Event(BaseModel):
    seq: int = 0  # set by the hub: 1, 2, ... within one gateway run
    run: str = ""  # set by the hub: the gateway run that published it
    time: datetime  # UTC, when the gateway saw it


class Who(BaseModel):
    """Where a connection came from, as the gateway decided it (never what the peer claims)."""

    peer: str  # the peer's IP address
    agent: str | None = None  # the agent of that container; None for a host client or a refused peer
    container: str | None = None  # container name
    container_id: str | None = None
    host: bool = False  # a loopback client on the host, let in by gateway_allow_host


class McpEvent(_Event):
    """One JSON-RPC message between an agent and the server, through the gateway.

    ``direction`` ``in`` is agent -> server (a request or notification), ``out`` is server -> agent
    (a response, an error, or a server notification). A response carries its request's method,
    tool, ``doc_id`` and arguments, so one ``out`` event is enough to say what a call did. A message
    the gateway answered itself (refused, identity, upstream-down) is an ``out`` event with that
    outcome and a ``reason``; it never reached the server.
    """

    kind: Literal["mcp"] = "mcp"
    who: Who
    transport: AgentTransport  # the agent's side
    session: str = ""  # short id of the agent's MCP session (SSE stream or HTTP session)
    direction: Literal["in", "out"]
    method: str | None = None  # JSON-RPC method, e.g. tools/call, initialize
    tool: str | None = None  # tools/call: the tool's name
    doc_id: str | None = None  # tools/call: the doc_id argument, when there is one
    arguments: dict[str, str] = Field(default_factory=dict)  # redacted, each value bounded
    result: str = ""  # out: the first line(s) of the tool's text or the error, bounded
    rpc_id: str | None = None  # the JSON-RPC id as text
    latency_ms: float | None = None  # out: request seen -> response sent
    size: int = 0  # bytes of the message as it went over the wire
    outcome: Outcome | None = None  # out only
    reason: str = ""  # why, when the outcome is not ok (one line)


class PeerEvent(_Event):
    """A peer came, went, or was turned away."""

    kind: Literal["peer"] = "peer"
    who: Who
    state: Literal["connected", "disconnected", "refused"]
    transport: AgentTransport | None = None
    reason: str = ""  # for refused: the one line the peer was told (HTTP 403 body or MCP error)


class GatewayState(_Event):
    """The gateway itself: where it listens, its upstream, who is connected. Sent on every change
    and as the first event every reader gets."""

    kind: Literal["gateway"] = "gateway"
    listen: str  # HOST:PORT agents reach
    upstream: str  # the upstream URL, redacted
    upstream_state: Literal["up", "down", "unknown"] = "unknown"
    upstream_reason: str = ""  # why down
    agents: list[str] = Field(default_factory=list)  # agents with a live session now
    started: datetime  # when this run of the gateway began
    telemetry_listen: str = ""  # HOST:PORT of the telemetry receiver, empty when off
    telemetry_counts: dict[str, int] = Field(default_factory=dict)  # what it refused or ignored, by kind


class ActivityEvent(_Event):
    """Something Claude Code said about itself: an OpenTelemetry log record or metric point, or a
    hook call, attributed to the container it came from (see the agent-activity issue)."""

    kind: Literal["activity"] = "activity"
    who: Who
    source: Literal["otlp-log", "otlp-metric", "hook"]
    name: str  # event or metric name, e.g. claude_code.api_request, Notification
    attributes: dict[str, str] = Field(default_factory=dict)  # bounded, redacted
    value: float | None = None  # a metric point's value, or a log record's cost/tokens when it has one
    summary: str = ""  # one line for a person


class FeedGap(_Event):
    """Events this reader did not get: it fell behind (the oldest were dropped), or the gateway
    restarted (events of the old run are gone), or the reader was away longer than the buffer holds."""

    kind: Literal["gap"] = "gap"
    missed: int | None = None  # how many, when known
    reason: str


FeedEvent = Annotated[Union[McpEvent, PeerEvent, GatewayState, ActivityEvent, FeedGap], Field(discriminator="kind")]
_adapter: TypeAdapter[Any] = TypeAdapter(FeedEvent)
KINDS = frozenset({"mcp", "peer", "gateway", "activity", "gap"})


def who_name(who: Who, claimed: str | None = None) -> str:
    """The agent, else what the peer is: a host client (``claude@host`` when it calls as
    ``claimed``: its own word, as no container vouches for it), or the address of a refused one."""
    if who.agent:
        return who.agent
    if who.host:
        return f"{claimed}@host" if claimed else f"host {who.peer}"
    return who.peer


def event_who(event: McpEvent | PeerEvent | ActivityEvent) -> str:
    """:func:`who_name` for an event: a host client's MCP call names the ``user`` it called as."""
    claimed = event.arguments.get("user") if isinstance(event, McpEvent) else None
    return who_name(event.who, claimed)


def event_line(event: McpEvent | PeerEvent | GatewayState | ActivityEvent | FeedGap) -> str:
    """One line for a person, the agent first (``claude qms_checkout CR-043 -> ok 41 ms``). Not yet
    safe for a terminal: the caller shows it through :mod:`core.safe_text`."""
    if isinstance(event, McpEvent):
        what = event.tool or event.method or "message"
        if event.doc_id:
            what += f" {event.doc_id}"
        if event.direction == "in":
            return f"{event_who(event)} {what} ->"
        latency = f" {event.latency_ms:.0f} ms" if event.latency_ms is not None else ""
        tail = f": {event.reason or event.result}" if event.outcome not in (None, "ok") else ""
        return f"{event_who(event)} {what} -> {event.outcome or 'message'}{latency}{tail}"
    if isinstance(event, PeerEvent):
        how = f" over {event.transport}" if event.transport else ""
        tail = f": {event.reason}" if event.reason else ""
        return f"{who_name(event.who)} {event.state}{how}{tail}"
    if isinstance(event, GatewayState):
        why = f" ({event.upstream_reason})" if event.upstream_reason else ""
        agents = ", ".join(event.agents) or "none"
        return f"gateway on {event.listen}: upstream {event.upstream} {event.upstream_state}{why}; agents: {agents}"
    if isinstance(event, ActivityEvent):
        return f"{who_name(event.who)} {event.name}{': ' + event.summary if event.summary else ''}"
    missed = f"missed {event.missed} events" if event.missed is not None else "missed events"
    return f"{missed}: {event.reason}"


def parse_event(data: str | bytes | dict) -> McpEvent | PeerEvent | GatewayState | ActivityEvent | FeedGap | None:
    """One event from its JSON (text or already decoded); None for a kind this reader does not know.
    Raises ``ValueError`` (pydantic's ValidationError) for a known kind that does not validate."""
    if isinstance(data, (str, bytes)):
        import json

        data = json.loads(data)
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        return None
    return _adapter.validate_python(data)


__all__ = ["who_name", "event_who", "event_line", "Outcome", "Who", "McpEvent", "PeerEvent", "GatewayState", "ActivityEvent", "FeedGap", "FeedEvent",
           "parse_event", "ValidationError"]
