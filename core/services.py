"""The services bundle: every core part the app and the command line are built from, built once.

``build_services(settings)`` makes the real parts; the app (``tui.app.make_app``), the
subcommands, the tests and the screenshot script all take a :class:`Services`. Nothing above
``core`` constructs a Docker client or an MCP session: it asks the bundle.

Live state lives in the boards, :attr:`Services.container_board` (containers, the engine,
the agent image), :attr:`Services.qms_board` (the QMS files) and :attr:`Services.calls_board` (the
agents' calls, from the gateway's feed); the panel follows them and the
one-shot commands ``settle()`` them, so both read the state the same way.

The bundle's methods are thin: they bind the settings and the clock to the core functions
(audit, doctor), so that a caller never has to know which arguments they need.
Blocking methods (Docker, files) are marked; the app runs them in thread workers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import action_log, layout
from core.settings import Settings

if TYPE_CHECKING:
    from core.access_audit import AuditReport, ContainerAudit
    from core.container_board import ContainerBoard
    from core.containers import ContainerManager, ContainerRow
    from core.gateway.calls_board import CallsBoard
    from core.doctor import DoctorReport
    from core.mcp_link import McpLink
    from core.mcp_stream import McpStream
    from core.qms_board import QmsBoard
    from core.qms_ops import QmsOps


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """The core parts of one panel: one engine, one MCP link, one project."""

    settings: Settings
    containers: ContainerManager
    container_board: ContainerBoard
    qms_board: QmsBoard
    calls_board: CallsBoard
    link: McpLink
    stream: McpStream
    ops: QmsOps
    now: Callable[[], datetime] = field(default=utc_now)
    actions: action_log.ActionLog = field(default=None)  # type: ignore[assignment] - made from the settings

    def __post_init__(self) -> None:
        if self.actions is None:  # no I/O: the log's folder is made by its first record
            self.actions = action_log.for_settings(self.settings, now=self.now)

    @property
    def project_root(self) -> Path:
        return Path(self.settings.project_root)

    def layout(self, agent: str) -> layout.AgentLayout:
        """The declared access matrix of ``agent`` (no I/O)."""
        return layout.for_settings(self.settings, agent)

    # --- checks ------------------------------------------------------------------------

    def audit(self) -> AuditReport:
        """The access audit of every container (blocking: inspect and exec)."""
        from core.access_audit import audit_all

        return audit_all(self.containers, self.settings)

    def audit_container(self, row: ContainerRow | str) -> ContainerAudit:
        """The access audit of one container (blocking)."""
        from core.access_audit import audit_container

        return audit_container(self.containers, self.settings, row)

    async def doctor(self) -> DoctorReport:
        """The reachability doctor: host and every running container (the board's rows once it has
        listed them, else one list)."""
        from core.doctor import run_doctor

        view = self.container_board.view
        return await run_doctor(self.settings, self.containers, rows=view.rows if view.listed else None)

    def close(self) -> None:
        """Let go of the engine client (each board run stops what it started)."""
        self.containers.reset()


def build_services(settings: Settings, *, now: Callable[[], datetime] | None = None,
                   extra_labels: dict[str, str] | None = None, docker_client: Any = None) -> Services:
    """The real parts for ``settings``. Connects to nothing yet: the engine client is made on first
    use and the link connects when :meth:`McpLink.run` is started."""
    from core.container_board import ContainerBoard
    from core.containers import ContainerManager
    from core.engine_events import EngineEvents
    from core.gateway.calls_board import CallsBoard
    from core.gateway.feed_client import FeedClient
    from core.mcp_link import McpLink
    from core.mcp_stream import McpStream
    from core.qms_board import QmsBoard
    from core.qms_ops import QmsOps
    from core.qms_watch import QmsWatcher

    clock = now or utc_now
    root = settings.project_root
    manager = ContainerManager(settings, client=docker_client, extra_labels=extra_labels)
    stream = McpStream()
    link = McpLink(settings.mcp_url, transport=settings.transport_for(), stream=stream,
                   call_timeout=settings.call_timeout.total_seconds())
    return Services(
        settings=settings,
        containers=manager,
        container_board=ContainerBoard(manager, EngineEvents(manager), image=settings.image),
        qms_board=QmsBoard(root, list(settings.agents), stuck_after=settings.stuck_after, now=clock,
                           watcher_factory=lambda: QmsWatcher(root)),
        calls_board=CallsBoard(lambda: FeedClient.for_settings(settings), now=clock),
        link=link,
        stream=stream,
        ops=QmsOps(link, root),
        now=clock,
    )
