"""The qms-panel App, built from a services bundle by :func:`make_app`: wiring, nothing more.

The core owns the live state (``core.container_board``, ``core.qms_board``); the app subscribes to
their updates through the feed runner (:mod:`tui.feeds`), sets the main screen's state from the
views they hand out, and pushes their events into the live stream. Operations the operator asks for
run and are worded in :mod:`tui.operations`; the audit and the doctor in :mod:`tui.checks`. Every
notification passes through :meth:`QmsPanel.notify`, which makes its text safe and never reads it
as markup.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from datetime import datetime
from functools import partial
from typing import Any

from textual.app import App, SuspendNotSupported, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from core.container_board import ContainerUpdate
from core.engine_events import ContainerEvent, EngineBack
from core.gateway.calls_board import CallsUpdate, GatewayView
from core.image import attach_argv
from core.link_state import LinkState
from core.mcp_stream import StreamEvent
from core.notice import Notice
from core.qms_board import QmsUpdate
from core.qms_watch import ActivityEvent
from core.safe_text import safe_text
from core.services import utc_now
from core.settings import Settings
from tui.actions import check_keymap, palette
from tui.checks import Checks
from tui.feeds import Feed, FeedHealth, FeedRunner, failure_of
from tui.operations import Operations
from tui.screens.logs import LogsScreen
from tui.screens.main import MainScreen
from tui.seams import PanelServices
from tui.startup import NotYet, ReadyMarks, Starting, Startup
from tui.container_cells import waiting
from tui.widgets.stream import LineMaker, Source

RETIME_EVERY = 30  # ticks (seconds) between two re-derivations of the document states
NOTICE_TIMEOUT: dict[SeverityLevel, float | None] = {"information": None, "warning": 12, "error": 15}
LINK_TEXT = {"connected": "link connected ({transport})", "connecting": "link connecting",
             "down": "link down: {reason}"}


class QmsPanel(App[int]):
    """The operator's panel. Build it with :func:`make_app`."""

    CSS_PATH = "app.tcss"
    TITLE = "qms-panel"
    # ctrl+c quits, as in k9s or lazydocker (Textual's own ctrl+c only says to press ctrl+q)
    BINDINGS = [Binding("ctrl+c", "quit", "Quit", show=False, priority=True)]

    def __init__(self, settings: Settings, services: PanelServices | None, *,
                 clock: Callable[[], datetime] | None = None, still: bool = False,
                 startup: Startup | None = None) -> None:
        super().__init__()
        self.set_keymap(check_keymap(settings.keymap))
        self.settings = settings
        self.startup = startup  # None: the services are given (tests, scenes), the feeds start on mount
        self.clock = clock or (services.now if services is not None else utc_now)
        self.marks = ReadyMarks.from_env()
        self.still = still  # no animation, no blinking cursor (snapshots and screenshots)
        if still:
            self.animation_level = "none"
        self.lines = LineMaker()
        self.notices: deque[tuple[str, str, str]] = deque(maxlen=100)  # (severity, title, message), newest last
        self.main = MainScreen()  # kept here: a worker may report after the screen stack is gone, at exit
        self.feeds = FeedRunner(self._feed_health, self.show)
        self.live = services is not None
        if services is not None:
            self._use(services)
        else:  # until the startup thread hands the bundle over (attach_services)
            self.services = Starting(settings, self.clock)  # type: ignore[assignment] - what is known without I/O
            self.operations = self.checks = NotYet(self.show)  # type: ignore[assignment]
        self._ticks = 0
        self._waits: dict[str, object] = {}  # agent -> the wait for permission already announced

    def get_default_screen(self) -> Screen:
        return self.main

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        if isinstance(screen, MainScreen):
            for action in palette("main"):
                yield SystemCommand(action.label, action.help, partial(screen.run_action, action.action))
        yield from super().get_system_commands(screen)

    def _use(self, services: PanelServices) -> None:
        self.services = services
        self.operations = Operations(services, spawn=self._spawn, show=self.show, busy=self._busy)
        self.checks = Checks(services, self.main, spawn=self._spawn, show=self.show, clock=self.clock)

    def on_mount(self) -> None:
        main = self.main
        main.agents = list(self.settings.agents)
        main.project_root = str(self.settings.project_root)
        main.now = self.clock()
        self.set_interval(1.0, self._tick)
        self.call_after_refresh(self._first_frame)
        if self.live:
            self._start_feeds()

    def _first_frame(self) -> None:
        if self.marks:
            self.marks.mark("first-frame")
        if self.startup is not None:
            self.startup.begin(self)

    # --- the startup thread's reports (on the app's loop) ---

    def attach_services(self, services: PanelServices) -> None:
        """The bundle has been built: the panes fill in as its feeds report."""
        if self.live:
            return
        self._use(services)
        self.live = True
        self._start_feeds()
        if self.startup is not None:
            self.startup.went_live()

    def say(self, text: str) -> None:
        """A progress line of the startup (``prepare`` / ``after``) in the stream."""
        self.main.stream.push(self.lines.note(self.clock(), "ops", "panel", text))

    def startup_failed(self, notice: Notice) -> None:
        self.main.stream.push(self.lines.note(self.clock(), "ops", "panel", f"{notice.title}: {notice.message}",
                                              "error" if notice.severity == "error" else "warning"))
        self.show(notice)

    def _check_complete(self) -> None:
        """``QMS_PANEL_READY_FILE``: the first frame with the containers listed and the QMS scanned."""
        if (self.marks and "complete" not in self.marks.done and self.main.scanned
                and self.services.container_board.view.listed):
            self.call_after_refresh(self.marks.mark, "complete")

    def _start_feeds(self) -> None:
        services = self.services
        for feed in (
            Feed.task("Docker engine", services.container_board.run),
            Feed("container updates", services.container_board.updates, self._containers),
            Feed.task("QMS watcher", services.qms_board.run),
            Feed("QMS updates", services.qms_board.updates, self._qms),
            Feed.task("MCP link", services.link.run),
            Feed("MCP link state", services.link.states, self._link),
            Feed("MCP stream", self._mcp_events, lambda ev: self.main.stream.push(self.lines.mcp(ev))),
            Feed("gateway feed", services.calls_board.follow, self._calls),
            Feed("action log", services.actions.follow,
                 lambda rec: self.main.stream.push(self.lines.action(rec, self.clock()))),
            Feed.task("doctor", self.checks.doctor_loop),
        ):
            self.run_worker(self.feeds.keep(feed), name=feed.name, group="feed", exit_on_error=False)

    def _tick(self) -> None:
        self.main.now = self.clock()
        if not self.live:
            return
        self._ticks += 1
        if self._ticks % RETIME_EVERY == 0:
            self.services.qms_board.retime()
        if self._ticks % 5 == 0:  # calls per minute and ages move with the clock
            self._gateway(self.services.calls_board.view(self.clock()))

    # --- what the feeds deliver ---

    def _containers(self, update: ContainerUpdate) -> None:
        view, main = update.view, self.main
        main.engine = view.engine
        main.containers = view.rows
        self.services.qms_board.set_containers(view.rows if view.listed else None)
        for ev in update.events:
            main.stream.push(self.lines.docker(ev))
            if isinstance(ev, EngineBack):
                self.checks.audit.request()
            elif isinstance(ev, ContainerEvent) and ev.action == "start" and ev.managed:
                self.checks.audit_one(ev.name)
        self._dropped("docker", "engine event(s)", update.dropped)
        self._check_complete()

    def _qms(self, update: QmsUpdate) -> None:
        main, snapshot = self.main, update.view.snapshot
        if snapshot is not None:
            main.checkouts = list(snapshot.checkouts)
            main.scan_warnings = len(snapshot.warnings)
            main.inbox = {agent: len(tasks) for agent, tasks in snapshot.inboxes.items()}
            main.scanned = True
        for item in update.activity:
            if isinstance(item, ActivityEvent):
                main.stream.push(self.lines.qms(item))
            else:
                main.stream.push(self.lines.note(self.clock(), "qms", "—", f"unreadable {item.path}: {item.reason}",
                                                 "warning"))
        self._dropped("qms", "audit line(s) and warning(s)", update.dropped)
        self._check_complete()

    def _calls(self, update: CallsUpdate) -> None:
        self._gateway(update.view)
        line = self.lines.gateway(update.event)
        if line is not None:
            self.main.stream.push(line)

    def _gateway(self, view: GatewayView) -> None:
        """Show the gateway's view; an agent that starts to wait for permission is said once a wait."""
        self.main.gateway = view
        for agent, activity in view.activity.agents.items():
            if not waiting(activity, self.main.container_row(agent)):
                self._waits.pop(agent, None)
                continue
            wait = (activity.since, activity.waiting_tool, activity.waiting_message)
            if self._waits.get(agent) != wait:
                self._waits[agent] = wait
                what = activity.waiting_tool or activity.waiting_message or "a tool"
                self.show(Notice(title="Permission asked", message=f"{agent} waits for permission: {what} "
                                 "(t opens its terminal)", severity="warning"))

    def _dropped(self, source: Source, what: str, count: int) -> None:
        if count:
            self.main.stream.push(self.lines.note(self.clock(), source, "panel", f"{count} {what} not shown: the "
                                                  "panel fell behind", "warning"))

    def _link(self, state: LinkState) -> None:
        last, self.main.link = self.main.link, state
        if last is None or last.status != state.status:
            text = LINK_TEXT[state.status].format(transport=state.transport, reason=state.reason or "no answer")
            level = "error" if state.status == "down" else "info"
            self.main.stream.push(self.lines.note(state.since, "mcp", "panel", text, level))

    async def _mcp_events(self) -> AsyncIterator[StreamEvent]:
        """The MCP stream's backlog, then every new message (none twice)."""
        stream = self.services.stream
        subscription = stream.subscribe()
        backlog = stream.snapshot()
        last = backlog[-1].seq if backlog else 0
        for ev in backlog:
            yield ev
        async with subscription:
            async for ev in subscription:
                if ev.seq > last:
                    yield ev

    def _feed_health(self, health: dict[str, FeedHealth]) -> None:
        self.main.feeds_down = tuple(name for name, h in health.items() if not h.up)

    # --- operations and logs ---

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self.run_worker(work, name=name, group="work", exit_on_error=False)

    def _busy(self, agent: str, doing: str | None) -> None:
        busy = {k: v for k, v in self.main.busy.items() if k != agent}
        self.main.busy = busy | ({agent: doing} if doing else {})

    def open_logs(self, agent: str, container: str) -> None:
        if not self.live:
            self.operations.logs()  # says the panel is still starting
            return
        screen = LogsScreen(agent, container)

        async def follow() -> None:
            screen.state = "reading the log"
            async for line in self.services.containers.logs(agent, tail=200, follow=True):
                screen.append([line])
            screen.state = "the log ended (the container stopped)"

        self.push_screen(screen, lambda _: self.workers.cancel_group(self, "logs"))
        self.run_worker(follow, name=f"logs of {agent}", group="logs", exclusive=True, exit_on_error=False)

    def open_terminal(self, agent: str, container: str) -> None:
        """Suspend the panel and run what ``qms-panel attach`` runs, on this terminal; back on detach.

        The docker CLI owns the terminal meanwhile (the panel's loop waits: it draws nothing then)."""
        if not self.live:
            self.operations.attach()  # says the panel is still starting
            return
        docker = shutil.which("docker")
        if docker is None:
            self.show(Notice(title="Cannot attach", message="the docker CLI is not on PATH (t runs `docker exec -it`)",
                             severity="warning"))
            return
        try:
            with self.suspend():
                code = subprocess.call(attach_argv(container, docker))
        except SuspendNotSupported:
            self.show(Notice(title="Cannot attach here", message=f"this panel has no terminal to hand over; run "
                             f"`qms-panel attach {agent}` in a terminal", severity="warning"))
            return
        except OSError as exc:
            self.show(Notice(title="Cannot attach", message=f"{agent}: {exc}", severity="error"))
            return
        if code:
            self.show(Notice(title="Attach ended", message=f"docker exec into {container} exited with {code}",
                             severity="warning"))

    # --- notifications: the one way text reaches the operator's toasts ---

    def show(self, notice: Notice) -> None:
        self.notify(notice.message, title=notice.title, severity=notice.severity,
                    timeout=NOTICE_TIMEOUT[notice.severity])

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Show a notification (made safe, never read as markup) and keep it in :attr:`notices`."""
        message, title = safe_text(message), safe_text(title)
        self.notices.append((severity, title, message))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that failed outside the operations and feeds (which report their own): one notice."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            title, reason = failure_of(event.worker.error)
            self.show(Notice(title=title, message=f"{event.worker.name}: {reason}", severity="error"))


def make_app(settings: Settings, services: PanelServices | None = None, *,
             clock: Callable[[], datetime] | None = None, still: bool = False,
             startup: Startup | None = None) -> QmsPanel:
    """The app for ``settings`` over ``services``: what the CLI, the tests and the screenshot script run.

    ``clock`` (default: the bundle's) gives every time the panes show; ``still`` turns animation and
    cursor blinking off, for snapshots. Without ``services``, ``startup`` builds them after the first
    frame (:mod:`tui.startup`; ``qms-panel`` starts so).
    """
    if (services is None) == (startup is None):
        raise TypeError("make_app takes either services or a startup")
    return QmsPanel(settings, services, clock=clock, still=still, startup=startup)
