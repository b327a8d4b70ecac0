"""Deterministic scenes of the app, shared by the snapshot tests and scripts/export_screenshots.py.

A scene is the real app (``make_app``) over a services bundle whose parts return fixed core models
(the real pydantic classes) and whose streams yield a fixed script, then stay quiet. The clock is
frozen, in UTC, so every machine draws the same picture. These fakes are about rendering only: the
behaviour is tested by tests/test_tui_pilot.py with the real parts.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from core import layout
from core.access_audit import (
    AuditReport,
    AuditRow,
    ContainerAudit,
    MountFact,
    ProbeFact,
    ProbeStatus,
    Severity,
    Verdict,
)
from core.action_log import ActionLog
from core.container_board import ContainersView, ContainerUpdate, EngineView
from core.containers import ContainerRow
from core.doctor import DoctorReport, ProbeResult
from core.engine_events import ContainerEvent, EngineBack, EngineLost
from core.gateway.calls_board import CallsBoard, CallsUpdate, GatewayView
from core.gateway.events import ActivityEvent as AgentEvent
from core.gateway.events import GatewayState, McpEvent, PeerEvent, Who
from core.layout import Access
from core.mcp_link import LinkState
from core.mcp_stream import StreamEvent
from core.qms_board import QmsUpdate, QmsView
from core.qms_ops import FileFacts, OpOutcome
from core.qms_state import CheckoutRow, InboxTask, QmsSnapshot, RowState, WorkspaceFile
from core.qms_watch import ActivityEvent
from core.settings import Settings
from core.telemetry.activity import ActivityView, AgentActivity
from tui.app import QmsPanel, make_app

NOW = datetime(2026, 11, 27, 14, 30, 0, tzinfo=UTC)
ROOT = Path("/srv/pipe-dream")
AGENTS = ["claude", "lead", "tu_ui", "qa"]
SIZE = (160, 46)  # the full layout: every snapshot and screenshot at this size unless its scene says
SMALL = (80, 24)  # the smallest terminal the panel is made for: one pane at a time
ENDPOINT = "unix:///var/run/docker.sock"


def ago(**kw: float) -> datetime:
    return NOW - timedelta(**kw)


def settings() -> Settings:
    """Scene settings: built without validation, so the project root need not exist."""
    return Settings.model_construct(project_root=ROOT, agents=list(AGENTS), stuck_after=timedelta(hours=4))


async def forever() -> None:
    await asyncio.Event().wait()


# --- the data ---------------------------------------------------------------------------------


def container_rows() -> list[ContainerRow]:
    def row(agent: str, state: str, **kw: Any) -> ContainerRow:
        name = kw.pop("name", f"qms-agent-{agent}")
        return ContainerRow(agent=agent, id=hashlib.sha256(name.encode()).hexdigest(), name=name, state=state,
                            image="claude-agent", **kw)

    return [
        row("claude", "running", started_at=ago(hours=3, minutes=12), restart_count=1, status_text="Up 3 hours"),
        row("lead", "running", started_at=ago(minutes=47), status_text="Up 47 minutes"),
        row("qa", "exited", exit_code=137, status_text="Exited (137) 5 minutes ago"),
        row("", "running", name="pd-scratch", managed=False, started_at=ago(days=2), status_text="Up 2 days"),
    ]


def ws_file(agent: str, doc_id: str, size: int, mtime: datetime, title: str) -> WorkspaceFile:
    return WorkspaceFile(agent=agent, name=f"{doc_id}.md", doc_id=doc_id,
                         path=layout.workspace_dir(ROOT, agent) / f"{doc_id}.md", size=size, mtime=mtime, title=title)


def checkouts() -> list[CheckoutRow]:
    def row(doc_id: str, holder: str, state: RowState, *, status="DRAFT", version="0.1", title="",
            since: datetime | None = None, copy: WorkspaceFile | None = None) -> CheckoutRow:
        return CheckoutRow(doc_id=doc_id, doc_type=doc_id.split("-")[0], version=version, status=status,
                           title=title, holder=holder, held_since=since, held_since_source="checkout",
                           checked_out_date=since.date() if since else None, workspace_file=copy,
                           last_edit=copy.mtime if copy else None, state=state)

    return [
        row("CR-041", "claude", RowState.OK, title="Container launch flags", since=ago(hours=1, minutes=5),
            copy=ws_file("claude", "CR-041", 4312, ago(minutes=3), "Container launch flags")),
        row("CR-043", "claude", RowState.STALE, title="Workspace airlock", version="0.3",
            since=ago(days=1, hours=2), copy=ws_file("claude", "CR-043", 18734, ago(hours=9, minutes=40),
                                                     "Workspace airlock")),
        row("SOP-004", "tu_ui", RowState.ORPHANED, status="DRAFT", version="1.1", title="Document control",
            since=ago(days=3, hours=4), copy=ws_file("tu_ui", "SOP-004", 9021, ago(days=2, hours=23),
                                                     "Document control")),
        row("VAR-001", "lead", RowState.MISSING_COPY, status="IN_EXECUTION", version="1.0",
            title="Variance: flaky CI", since=datetime(2026, 1, 11, 9, 14, tzinfo=UTC)),
        row("CR-039", "lead", RowState.UNMANAGED, status="EFFECTIVE", version="1.0", title="Old notes",
            copy=ws_file("lead", "CR-039", 2210, ago(days=6), "Old notes")),
    ]


def snapshot() -> QmsSnapshot:
    inbox = [InboxTask(agent="qa", file="task-CR-041-review-v0-1.md", task_type="REVIEW", workflow="REVIEW",
                       doc_id="CR-041", from_user="lead", date=date(2026, 11, 27), version="0.1",
                       title="Container launch flags")]
    return QmsSnapshot(project_root=ROOT, checkouts=checkouts(),
                       workspaces={a: [] for a in AGENTS}, inboxes={"claude": [], "lead": [], "qa": inbox * 2},
                       warnings=[], scanned_at=NOW, stuck_after=timedelta(hours=4),
                       running_agents=frozenset({"claude", "lead"}))


def audits(prefix: str = "qms-agent-", root: Path = ROOT, drifted: tuple[str, ...] = ("lead",),
           agents: tuple[str, ...] = ("claude", "lead")) -> list[ContainerAudit]:
    def audit(agent: str, drift: bool) -> ContainerAudit:
        name = f"{prefix}{agent}"
        rows = []

        def add(path: str, declared: Access | None, mount: MountFact, probe: ProbeFact, verdict=Verdict.OK,
                severity=Severity.OK, detail: str = "") -> None:
            rows.append(AuditRow(agent=agent, container=name, path=path, declared=declared, mount=mount,
                                 probe=probe, verdict=verdict, severity=severity, detail=detail))

        def bind(rw: bool, source, via: str | None = None) -> MountFact:
            return MountFact(kind="bind", rw=rw, source=str(source), via=via)

        def directory(write: bool) -> ProbeFact:
            return ProbeFact(status=ProbeStatus.FOUND, kind="dir", read=True, write=write,
                             removed=True if write else None, error="" if write else "touch: Read-only file system")

        for rule in layout.resolve(agent, root).rules:
            path = rule.container_path
            if path == "/":
                add(path, rule.access, MountFact(kind="image"), directory(True))
                add("$HOME", Access.BAKED, MountFact(kind="env", source="HOME=/"),
                    ProbeFact(status=ProbeStatus.SEEN, value="/"))
            elif path == "/.mcp.json":
                add(path, rule.access, MountFact(kind="image"),
                    ProbeFact(status=ProbeStatus.FOUND, kind="file", read=True,
                              value="qms -> http://host.docker.internal:8000/sse"))
            elif path == "/projects":
                add(path, rule.access, MountFact(kind="volume", rw=True, source=rule.source), directory(True))
            elif path == "/pipe-dream" and drift:
                add(path, rule.access, bind(True, root), directory(True), Verdict.DRIFT, Severity.HIGH,
                    "mounted read-write, declared read-only (production is writable from the container); "
                    "declared read-only, but a probe file was created (and removed)")
            elif path == "/pipe-dream":
                add(path, rule.access, bind(False, root), directory(False))
            elif path.endswith("/inbox"):
                add(path, rule.access, bind(drift, root, via="/pipe-dream"), directory(False))
            else:
                add(path, rule.access, bind(True, rule.source), directory(True))
        return ContainerAudit(agent=agent, agent_source="label", container=name, container_id="0" * 64,
                              managed=True, state="running", audited=True, probed=True, rows=rows, ok=not drift)

    return [audit(agent, agent in drifted) for agent in agents]


def probes() -> DoctorReport:
    def probe(where: str, ok: bool, ms: float | None, **kw: Any) -> ProbeResult:
        return ProbeResult(where=where, target="http://host.docker.internal:8000/sse", transport="sse", ok=ok,
                           latency_ms=ms, stage="handshake" if ok else "tcp", **kw)

    host = ProbeResult(where="host", target="http://127.0.0.1:8000/sse", transport="sse", ok=True, latency_ms=2.1,
                       stage="handshake")
    return DoctorReport(host=host, ok=False, containers=[
        probe("claude", True, 4.0, tool="wget"),
        probe("lead", False, None, failure="refused", diagnosis="Connection refused by host.docker.internal:8000."),
    ])


def link_up() -> LinkState:
    return LinkState(status="connected", transport="sse", url="http://127.0.0.1:8000/sse", latency_ms=12.4,
                     since=ago(minutes=50), server_name="qms", tools=["qms_checkout", "qms_checkin"], attempt=1)


def link_down() -> LinkState:
    return LinkState(status="down", transport="sse", url="http://127.0.0.1:8000/sse",
                     reason="connection refused (127.0.0.1:8000)", attempt=4, since=ago(seconds=42))


def mcp_events() -> list[StreamEvent]:
    def ev(seq: int, secs: float, direction: str, kind: str, summary: str, payload: Any, **kw: Any) -> StreamEvent:
        return StreamEvent(seq=seq, time=ago(seconds=secs), direction=direction, kind=kind, summary=summary,
                           payload=payload, size=len(str(payload)), **kw)

    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "qms_checkout", "arguments": {"doc_id": "CR-041", "user": "claude"}}}
    reply = {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": (
        "Checked out: CR-041\nWorkspace: .claude/users/claude/workspace/CR-041.md")}], "isError": False}}
    return [
        ev(1, 3000, "in", "sse-endpoint", "endpoint /messages/?session_id=5f0c…", "/messages/?session_id=5f0c"),
        ev(2, 2999, "out", "request", "#0 initialize", {"jsonrpc": "2.0", "id": 0, "method": "initialize"},
           method="initialize", id=0),
        ev(3, 2999, "in", "response", "#0 initialize (8.2 ms): qms 1.30.0", {"jsonrpc": "2.0", "id": 0},
           method="initialize", id=0, latency_ms=8.2),
        ev(4, 1500, "out", "request", "#7 tools/call qms_checkout(doc_id='CR-041', user='claude')", call,
           method="tools/call", id=7),
        ev(5, 1499.6, "in", "response", "#7 tools/call (412.6 ms): Checked out: CR-041 Workspace: "
           ".claude/users/claude/workspace/CR-041.md", reply, method="tools/call", id=7, latency_ms=412.6),
        ev(6, 5, "out", "request", "#96 ping", {"jsonrpc": "2.0", "id": 96, "method": "ping"}, method="ping", id=96),
        ev(7, 5, "in", "response", "#96 ping ok (12.4 ms)", {"jsonrpc": "2.0", "id": 96, "result": {}},
           method="ping", id=96, latency_ms=12.4),
    ]


def docker_events(rows: list[ContainerRow]) -> list[Any]:
    by = {r.agent or r.name: r for r in rows}
    return [
        EngineBack(time=ago(minutes=50), endpoint=ENDPOINT, containers=rows, first=True),
        ContainerEvent(time=ago(minutes=47), action="start", agent="lead", name="qms-agent-lead", id=by["lead"].id),
        ContainerEvent(time=ago(minutes=5), action="kill", agent="qa", name="qms-agent-qa", id=by["qa"].id,
                       signal="9"),
        ContainerEvent(time=ago(minutes=5), action="die", agent="qa", name="qms-agent-qa", id=by["qa"].id,
                       exit_code=137),
    ]


def activity() -> list[ActivityEvent]:
    def act(secs: float, user: str, event: str, doc_id: str, version: str) -> ActivityEvent:
        return ActivityEvent(time=ago(seconds=secs), user=user, event=event, doc_id=doc_id,
                             doc_type=doc_id.split("-")[0], version=version, details={},
                             raw=f'{{"event":"{event}","user":"{user}"}}',
                             path=ROOT / "QMS" / ".audit" / doc_id.split("-")[0] / f"{doc_id}.jsonl")

    return [act(1499, "claude", "CHECKOUT", "CR-041", "0.1"), act(120, "claude", "CHECKIN", "CR-040", "0.2")]


def gateway_events() -> list[Any]:
    """The agents' calls through the gateway, as its feed says them."""
    def who(agent: str) -> Who:
        return Who(peer=f"172.17.0.{2 + AGENTS.index(agent)}", agent=agent, container=f"qms-agent-{agent}")

    def call(secs: float, agent: str, tool: str, doc: str | None, outcome: str, ms: float, result: str,
             reason: str = "") -> McpEvent:
        return McpEvent(time=ago(seconds=secs), who=who(agent), transport="sse", session="5f0c", direction="out",
                        method="tools/call", tool=tool, doc_id=doc, outcome=outcome, latency_ms=ms, result=result,
                        reason=reason, arguments={"user": agent, **({"doc_id": doc} if doc else {})})

    state = GatewayState(time=ago(minutes=50), listen="172.17.0.1:8000", upstream="http://127.0.0.1:8001/mcp",
                         upstream_state="up", agents=["claude", "lead", "tu_ui"], started=ago(minutes=50))
    return [
        state,
        PeerEvent(time=ago(minutes=49), who=who("claude"), state="connected", transport="sse"),
        call(1500, "claude", "qms_checkout", "CR-041", "ok", 41.2, "Checked out: CR-041"),
        call(600, "lead", "qms_inbox", None, "ok", 12.0, "Inbox is empty"),
        call(95, "tu_ui", "qms_checkin", "CR-038", "error", 30.4, "Permission Denied: 'checkin' command",
             "Permission Denied: 'checkin' command / You (tu_ui) are not the responsible user"),
        call(70, "tu_ui", "qms_status", "CR-038", "identity", 0.4, "IDENTITY MISMATCH: called as user='lead'",
             "called as user='lead' from agent tu_ui's container"),
        call(40, "claude", "qms_read", "CR-041", "ok", 18.3, "---"),
        call(12, "claude", "qms_workspace", None, "ok", 9.8, "Workspace for claude:"),
    ]


def agent_activity(*, lead_waits: bool = False) -> ActivityView:
    """What the activity board makes of the agents' telemetry: claude works (tokens every minute),
    lead is idle at its prompt or waits for permission, qa's container died with API errors."""
    burst = [0] * 12 + [1200, 3400, 2100, 0, 0, 800, 5200, 7400, 6100, 2300, 0, 0, 1900, 4400, 8800, 9600, 7200, 3100]
    lead = AgentActivity(agent="lead", container="qms-agent-lead", state="idle", since=ago(minutes=6),
                         last_tool="Read", last_tool_at=ago(minutes=6, seconds=20), last_event_at=ago(minutes=6),
                         tokens=8900, cost_usd=0.21, tokens_today=8900, cost_usd_today=0.21,
                         per_minute=[0] * 22 + [600, 2100, 900] + [0] * 5)
    if lead_waits:
        lead = lead.model_copy(update={
            "state": "waiting", "since": ago(seconds=25), "waiting_tool": "Bash(rm -rf build)",
            "waiting_message": "Claude needs your permission to use Bash", "last_tool": "Bash",
            "last_tool_at": ago(seconds=26), "last_event_at": ago(seconds=25)})
    return ActivityView(agents={
        "claude": AgentActivity(agent="claude", container="qms-agent-claude", state="working", since=ago(seconds=40),
                                last_tool="Bash", last_tool_at=ago(seconds=8), last_event_at=ago(seconds=2),
                                tokens=41234, cost_usd=1.23, tokens_today=120400, cost_usd_today=3.41,
                                per_minute=burst),
        "lead": lead,
        "qa": AgentActivity(agent="qa", container="qms-agent-qa", state="working", since=ago(minutes=6),
                            last_tool="Edit", last_tool_at=ago(minutes=5, seconds=10), last_event_at=ago(minutes=5),
                            tokens=15800, cost_usd=0.52, tokens_today=15800, cost_usd_today=0.52, api_errors_10m=3,
                            per_minute=[0] * 20 + [900, 1500, 400, 2000, 1100] + [0] * 5),
    })


def activity_events(*, lead_waits: bool = False) -> list[AgentEvent]:
    """What the agents said about themselves on the gateway's feed (telemetry and hooks)."""
    def said(secs: float, agent: str, source: str, name: str, summary: str, **attributes: str) -> AgentEvent:
        return AgentEvent(time=ago(seconds=secs), who=Who(peer=f"172.17.0.{2 + AGENTS.index(agent)}", agent=agent,
                                                          container=f"qms-agent-{agent}"),
                          source=source, name=name, summary=summary, attributes=attributes)

    events = [
        said(330, "qa", "otlp-log", "claude_code.api_error", "529 overloaded (attempt 3)", status_code="529"),
        said(360, "lead", "hook", "Stop", "at the prompt"),
        said(8, "claude", "hook", "PreToolUse", "Bash: npm test", tool_name="Bash"),
        said(3, "claude", "otlp-log", "claude_code.api_request", "claude-sonnet-4 1,840 tokens $0.03 2.1 s"),
    ]
    if lead_waits:
        events.append(said(25, "lead", "hook", "Notification", "Claude needs your permission to use Bash",
                           notification_type="permission_prompt"))
    return events


class SceneCallsBoard(CallsBoard):
    """The real calls board over the scene's feed, with the activity board's view fixed (its
    telemetry receiver is another part); activity events pass through to the stream."""

    def __init__(self, timeline: "Timeline", activity: ActivityView) -> None:
        super().__init__(lambda: FakeFeedClient(timeline), now=lambda: NOW)
        self.timeline = timeline
        self.fixed_activity = activity

    def view(self, now: datetime | None = None) -> GatewayView:
        view = super().view(now)
        view.activity = self.fixed_activity
        return view

    async def follow(self) -> AsyncIterator[CallsUpdate]:
        async for event in FakeFeedClient(self.timeline).events():
            self.apply(event)
            yield CallsUpdate.model_construct(view=self.view(), event=event)  # an ActivityEvent too


class FakeFeedClient:
    """The gateway's feed, played from the scene's timeline."""

    def __init__(self, timeline: "Timeline") -> None:
        self.timeline = timeline

    async def events(self, *, from_start: bool = False):
        async for item in self.timeline.play("gateway"):
            yield item


LOG_LINES = [
    "agent claude starting (HOME=/, QMS_USER=claude)",
    "MCP config: /.mcp.json -> http://host.docker.internal:8000/sse",
    "tmux session 'agent' created",
    "claude: reading /pipe-dream/CLAUDE.md",
    "claude: qms_checkout CR-041 -> Checked out: CR-041",
    "claude: editing /pipe-dream/.claude/users/claude/workspace/CR-041.md",
    "claude: running tests in /projects/flow-state",
    "claude: 42 passed in 3.1s",
]


# --- the fake parts ---------------------------------------------------------------------------


class Timeline:
    """One script for every stream, played in time order: each stream (channel) waits for its turn,
    so the lines reach the live stream in the same order on every run. Then everything stays quiet."""

    def __init__(self, entries: list[tuple[datetime, str, Any]]) -> None:
        self.entries = sorted(entries, key=lambda e: e[0])  # stable: same time keeps the given order
        self.pos = 0
        self.drained = asyncio.Event()
        self._moved = asyncio.Event()

    async def play(self, channel: str):
        while True:
            while self.pos < len(self.entries) and self.entries[self.pos][1] != channel:
                await self._moved.wait()
            if self.pos >= len(self.entries):
                self.drained.set()
                await forever()
            item = self.entries[self.pos][2]
            self.pos += 1
            moved, self._moved = self._moved, asyncio.Event()
            moved.set()
            yield item


class FakeContainers:
    """The container operations: each returns the agent's fixed row."""

    def __init__(self, rows: list[ContainerRow]) -> None:
        self.rows = rows

    def _row(self, agent: str) -> ContainerRow:
        return next(r for r in self.rows if r.agent == agent)

    def launch(self, agent: str, command: list[str] | None = None) -> ContainerRow:
        return self._row(agent)

    def restart(self, agent: str) -> ContainerRow:
        return self._row(agent)

    def start(self, agent: str) -> ContainerRow:
        return self._row(agent)

    def stop(self, agent: str) -> ContainerRow:
        return self._row(agent)

    async def logs(self, agent: str, tail: int = 200, follow: bool = False) -> AsyncIterator[str]:
        for line in LOG_LINES[-tail:]:
            yield line
        if follow:
            await forever()


class FakeContainerBoard:
    """The engine's script as board updates: the current view first, then one update per event
    (an engine back brings the fixed rows, an engine lost the engine down)."""

    def __init__(self, timeline: Timeline, image: str = "claude-agent") -> None:
        self.timeline = timeline
        self.image = image
        self._view = ContainersView(engine=EngineView(image=image), rows=[])
        self.refreshed = 0

    @property
    def view(self) -> ContainersView:
        return self._view

    async def run(self) -> None:
        await forever()

    async def updates(self) -> AsyncIterator[ContainerUpdate]:
        yield ContainerUpdate(view=self._view)
        async for ev in self.timeline.play("docker"):
            if isinstance(ev, EngineBack):
                self._view = ContainersView(rows=ev.containers, listed=True, engine=EngineView(
                    status="up", endpoint=ev.endpoint, version="28.2.2", image=self.image, image_present=True))
            elif isinstance(ev, EngineLost):
                self._view = self._view.model_copy(update={"engine": EngineView(
                    status="down", endpoint=ev.endpoint, reason=ev.reason, attempt=ev.attempt, retry_in=ev.retry_in,
                    image=self.image)})
            yield ContainerUpdate(view=self._view, events=[ev])

    def refresh(self) -> None:
        self.refreshed += 1


class FakeQmsBoard:
    """The fixed snapshot first, then the audit-trail script as activity."""

    def __init__(self, timeline: Timeline, snapshot: QmsSnapshot) -> None:
        self.timeline = timeline
        self.view = QmsView(snapshot=snapshot, at=NOW)
        self.containers: list[ContainerRow] | None = None

    async def run(self) -> None:
        await forever()

    async def updates(self) -> AsyncIterator[QmsUpdate]:
        yield QmsUpdate(view=self.view)
        async for ev in self.timeline.play("qms"):
            yield QmsUpdate(view=self.view, activity=[ev])

    def set_containers(self, rows: list[ContainerRow] | None) -> None:
        self.containers = rows

    def retime(self) -> None:
        pass


class FakeLink:
    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline

    async def run(self) -> None:
        await forever()

    def states(self) -> AsyncIterator[LinkState]:
        return self.timeline.play("link")


class FakeSubscription:
    def __init__(self, timeline: Timeline) -> None:
        self.events = timeline.play("mcp")

    def __aiter__(self) -> FakeSubscription:
        return self

    async def __anext__(self) -> StreamEvent:
        return await anext(self.events)

    async def __aenter__(self) -> FakeSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


class FakeStream:
    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline

    def snapshot(self) -> list[StreamEvent]:
        return []

    def subscribe(self, maxlen: int | None = None) -> FakeSubscription:
        return FakeSubscription(self.timeline)


class FakeOps:
    async def checkin(self, doc_id: str, agent: str) -> OpOutcome:
        return OpOutcome(operation="checkin", doc_id=doc_id, agent=agent, status="ok", text=f"Checked in: {doc_id}")

    async def checkout(self, doc_id: str, agent: str) -> OpOutcome:
        return OpOutcome(operation="checkout", doc_id=doc_id, agent=agent, status="ok",
                         text=f"Checked out: {doc_id}", workspace=FileFacts(path=ROOT, size=0, sha256="", mtime=0))

    async def repair(self, doc_id: str, agent: str) -> OpOutcome:
        return OpOutcome(operation="repair", doc_id=doc_id, agent=agent, status="ok", actions=["restored", "checked in"])


@dataclass
class SceneServices:
    """A services bundle of fakes with fixed answers (it satisfies ``tui.seams.PanelServices``)."""

    settings: Settings
    now: Callable[[], datetime]
    containers: FakeContainers
    container_board: FakeContainerBoard
    qms_board: FakeQmsBoard
    calls_board: SceneCallsBoard
    link: FakeLink
    stream: FakeStream
    ops: FakeOps
    actions: ActionLog
    timeline: Timeline
    fixed_audits: list[ContainerAudit] = field(default_factory=list)
    fixed_doctor: DoctorReport | None = None
    doctor_runs: int = 0

    def layout(self, agent: str) -> layout.AgentLayout:
        return layout.for_settings(self.settings, agent)

    def audit(self) -> AuditReport:
        return AuditReport(containers=self.fixed_audits, ok=False, generated_at=NOW)

    def audit_container(self, row: ContainerRow | str) -> ContainerAudit:
        name = row.name if isinstance(row, ContainerRow) else row
        return next(a for a in self.fixed_audits if a.container == name)

    async def doctor(self) -> DoctorReport:
        self.doctor_runs += 1
        assert self.fixed_doctor is not None
        return self.fixed_doctor

    def close(self) -> None:
        pass


def services(*, engine: bool = True, link_lost: bool = False, lead_waits: bool = False) -> SceneServices:
    rows = container_rows()
    entries: list[tuple[datetime, str, Any]] = []
    if engine:
        entries += [(ev.time, "docker", ev) for ev in docker_events(rows)]
    else:
        entries.append((ago(seconds=3), "docker", EngineLost(
            time=ago(seconds=3), endpoint=ENDPOINT, reason=f"cannot connect to {ENDPOINT}: [Errno 111] Connection "
            "refused", attempt=6, retry_in=8.0)))
    states = [link_up()] + ([link_down()] if link_lost else [])
    entries += [(state.since, "link", state) for state in states]
    entries += [(ev.time, "mcp", ev) for ev in mcp_events() if not (link_lost and ev.time > link_down().since)]
    entries += [(ev.time, "qms", ev) for ev in activity()]
    entries += [(ev.time, "gateway", ev) for ev in gateway_events() + activity_events(lead_waits=lead_waits)]
    timeline = Timeline(entries)
    return SceneServices(
        settings=settings(),
        now=lambda: NOW,
        containers=FakeContainers(rows),
        container_board=FakeContainerBoard(timeline),
        qms_board=FakeQmsBoard(timeline, snapshot()),
        calls_board=SceneCallsBoard(timeline, agent_activity(lead_waits=lead_waits)),
        link=FakeLink(timeline),
        stream=FakeStream(timeline),
        ops=FakeOps(),
        actions=ActionLog(Path(tempfile.mkdtemp(prefix="qms-panel-scene-")), project_root=ROOT),
        timeline=timeline,
        fixed_audits=audits() if engine else [],
        fixed_doctor=probes(),
    )


# --- the demo, as `qms-panel --demo` shows it a quarter of an hour in --------------------------------

DEMO_PREFIX = "qms-demo-3f9a1c-"
DEMO_ROOT = Path("/tmp/qms-panel-demo-k2x8q0/project")
DEMO_AGENTS = ["claude", "lead", "qa", "tu_ui"]
DEMO_IMAGE = "qms-panel-demo-agent:1"


def demo_settings() -> Settings:
    return Settings.model_construct(project_root=DEMO_ROOT, agents=list(DEMO_AGENTS), container_prefix=DEMO_PREFIX,
                                    image=DEMO_IMAGE, stuck_after=timedelta(minutes=2),
                                    mcp_url="http://172.17.0.1:8000/mcp")


def demo_rows() -> list[ContainerRow]:
    def row(agent: str, started: float) -> ContainerRow:
        name = DEMO_PREFIX + agent
        return ContainerRow(agent=agent, id=hashlib.sha256(name.encode()).hexdigest(), name=name, state="running",
                            image=DEMO_IMAGE, started_at=ago(seconds=started), status_text="Up 15 minutes")

    return [row(agent, 900 - 4 * i) for i, agent in enumerate(DEMO_AGENTS)]


def demo_snapshot() -> QmsSnapshot:
    def copy(agent: str, doc_id: str, size: int, mtime: datetime, title: str) -> WorkspaceFile:
        return WorkspaceFile(agent=agent, name=f"{doc_id}.md", doc_id=doc_id, size=size, mtime=mtime, title=title,
                             path=layout.workspace_dir(DEMO_ROOT, agent) / f"{doc_id}.md")

    def row(doc_id: str, holder: str, state: RowState, since: float, edit: float, title: str) -> CheckoutRow:
        ws = copy(holder, doc_id, 2400 + 311 * len(title), ago(seconds=edit), title)
        return CheckoutRow(doc_id=doc_id, doc_type=doc_id.split("-")[0], version="0.1", status="DRAFT", title=title,
                           holder=holder, held_since=ago(seconds=since), held_since_source="checkout",
                           checked_out_date=NOW.date(), workspace_file=ws, last_edit=ws.mtime, state=state)

    checkouts = [
        row("CR-002", "lead", RowState.STALE, 700, 690, "Gateway in front of the server"),  # left, gone quiet
        row("CR-004", "claude", RowState.OK, 40, 12, "Demo agents through the gateway"),
        row("SOP-002", "tu_ui", RowState.OK, 25, 20, "Change Control"),
    ]
    return QmsSnapshot(project_root=DEMO_ROOT, checkouts=checkouts, workspaces={a: [] for a in DEMO_AGENTS},
                       inboxes={"claude": [], "lead": [], "qa": [], "tu_ui": []}, warnings=[], scanned_at=NOW,
                       stuck_after=timedelta(minutes=2), running_agents=frozenset(DEMO_AGENTS))


def demo_who(agent: str) -> Who:
    return Who(peer=f"172.17.0.{2 + DEMO_AGENTS.index(agent)}", agent=agent, container=DEMO_PREFIX + agent)


def demo_gateway_events() -> list[Any]:
    """Each demo agent's routine through the gateway: inbox, checkout, edit, checkin, create; qa
    misbehaves (another agent's identity, a write to production)."""
    def call(secs: float, agent: str, tool: str, doc: str | None, outcome: str, ms: float, result: str,
             reason: str = "") -> McpEvent:
        return McpEvent(time=ago(seconds=secs), who=demo_who(agent), transport="streamable-http", session="9b1e",
                        direction="out", method="tools/call", tool=tool, doc_id=doc, outcome=outcome, latency_ms=ms,
                        result=result, reason=reason, arguments={"user": agent, **({"doc_id": doc} if doc else {})})

    state = GatewayState(time=ago(seconds=910), listen="172.17.0.1:8000", upstream="http://127.0.0.1:41873/mcp",
                         upstream_state="up", agents=list(DEMO_AGENTS), started=ago(seconds=910))
    return [
        state,
        *(PeerEvent(time=ago(seconds=895 - 4 * i), who=demo_who(a), state="connected", transport="streamable-http")
          for i, a in enumerate(DEMO_AGENTS)),
        call(885, "lead", "qms_inbox", None, "ok", 9.1, "Inbox is empty"),
        call(700, "lead", "qms_checkout", "CR-002", "ok", 38.0, "Checked out: CR-002"),
        call(150, "claude", "qms_create", "CR-004", "ok", 44.2, "Created: CR-004"),
        call(96, "qa", "qms_status", "CR-002", "identity", 0.3, "IDENTITY MISMATCH: called as user='lead'",
             "called as user='lead' from agent qa's container"),
        call(80, "tu_ui", "qms_checkin", "SOP-001", "ok", 51.7, "Checked in: SOP-001"),
        call(40, "claude", "qms_checkout", "CR-004", "ok", 36.5, "Checked out: CR-004"),
        call(25, "tu_ui", "qms_checkout", "SOP-002", "ok", 33.0, "Checked out: SOP-002"),
        call(14, "qa", "qms_inbox", None, "ok", 8.4, "Inbox is empty"),
        call(6, "claude", "qms_read", "CR-004", "ok", 12.9, "---"),
    ]


def demo_activity() -> ActivityView:
    def agent(name: str, state: str, tool: str, tokens: int, cost: float, per_minute: list[int]) -> AgentActivity:
        return AgentActivity(agent=name, container=DEMO_PREFIX + name, state=state, since=ago(seconds=30),
                             last_tool=tool, last_tool_at=ago(seconds=9), last_event_at=ago(seconds=4), tokens=tokens,
                             cost_usd=cost, tokens_today=tokens, cost_usd_today=cost,
                             per_minute=[0] * 27 + per_minute)

    return ActivityView(agents={
        "claude": agent("claude", "working", "Edit", 18200, 0.41, [2100, 5400, 7800]),
        "lead": agent("lead", "idle", "Read", 6100, 0.12, [0, 0, 0]),
        "qa": agent("qa", "working", "Bash", 9700, 0.22, [1200, 4100, 4400]),
        "tu_ui": agent("tu_ui", "working", "Write", 12500, 0.30, [900, 6000, 5600]),
    })


def demo_activity_events() -> list[AgentEvent]:
    def said(secs: float, agent: str, source: str, name: str, summary: str, **attributes: str) -> AgentEvent:
        return AgentEvent(time=ago(seconds=secs), who=demo_who(agent), source=source, name=name, summary=summary,
                          attributes=attributes)

    return [
        said(890, "claude", "hook", "SessionStart", "startup"),
        said(680, "lead", "hook", "Stop", "at the prompt"),
        said(90, "qa", "hook", "PostToolUse", "Bash: touch /pipe-dream/x: Read-only file system", tool_name="Bash"),
        said(9, "claude", "hook", "PostToolUse", "Edit: .claude/users/claude/workspace/CR-004.md", tool_name="Edit"),
        said(4, "tu_ui", "otlp-log", "claude_code.api_request", "claude-sonnet-4 2,310 tokens $0.04 1.8 s"),
    ]


def demo_services() -> SceneServices:
    """The bundle of a demo a quarter of an hour in: four demo agents running, their calls in the
    stream, lead's CR-002 left checked out and gone stale."""
    rows = demo_rows()
    entries: list[tuple[datetime, str, Any]] = [
        (ago(seconds=905), "docker", EngineBack(time=ago(seconds=905), endpoint=ENDPOINT, containers=rows, first=True)),
        *((r.started_at, "docker", ContainerEvent(time=r.started_at, action="start", agent=r.agent, name=r.name,
                                                   id=r.id, managed=True)) for r in rows),
    ]
    link = link_up().model_copy(update={"url": "http://172.17.0.1:8000/mcp", "transport": "streamable-http",
                                        "since": ago(seconds=908)})
    entries.append((link.since, "link", link))
    entries += [(ago(seconds=secs), "qms", ActivityEvent(
        time=ago(seconds=secs), user=user, event=event, doc_id=doc, doc_type=doc.split("-")[0], version="0.1",
        details={}, raw="{}", path=DEMO_ROOT / "QMS" / ".audit" / f"{doc}.jsonl"))
        for secs, user, event, doc in ((700, "lead", "CHECKOUT", "CR-002"), (150, "claude", "CREATE", "CR-004"),
                                       (80, "tu_ui", "CHECKIN", "SOP-001"), (40, "claude", "CHECKOUT", "CR-004"))]
    entries += [(ev.time, "gateway", ev) for ev in demo_gateway_events() + demo_activity_events()]
    timeline = Timeline(entries)
    settings_ = demo_settings()
    doctor = DoctorReport(host=probes().host, ok=True, containers=[
        ProbeResult(where=a, target="http://host.docker.internal:8000/mcp", transport="streamable-http", ok=True,
                    latency_ms=3.0 + i, stage="handshake", tool="wget") for i, a in enumerate(DEMO_AGENTS)])
    return SceneServices(
        settings=settings_, now=lambda: NOW, containers=FakeContainers(rows),
        container_board=FakeContainerBoard(timeline, DEMO_IMAGE), qms_board=FakeQmsBoard(timeline, demo_snapshot()),
        calls_board=SceneCallsBoard(timeline, demo_activity()), link=FakeLink(timeline), stream=FakeStream(timeline),
        ops=FakeOps(), actions=ActionLog(Path(tempfile.mkdtemp(prefix="qms-panel-scene-")), project_root=DEMO_ROOT),
        timeline=timeline, fixed_audits=audits(DEMO_PREFIX, DEMO_ROOT, drifted=(), agents=tuple(DEMO_AGENTS)),
        fixed_doctor=doctor)


# --- scenes -----------------------------------------------------------------------------------


def app(bundle: SceneServices | None = None) -> QmsPanel:
    bundle = bundle or services()
    return make_app(bundle.settings, bundle, clock=lambda: NOW, still=True)


def demo_app() -> QmsPanel:
    return app(demo_services())


async def until(pilot: Pilot, predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for ``predicate`` (what the app draws at its own pace); a test failure, not a hang."""
    import anyio
    import pytest

    try:
        with anyio.fail_after(timeout):
            while not predicate():
                await pilot.pause(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def settle(pilot: Pilot) -> None:
    """Wait until the scripts have played and every one-off worker has finished."""
    panel: QmsPanel = pilot.app  # type: ignore[assignment]
    bundle: SceneServices = panel.services  # type: ignore[assignment]
    for _ in range(500):
        await pilot.pause()
        busy = [w for w in panel.workers if w.group not in ("feed", "logs") and not w.is_finished]
        if (not busy and bundle.timeline.drained.is_set() and bundle.doctor_runs and panel.main.scanned
                and not panel.main.stream.pending):
            break
    else:
        raise TimeoutError(f"the scene did not settle: workers {busy}, pending {panel.main.stream.pending}")
    await pilot.pause()
    await pilot.pause()


async def select_document(pilot: Pilot, doc_id: str) -> None:
    """Move the workspace cursor to ``doc_id``."""
    main = pilot.app.main  # type: ignore[attr-defined]
    main.workspace.focus()
    table = main.workspace.table
    for _ in range(table.row_count):
        selected = main.workspace.selected
        if selected is not None and selected.doc_id == doc_id:
            break
        await pilot.press("down")
    await pilot.pause()


async def select_container(pilot: Pilot, agent: str) -> None:
    """Move the containers cursor to ``agent``."""
    pane = pilot.app.main.containers_pane  # type: ignore[attr-defined]
    pane.focus()
    for _ in range(pane.table.row_count):
        if pane.selected_agent == agent:
            break
        await pilot.press("down")
    await pilot.pause()


@dataclass
class Scene:
    name: str
    description: str
    make: Callable[[], QmsPanel]
    prepare: Callable[[Pilot], Awaitable[None]] | None = None
    press: tuple[str, ...] = ()
    size: tuple[int, int] = SIZE  # the terminal's columns and rows

    async def run_before(self, pilot: Pilot) -> None:
        await settle(pilot)
        if self.prepare is not None:
            await self.prepare(pilot)
        for key in self.press:
            await pilot.press(key)
        await settle(pilot)


async def _stuck(pilot: Pilot) -> None:
    await select_document(pilot, "SOP-004")


async def _lead(pilot: Pilot) -> None:
    await select_container(pilot, "lead")


SCENES: dict[str, Scene] = {s.name: s for s in (
    Scene("main", "the main screen, everything up", app),
    Scene("docker-down", "the Docker engine unreachable", lambda: app(services(engine=False))),
    Scene("mcp-down", "the MCP link down", lambda: app(services(link_lost=True))),
    Scene("drift", "lead's container drifted from the access matrix", app, _lead),
    Scene("permission", "lead waits for permission: its row in the attention colour, its detail line",
          lambda: app(services(lead_waits=True))),
    Scene("stuck-document", "an orphaned document selected", app, _stuck),
    Scene("checkin-confirm", "the checkin confirmation", app, _stuck, ("c",)),
    Scene("logs", "the logs screen of claude", app, None, ("l",)),
    Scene("help", "the help screen", app, None, ("question_mark",)),
    Scene("demo", "the demo 15 minutes in: four demo agents, their calls, a stale document", demo_app),
    Scene("demo-small", "the demo at 80x24: one pane at a time, the Containers pane first", demo_app, size=SMALL),
    Scene("demo-small-matrix", "80x24, tab: the Access matrix", demo_app, press=("tab",), size=SMALL),
    Scene("demo-small-workspace", "80x24, tab tab: the Workspace pane, the stale document highlighted", demo_app,
          press=("tab", "tab"), size=SMALL),
    Scene("demo-small-stream", "80x24, shift+tab: the live stream", demo_app, press=("shift+tab",), size=SMALL),
    Scene("demo-zoomed-stream", "160x46, tab tab tab z: the live stream zoomed", demo_app,
          press=("tab", "tab", "tab", "z")),
)}
