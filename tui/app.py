"""The qms-panel App, built from a services bundle by :func:`make_app`.

The app is the only caller of core services. It runs:

- **feeds**, one async worker per core stream: engine events, the MCP link (and its states), the
  MCP message stream, the QMS file watcher, and the doctor (the one poll: every 30 s, never
  overlapping, the next run scheduled when the last one ended);
- **jobs**, thread workers for blocking calls (container list, QMS scan, access audit) that never
  overlap themselves: asking while one runs queues exactly one more run, so bursts coalesce;
- **operations** the operator asks for: Docker ones in thread workers, MCP ones in async workers.

Thread workers reach the UI only through messages (:mod:`tui.messages`) and
``call_from_thread``. Every failure ends in :meth:`QmsPanel.on_worker_state_changed`, which turns it
into a notification with a readable title; a feed that fails is started again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from contextlib import suppress
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from core.engine_events import EngineBack, EngineLost
from core.errors import EngineUnreachable, QmsPanelError
from core.qms_watch import ActivityEvent, StateChanged
from core.services import Services
from core.settings import Settings
from tui.actions import check_keymap, palette
from tui.messages import AuditFinished, ContainerBusy, ContainersListed, EngineChanged, ImageChecked, SnapshotScanned
from tui.screens.logs import LogsScreen
from tui.screens.main import MainScreen
from tui.widgets.status_bar import EngineState
from tui.widgets.stream import LineMaker

DOCTOR_EVERY = 30.0  # seconds between two doctor runs (from the end of one to the start of the next)
RESTATE_EVERY = 30  # ticks (seconds) between two re-derivations of the document states
FEED_RETRY = 10.0  # seconds before a failed feed is started again
FEED_QUIET = 120.0  # the same failure of the same feed is said again only after this many seconds

VERBS = {"checkin": "Checked in", "checkout": "Checked out", "repair": "Repaired"}


class Job:
    """A blocking job run in a thread worker that never overlaps itself.

    :meth:`request` while it runs queues exactly one more run (dolphie's rule: the next refresh is
    scheduled only when the previous one finished)."""

    def __init__(self, app: App, name: str, fn: Callable[[], None], *,
                 on_start: Callable[[], None] | None = None, on_end: Callable[[], None] | None = None) -> None:
        self.app = app
        self.name = name
        self.fn = fn
        self.on_start = on_start
        self.on_end = on_end
        self.worker: Worker | None = None
        self.again = False

    @property
    def running(self) -> bool:
        return self.worker is not None and not self.worker.is_finished

    def request(self) -> None:
        if self.running:
            self.again = True
            return
        self.again = False
        if self.on_start:
            self.on_start()
        self.worker = self.app.run_worker(self.fn, name=self.name, group=self.name, thread=True,
                                          exit_on_error=False)

    def finished(self, worker: Worker) -> None:
        if worker is not self.worker or not worker.is_finished:
            return
        if self.on_end:
            self.on_end()
        if self.again:
            self.request()


class QmsPanel(App[int]):
    """The operator's panel. Build it with :func:`make_app`."""

    CSS_PATH = "app.tcss"
    TITLE = "qms-panel"

    def __init__(self, settings: Settings, services: Services, *, clock: Callable[[], datetime] | None = None,
                 still: bool = False) -> None:
        super().__init__()
        self.set_keymap(check_keymap(settings.keymap))
        self.settings = settings
        self.services = services
        self.clock = clock or services.now
        self.still = still  # no animation, no blinking cursor (snapshots and screenshots)
        if still:
            self.animation_level = "none"
        self.lines = LineMaker()
        self.rows: list[Any] = []  # ContainerRow, the last known
        self.engine_known = False  # a container list has been read at least once
        self.snapshot: Any | None = None  # QmsSnapshot
        self._scan_lock = threading.Lock()
        self._scan_paths: set[Path] = set()
        self._scan_full = True
        self._doctor_wake: asyncio.Event | None = None
        self._doctor_running = False
        self._doctor_asked = False
        self._ticks = 0
        self._events_seen = 0  # container events applied so far (a list started before one is stale)
        self._feed_errors: dict[str, tuple[str, float]] = {}  # feed -> (last failure, when)
        self.list_job = Job(self, "container list", self._list_containers)
        self.scan_job = Job(self, "QMS scan", self._scan)
        self.audit_job = Job(self, "access audit", self._audit_all, on_start=partial(self._set_auditing, True),
                             on_end=partial(self._set_auditing, False))
        self.engine_job = Job(self, "engine check", self._check_engine)
        self._jobs = (self.list_job, self.scan_job, self.audit_job, self.engine_job)
        self._feeds: dict[str, Callable[[], Worker]] = {}
        self._main: MainScreen | None = None
        self.notices: deque[tuple[str, str, str]] = deque(maxlen=100)  # (severity, title, message), newest last

    # --- screens ---

    def get_default_screen(self) -> Screen:
        return self.main

    @property
    def main(self) -> MainScreen:
        """The main screen (kept here: a worker may report after the screen stack is gone, at exit)."""
        if self._main is None:
            self._main = MainScreen()
        return self._main

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        if isinstance(screen, MainScreen):
            for action in palette("main"):
                yield SystemCommand(action.label, action.help, partial(screen.run_action, action.action))
        yield from super().get_system_commands(screen)

    def on_mount(self) -> None:
        main = self.main
        main.agents = list(self.settings.agents)
        main.project_root = str(self.settings.project_root)
        main.now = self.clock()
        self._doctor_wake = asyncio.Event()
        self._feeds = {
            "engine events": self._follow_engine,
            "MCP link": self._run_link,
            "MCP link state": self._follow_link,
            "MCP stream": self._follow_stream,
            "QMS watcher": self._follow_qms,
            "doctor": self._doctor_loop,
        }
        for start in self._feeds.values():
            start()
        self._first_scan()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        self.main.now = self.clock()
        self._ticks += 1
        if self._ticks % RESTATE_EVERY == 0 and self.snapshot is not None:
            self._show_snapshot(self.services.restate(self.snapshot, self.rows if self.engine_known else None))

    # --- feeds (one async worker per core stream) ---

    @work(name="engine events", group="feed", exit_on_error=False)
    async def _follow_engine(self) -> None:
        """Docker's events: the containers pane follows them; engine loss and return are states."""
        async for ev in self.services.engine_events.stream():
            self.main.stream.push(self.lines.docker(ev))
            if isinstance(ev, EngineBack):
                self._set_engine(EngineState("up", ev.endpoint, version=self.main.engine.version))
                self._set_rows(ev.containers)
                self.engine_job.request()
                self.audit_job.request()
            elif isinstance(ev, EngineLost):
                self._set_engine(EngineState("down", ev.endpoint, ev.reason, ev.attempt, ev.retry_in,
                                             self.main.engine.version))
            else:
                self._events_seen += 1
                self._set_rows(apply_event(self.rows, ev))
                self.list_job.request()
                if ev.action == "start" and ev.managed:
                    self._audit_one(ev.name)

    @work(name="MCP link", group="feed", exit_on_error=False)
    async def _run_link(self) -> None:
        """The link's own task: it owns the session and never raises."""
        await self.services.link.run()

    @work(name="MCP link state", group="feed", exit_on_error=False)
    async def _follow_link(self) -> None:
        last = None
        async for state in self.services.link.states():
            self.main.link = state
            if state.status != last:
                last = state.status
                text = {"connected": f"link connected ({state.transport})", "connecting": "link connecting",
                        "down": f"link down: {state.reason or 'no answer'}"}[state.status]
                level = "error" if state.status == "down" else "info"
                self.main.stream.push(self.lines.note(state.since, "mcp", "panel", text, level))

    @work(name="MCP stream", group="feed", exit_on_error=False)
    async def _follow_stream(self) -> None:
        stream = self.services.stream
        subscription = stream.subscribe()
        backlog = stream.snapshot()
        last = backlog[-1].seq if backlog else 0
        pane = self.main.stream
        pane.extend(self.lines.mcp(ev) for ev in backlog)
        async with subscription:
            async for ev in subscription:
                if ev.seq > last:
                    pane.push(self.lines.mcp(ev))

    @work(name="QMS watcher", group="feed", exit_on_error=False)
    async def _follow_qms(self) -> None:
        async for ev in self.services.watcher.events():
            if isinstance(ev, ActivityEvent):
                self.main.stream.push(self.lines.qms(ev))
            elif isinstance(ev, StateChanged):
                self._request_scan(ev.paths)
            else:  # a ScanWarning: an unreadable audit line or file
                self.main.stream.push(self.lines.note(self.clock(), "qms", "—", f"unreadable {ev.path}: {ev.reason}",
                                                      "warning"))

    @work(name="doctor", group="feed", exit_on_error=False)
    async def _doctor_loop(self) -> None:
        """The reachability doctor every DOCTOR_EVERY seconds, or now when asked; never two at once."""
        assert self._doctor_wake is not None
        while True:
            self._doctor_wake.clear()
            self._doctor_running = True
            try:
                report = await self.services.doctor()
                self._show_doctor(report, announce=self._doctor_asked)
            except QmsPanelError as err:
                self.notify(err.detail, title=err.title, severity="error", markup=False)
            finally:
                self._doctor_running = False
                self._doctor_asked = False
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._doctor_wake.wait(), DOCTOR_EVERY)

    def _first_scan(self) -> None:
        async def when_ready() -> None:
            with suppress(asyncio.TimeoutError):  # a watcher that cannot start never gets ready
                await asyncio.wait_for(self.services.watcher.wait_ready(), 5.0)
            self._request_scan(full=True)

        self.run_worker(when_ready, name="first scan", group="scan", exit_on_error=False)

    # --- jobs (thread workers; they report by message) ---

    def _list_containers(self) -> None:
        seen = self._events_seen
        try:
            rows = self.services.containers.list()
        except EngineUnreachable as err:
            self.post_message(EngineChanged(EngineState("down", self.services.containers.endpoint, err.detail)))
            return
        self.post_message(ContainersListed(rows, seen))

    def _check_engine(self) -> None:
        manager = self.services.containers
        try:
            info = manager.engine()
            present = manager.image_exists(self.settings.image)
        except EngineUnreachable:
            return  # lost again already: the event stream says so
        self.post_message(EngineChanged(EngineState("up", info.endpoint, version=info.version)))
        self.post_message(ImageChecked(self.settings.image, present))

    def _request_scan(self, paths: Iterable[Path] = (), *, full: bool = False) -> None:
        with self._scan_lock:
            self._scan_paths.update(paths)
            self._scan_full = self._scan_full or full
        self.scan_job.request()

    def _scan(self) -> None:
        with self._scan_lock:
            paths, full = self._scan_paths, self._scan_full
            self._scan_paths, self._scan_full = set(), False
        snapshot = self.snapshot
        if snapshot is None or full:
            snapshot = self.services.scan(self.rows if self.engine_known else None)
        elif paths:
            snapshot = self.services.rescan(snapshot, paths)
        else:
            return
        self.post_message(SnapshotScanned(snapshot))

    def _audit_all(self) -> None:
        if not self.main.engine.up:
            return
        report = self.services.audit()
        self.post_message(AuditFinished(report.containers, self.clock(), complete=True))

    def _audit_one(self, name: str) -> None:
        def job() -> None:
            audit = self.services.audit_container(name)
            self.post_message(AuditFinished([audit], self.clock(), complete=False))

        self.run_worker(job, name=f"access audit of {name}", group="audit-one", thread=True, exit_on_error=False)

    def _set_auditing(self, on: bool) -> None:
        self.main.auditing = on

    # --- what the messages change ---

    def on_containers_listed(self, message: ContainersListed) -> None:
        if not self.screen_stack:  # a late report, after the screens closed at exit
            return
        if message.events_seen < self._events_seen:
            return  # older than an event already shown; the list that event asked for follows
        self._set_rows(message.rows)

    def on_engine_changed(self, message: EngineChanged) -> None:
        if not self.screen_stack:  # a late report, after the screens closed at exit
            return
        self._set_engine(message.state)

    def on_image_checked(self, message: ImageChecked) -> None:
        if not self.screen_stack:  # a late report, after the screens closed at exit
            return
        self.main.image_missing = "" if message.present else message.image

    def on_container_busy(self, message: ContainerBusy) -> None:
        if not self.screen_stack:  # a late report, after the screens closed at exit
            return
        busy = dict(self.main.busy)
        if message.doing:
            busy[message.agent] = message.doing
        else:
            busy.pop(message.agent, None)
        self.main.busy = busy

    def on_snapshot_scanned(self, message: SnapshotScanned) -> None:
        if not self.screen_stack:  # a late report, after the screens closed at exit
            return
        snapshot = message.snapshot
        if self.engine_known:
            snapshot = self.services.restate(snapshot, self.rows)
        self._show_snapshot(snapshot)

    def on_audit_finished(self, message: AuditFinished) -> None:
        if not self.screen_stack:  # a late report, after the screens closed at exit
            return
        audits = {} if message.complete else dict(self.main.audits)
        for audit in message.audits:
            audits[audit.agent or audit.container] = audit
        self.main.audits = audits
        self.main.audited_at = message.at

    def _set_rows(self, rows: list[Any]) -> None:
        self.rows = list(rows)
        first = not self.engine_known
        self.engine_known = True
        self.main.containers = self.rows
        if self.snapshot is not None:
            self._show_snapshot(self.services.restate(self.snapshot, self.rows))
        elif first:
            self._request_scan(full=True)

    def _set_engine(self, state: EngineState) -> None:
        self.main.engine = state

    def _show_snapshot(self, snapshot: Any) -> None:
        self.snapshot = snapshot
        main = self.main
        main.checkouts = list(snapshot.checkouts)
        main.scan_warnings = len(snapshot.warnings)
        main.inbox = {agent: len(tasks) for agent, tasks in snapshot.inboxes.items()}
        main.scanned = True

    def _show_doctor(self, report: Any, *, announce: bool) -> None:
        self.main.probes = {probe.where: probe for probe in report.containers}
        if announce:
            bad = [f"{p.where}: {p.diagnosis}" for p in [report.host, *report.containers] if not p.ok]
            if report.engine_error:
                bad.append(f"containers not checked: {report.engine_error}")
            if bad:
                self.notify("\n".join(bad), title="Doctor: MCP not reachable everywhere", severity="warning",
                            timeout=12, markup=False)
            else:
                self.notify(f"host and {len(report.containers)} container(s) reach MCP", title="Doctor: all good")

    # --- operations the operator asks for ---

    def _container_op(self, agent: str, doing: str, done: str, call: Callable[[], Any]) -> None:
        def job() -> None:
            try:
                row = call()
            finally:
                self.post_message(ContainerBusy(agent, None))
            detail = f"{agent}: {row.status_text or row.state}" if row is not None else agent
            if row is not None and done == "Restarted":
                detail += f" (restart count {row.restart_count})"
            self.call_from_thread(self.notify, detail, title=done, markup=False)
            self.call_from_thread(self.list_job.request)

        self.main.busy = {**self.main.busy, agent: doing}
        self.run_worker(job, name=f"{doing} {agent}", group="container-op", thread=True, exit_on_error=False)

    def restart(self, agent: str) -> None:
        self._container_op(agent, "restarting", "Restarted", partial(self.services.containers.restart, agent))

    def launch(self, agent: str) -> None:
        self._container_op(agent, "launching", "Launched", partial(self.services.containers.launch, agent))

    def start(self, agent: str) -> None:
        self._container_op(agent, "starting", "Started", partial(self.services.containers.start, agent))

    def stop(self, agent: str) -> None:
        self._container_op(agent, "stopping", "Stopped", partial(self.services.containers.stop, agent))

    def open_logs(self, agent: str, container: str) -> None:
        screen = LogsScreen(agent, container)

        async def follow() -> None:
            screen.state = "reading the log"
            async for line in self.services.containers.logs(agent, tail=200, follow=True):
                screen.append([line])
            screen.state = "the log ended (the container stopped)"

        def closed(_: Any) -> None:
            self.workers.cancel_group(self, "logs")

        self.push_screen(screen, closed)
        self.run_worker(follow, name=f"logs of {agent}", group="logs", exclusive=True, exit_on_error=False)

    def checkin(self, row: Any) -> None:
        self._qms_op(f"checkin {row.doc_id} for {row.holder}", partial(self.services.ops.checkin, row.doc_id,
                                                                        row.holder))

    def repair(self, row: Any) -> None:
        self._qms_op(f"repair {row.doc_id} for {row.holder}", partial(self.services.ops.repair, row.doc_id,
                                                                       row.holder))

    def checkout(self, doc_id: str, agent: str) -> None:
        self._qms_op(f"checkout {doc_id} for {agent}", partial(self.services.ops.checkout, doc_id, agent))

    def _qms_op(self, name: str, call: Callable[[], Awaitable[Any]]) -> None:
        async def op() -> None:
            self.report(await call())

        self.run_worker(op, name=name, group="qms-op", exit_on_error=False)

    def report(self, outcome: Any) -> None:
        """A notification for an operation's outcome (``core.qms_ops.OpOutcome``)."""
        subject = f"{outcome.doc_id} for {outcome.agent}"
        operation = outcome.operation
        if outcome.status == "ok":
            first = next((line for line in outcome.text.splitlines() if line.strip()), "")
            steps = "\n".join(outcome.actions) if operation == "repair" else first
            self.notify(f"{subject}\n{steps}".strip(), title=VERBS.get(operation, operation.capitalize()),
                        markup=False)
            return
        intact = "\nThe workspace copy is unchanged." if outcome.workspace_intact else ""
        if outcome.status == "identity-locked":
            retry = f" Retry in {outcome.retry_after_s:.0f} s." if outcome.retry_after_s else ""
            self.notify(f"{subject}: {outcome.agent} is active in a container, so the server refuses calls made "
                        f"for it.{retry}{intact}", title=f"{operation.capitalize()} refused: identity in use",
                        severity="warning", timeout=15, markup=False)
        elif outcome.status == "refused":
            self.notify(f"{subject}: {outcome.reason}{intact}", title=f"{operation.capitalize()} refused",
                        severity="warning", timeout=15, markup=False)
        else:
            self.notify(f"{subject}: {outcome.reason}{intact}", title=f"{operation.capitalize()} failed",
                        severity="error", timeout=15, markup=False)

    def doctor_now(self) -> None:
        if self._doctor_running:
            self.notify("A doctor run is in progress; its result shows when it ends.", title="Doctor running")
            self._doctor_asked = True
            return
        self._doctor_asked = True
        if self._doctor_wake is not None:
            self._doctor_wake.set()

    def audit_now(self) -> None:
        if not self.main.engine.up:
            self.notify("The Docker engine is unreachable; the audit needs it.", title="Cannot audit")
            return
        self.audit_job.request()

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Show a notification and keep it in :attr:`notices`."""
        self.notices.append((severity, title, message))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # --- failures, in one place ---

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        for job in self._jobs:
            job.finished(worker)
        if event.state != WorkerState.ERROR:
            return
        err = worker.error
        if isinstance(err, EngineUnreachable) and self.main.engine.status == "down":
            return  # "Docker down" is a state the panes show, not one more error
        if isinstance(err, QmsPanelError):
            title, detail = err.title, err.detail or err.title
        else:
            title, detail = "Unexpected error", f"{type(err).__name__}: {err}"
        if worker.group == "feed":
            again = self._feeds.get(worker.name)
            if again is not None:
                self.set_timer(FEED_RETRY, again)
            said, when = self._feed_errors.get(worker.name, ("", 0.0))
            self._feed_errors[worker.name] = (detail, time.monotonic())
            if said == detail and time.monotonic() - when < FEED_QUIET:
                return  # the same failure again, just now: said already
            detail += f" (retrying in {FEED_RETRY:.0f} s)"
        self.notify(f"{worker.name}: {detail}", title=title, severity="error", timeout=10, markup=False)


def apply_event(rows: list[Any], ev: Any) -> list[Any]:
    """The rows with a container event applied at once (the list that follows confirms it)."""
    changes: dict[str, Any] = {}
    if ev.action in ("start", "restart"):
        changes = {"state": "running", "started_at": ev.time, "exit_code": None}
    elif ev.action == "die":
        changes = {"state": "exited", "exit_code": ev.exit_code}
    elif ev.action == "health_status" and ev.health:
        changes = {"health": ev.health}
    elif ev.action == "destroy":
        return [r for r in rows if r.id != ev.id]
    if not changes:
        return rows
    return [r.model_copy(update=changes) if r.id == ev.id else r for r in rows]


def make_app(settings: Settings, services: Services, *, clock: Callable[[], datetime] | None = None,
             still: bool = False) -> QmsPanel:
    """The app for ``settings`` over ``services``: what the CLI, the tests and the screenshot script run.

    ``clock`` (default: the bundle's) gives every time the panes show; ``still`` turns animation and
    cursor blinking off, for snapshots.
    """
    return QmsPanel(settings, services, clock=clock, still=still)
