"""The panel's checks: the access audit (coalesced, on demand and when containers start) and the
reachability doctor (the one poll: every DOCTOR_EVERY seconds, never overlapping itself).

Both are blocking or slow core calls; they run in async workers the app starts (the audit's
Docker calls in a thread), write their results into the screen's state (:class:`CheckResults`)
and word what they found once, as :class:`core.notice.Notice`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import suppress
from datetime import datetime
from typing import Any, Protocol

from core.access_audit import ContainerAudit
from core.doctor import DoctorReport, ProbeResult
from core.errors import EngineUnreachable
from core.notice import Notice
from tui.feeds import failure_of
from tui.seams import PanelServices

DOCTOR_EVERY = 30.0  # seconds between two doctor runs (from the end of one to the start of the next)


class CheckResults(Protocol):
    """Where the checks put what they found (the main screen's state)."""

    audits: dict[str, ContainerAudit]  # agent (or container name) -> its audit
    audited_at: datetime | None
    auditing: bool
    probes: dict[str, ProbeResult]  # agent -> the doctor's probe from inside its container


def doctor_notice(report: DoctorReport) -> Notice:
    """The doctor's finding, for a run the operator asked for."""
    bad = [f"{p.where}: {p.diagnosis}" for p in [report.host, *report.containers] if not p.ok]
    if report.engine_error:
        bad.append(f"containers not checked: {report.engine_error}")
    if bad:
        return Notice(title="Doctor: MCP not reachable everywhere", message="\n".join(bad), severity="warning")
    return Notice(title="Doctor: all good", message=f"host and {len(report.containers)} container(s) reach MCP")


class Coalesced:
    """A call that never overlaps itself: asking while it runs queues exactly one more run
    (dolphie's rule: the next refresh is scheduled only when the previous one finished)."""

    def __init__(self, call: Callable[[], Coroutine[Any, Any, None]],
                 spawn: Callable[[Coroutine[Any, Any, None], str], None], name: str,
                 running: Callable[[bool], None] = lambda on: None) -> None:
        self.call, self.spawn, self.name, self.on_running = call, spawn, name, running
        self.running = False
        self.again = False

    def request(self) -> None:
        if self.running:
            self.again = True
            return
        self.running = True
        self.on_running(True)
        self.spawn(self._runs(), self.name)

    async def _runs(self) -> None:
        try:
            self.again = True
            while self.again:
                self.again = False
                await self.call()
        finally:
            self.running = False
            self.on_running(False)


class Checks:
    """The audit and the doctor of one panel, over ``services``, reporting into ``results``."""

    def __init__(self, services: PanelServices, results: CheckResults, *,
                 spawn: Callable[[Coroutine[Any, Any, None], str], None], show: Callable[[Notice], None],
                 clock: Callable[[], datetime]) -> None:
        self.services, self.results, self.spawn, self.show, self.clock = services, results, spawn, show, clock
        self.audit = Coalesced(self._audit_all, spawn, "access audit", self._set_auditing)
        self._wake = asyncio.Event()
        self._doctoring = False
        self._asked = False

    # --- the access audit ---

    def _engine_up(self) -> bool:
        return self.services.container_board.view.engine.up

    def _set_auditing(self, on: bool) -> None:
        self.results.auditing = on

    async def _audit_all(self) -> None:
        if not self._engine_up():
            return
        try:
            report = await asyncio.to_thread(self.services.audit)
        except Exception as err:  # noqa: BLE001 - a failed audit is a notice, the panel goes on
            self._failed("access audit", err)
            return
        self.results.audits = {a.agent or a.container: a for a in report.containers}
        self.results.audited_at = self.clock()

    def audit_one(self, name: str) -> None:
        """Audit the container ``name`` (it just started) and merge it into the audits."""
        async def one() -> None:
            try:
                audit = await asyncio.to_thread(self.services.audit_container, name)
            except Exception as err:  # noqa: BLE001 - as above
                self._failed(f"access audit of {name}", err)
                return
            self.results.audits = {**self.results.audits, audit.agent or audit.container: audit}
            self.results.audited_at = self.clock()

        self.spawn(one(), f"access audit of {name}")

    def audit_now(self) -> None:
        if not self._engine_up():
            self.show(Notice(title="Cannot audit", message="The Docker engine is unreachable; the audit needs it."))
            return
        view = self.services.container_board.view
        if view.listed and not any(row.state == "running" for row in view.rows):
            stopped = f" ({len(view.rows)} stopped)" if view.rows else ""
            self.show(Notice(title="Nothing to audit", message=f"No container of this project is running{stopped}; "
                             "the audit reads the mounts of running containers and probes them. Launch one first."))
            return
        self.audit.request()

    def _failed(self, what: str, err: Exception) -> None:
        if isinstance(err, EngineUnreachable) and not self._engine_up():
            return  # "Docker down" is a state the panes show, not one more error
        title, reason = failure_of(err)
        self.show(Notice(title=title, message=f"{what}: {reason}", severity="error"))

    # --- the doctor ---

    async def doctor_loop(self) -> None:
        """The reachability doctor every DOCTOR_EVERY seconds, or now when asked; never two at once."""
        while True:
            self._wake.clear()
            self._doctoring = True
            try:
                report = await self.services.doctor()
                self.results.probes = {probe.where: probe for probe in report.containers}
                if self._asked:
                    self.show(doctor_notice(report))
            except Exception as err:  # noqa: BLE001 - the poll goes on after a failed run
                self._failed("doctor", err)
            finally:
                self._doctoring = False
                self._asked = False
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), DOCTOR_EVERY)

    def doctor_now(self) -> None:
        self._asked = True
        if self._doctoring:
            self.show(Notice(title="Doctor running", message="A doctor run is in progress; its result shows when "
                                                             "it ends."))
            return
        self._wake.set()
