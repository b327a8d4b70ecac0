"""The services bundle: every core part the app and the command line are built from, built once.

``build_services(settings)`` makes the real parts; the app (``tui.app.make_app``), the
subcommands, the tests and the screenshot script all take a :class:`Services`. Nothing above
``core`` constructs a Docker client or an MCP session: it asks the bundle.

The bundle's methods are thin: they bind the settings and the clock to the core functions
(scan, audit, doctor), so that a caller never has to know which arguments they need.
Blocking methods (Docker, files) are marked; the app runs them in thread workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import action_log, layout, qms_state
from core.settings import Settings

if TYPE_CHECKING:
    from core.access_audit import AuditReport, ContainerAudit
    from core.containers import ContainerManager, ContainerRow
    from core.engine_events import EngineEvents
    from core.mcp_link import McpLink
    from core.mcp_stream import McpStream
    from core.qms_ops import QmsOps
    from core.qms_watch import QmsWatcher


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """The core parts of one panel: one engine, one MCP link, one project."""

    settings: Settings
    containers: ContainerManager
    engine_events: EngineEvents
    link: McpLink
    stream: McpStream
    ops: QmsOps
    watcher: QmsWatcher
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

    # --- QMS state (blocking: reads files) ---------------------------------------------

    def scan(self, containers: Iterable[ContainerRow] | None = None) -> qms_state.QmsSnapshot:
        return qms_state.scan(self.project_root, agents=list(self.settings.agents), containers=containers,
                              stuck_after=self.settings.stuck_after, now=self.now())

    def rescan(self, snapshot: qms_state.QmsSnapshot, paths: Iterable[Path]) -> qms_state.QmsSnapshot:
        return qms_state.rescan_paths(snapshot, paths, now=self.now())

    def restate(self, snapshot: qms_state.QmsSnapshot,
                containers: Iterable[ContainerRow] | None) -> qms_state.QmsSnapshot:
        """New row states for a new container list or a later time (no I/O)."""
        return qms_state.restate(snapshot, containers, now=self.now())

    # --- checks ------------------------------------------------------------------------

    def audit(self) -> AuditReport:
        """The access audit of every container (blocking: inspect and exec)."""
        from core.access_audit import audit_all

        return audit_all(self.containers, self.settings)

    def audit_container(self, row: ContainerRow | str) -> ContainerAudit:
        """The access audit of one container (blocking)."""
        from core.access_audit import audit_container

        return audit_container(self.containers, self.settings, row)

    async def doctor(self) -> Any:
        """The reachability doctor: host and every running container (``DoctorReport``)."""
        from core.doctor import run_doctor

        return await run_doctor(self.settings, self.containers)

    def close(self) -> None:
        """Stop the watcher and let go of the engine client."""
        self.watcher.stop()
        self.containers.reset()


def build_services(settings: Settings, *, now: Callable[[], datetime] | None = None,
                   extra_labels: dict[str, str] | None = None, docker_client: Any = None) -> Services:
    """The real parts for ``settings``. Connects to nothing yet: the engine client is made on first
    use and the link connects when :meth:`McpLink.run` is started."""
    from core.containers import ContainerManager
    from core.engine_events import EngineEvents
    from core.mcp_link import McpLink
    from core.mcp_stream import McpStream
    from core.qms_ops import QmsOps
    from core.qms_watch import QmsWatcher

    manager = ContainerManager(settings, client=docker_client, extra_labels=extra_labels)
    stream = McpStream()
    link = McpLink(settings.mcp_url, transport=settings.transport_for(), stream=stream,
                   call_timeout=settings.call_timeout.total_seconds())
    return Services(
        settings=settings,
        containers=manager,
        engine_events=EngineEvents(manager),
        link=link,
        stream=stream,
        ops=QmsOps(link, settings.project_root),
        watcher=QmsWatcher(settings.project_root),
        now=now or utc_now,
    )
