"""What the panel needs from the core, as ``typing.Protocol``s.

The app is typed against these, not against the concrete core classes, so the scene fakes of
the snapshot tests stand in for the real parts on the same terms: ``tests/test_tui_seams.py``
checks that the real bundle (:class:`core.services.Services` and its parts) and the fakes both
satisfy every protocol, member by member (names, parameters, type hints, sync or async).
Only what the panel calls is here; the core's classes may offer more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Protocol

from core.access_audit import AuditReport, ContainerAudit
from core.action_log import ActionRecord, ActionTicket, SkippedLine
from core.container_board import ContainersView, ContainerUpdate
from core.containers import ContainerRow
from core.doctor import DoctorReport
from core.gateway.calls_board import CallsUpdate, GatewayView
from core.layout import AgentLayout
from core.link_state import LinkState
from core.mcp_stream import StreamEvent
from core.qms_board import QmsUpdate
from core.qms_ops import OpOutcome
from core.settings import Settings


class ContainerBoardSeam(Protocol):
    """The containers and the engine, live (``core.container_board.ContainerBoard``)."""

    @property
    def view(self) -> ContainersView: ...

    async def run(self) -> None: ...

    def updates(self) -> AsyncIterator[ContainerUpdate]: ...

    def refresh(self) -> None: ...


class QmsBoardSeam(Protocol):
    """Checkouts, workspaces and inboxes, live (``core.qms_board.QmsBoard``)."""

    async def run(self) -> None: ...

    def updates(self) -> AsyncIterator[QmsUpdate]: ...

    def set_containers(self, rows: list[ContainerRow] | None) -> None: ...

    def retime(self) -> None: ...


class CallsBoardSeam(Protocol):
    """The agents' calls through the gateway (``core.gateway.calls_board.CallsBoard``)."""

    def view(self, now: datetime | None = None) -> GatewayView: ...

    def follow(self) -> AsyncIterator[CallsUpdate]: ...


class ContainersSeam(Protocol):
    """The operations on one agent's container (``core.containers.ContainerManager``); blocking."""

    def launch(self, agent: str, command: list[str] | None = None) -> ContainerRow: ...

    def restart(self, agent: str) -> ContainerRow: ...

    def start(self, agent: str) -> ContainerRow: ...

    def stop(self, agent: str) -> ContainerRow: ...

    def logs(self, agent: str, tail: int = 200, follow: bool = False) -> AsyncIterator[str]: ...


class LinkSeam(Protocol):
    """The MCP session (``core.mcp_link.McpLink``)."""

    async def run(self) -> None: ...

    def states(self) -> AsyncIterator[LinkState]: ...


class SubscriptionSeam(Protocol):
    """One reader of the MCP stream (``core.mcp_stream.Subscription``): ``async with`` it, ``async for`` it."""

    def __aiter__(self) -> SubscriptionSeam: ...

    async def __anext__(self) -> StreamEvent: ...

    async def __aenter__(self) -> SubscriptionSeam: ...

    async def __aexit__(self, *exc: object) -> None: ...


class StreamSeam(Protocol):
    """Every MCP message, recorded (``core.mcp_stream.McpStream``)."""

    def snapshot(self) -> list[StreamEvent]: ...

    def subscribe(self, maxlen: int | None = None) -> SubscriptionSeam: ...


class OpsSeam(Protocol):
    """Checkin, checkout and repair on behalf of an agent (``core.qms_ops.QmsOps``)."""

    async def checkout(self, doc_id: str, agent: str) -> OpOutcome: ...

    async def checkin(self, doc_id: str, agent: str) -> OpOutcome: ...

    async def repair(self, doc_id: str, agent: str) -> OpOutcome: ...


class ActionLogSeam(Protocol):
    """The operator's action log (``core.action_log.ActionLog``): intent before, result after."""

    def begin(self, action: str, *, agent: str | None = None, doc_id: str | None = None,
              container: str | None = None, reason: str | None = None) -> ActionTicket: ...

    def follow(self, *, check_every_ms: int = 1000) -> AsyncIterator[ActionRecord | SkippedLine]: ...


class PanelServices(Protocol):
    """The bundle the app is built from (``core.services.Services``)."""

    settings: Settings
    now: Callable[[], datetime]
    containers: ContainersSeam
    container_board: ContainerBoardSeam
    qms_board: QmsBoardSeam
    calls_board: CallsBoardSeam
    link: LinkSeam
    stream: StreamSeam
    ops: OpsSeam
    actions: ActionLogSeam

    def layout(self, agent: str) -> AgentLayout: ...

    def audit(self) -> AuditReport: ...

    def audit_container(self, row: ContainerRow | str) -> ContainerAudit: ...

    async def doctor(self) -> DoctorReport: ...

    def close(self) -> None: ...
