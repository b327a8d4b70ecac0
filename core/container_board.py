"""The containers' live state, owned in one place: engine events applied at once, reconciled with lists.

:class:`ContainerBoard` follows :class:`~core.engine_events.EngineEvents` (``await board.run()``)
and hands out typed views: ``board.view`` now, ``async for update in board.updates()`` for every
change. The panel and ``qms-panel status`` (:meth:`ContainerBoard.settle`) read the same board.

**Freshness is decided here, and only here.** A row comes from two sources: engine events,
applied the moment they arrive, and full lists (:meth:`ContainerManager.list` in a thread), which
reconcile what events cannot say (new containers, status texts, start times). Lists are asked for
by events and by :meth:`ContainerBoard.refresh` and coalesced: asked while one runs, exactly one
more runs after it. A list's claim about a container is a fact with a time, and it never
overwrites something newer:

- a list that began before an event about a container was applied is older than that event:
  its claim about that container is dropped (the list the event asked for follows);
- a ``running`` claim whose ``StartedAt`` is not later than the last ``die`` seen for that
  container describes the run that died: Docker 20.10 sends ``die`` before its list, and even an
  inspect made right after, shows the container stopped. A stopped claim about a run that began
  before the last ``die``, while a ``start`` came after it, is stale the same way. A stale claim
  is not shown; one more list follows a little later (:data:`RECHECK`, doubling up to
  :data:`RECHECK_MAX`), until the engine's list agrees with its events;
- a destroyed container is never brought back by a list.

Inspect facts (start time, the engine's restart count) are kept per container while the event
stream is connected: an event about a container drops its entry, a lost stream drops them all.

**Restart count**: the engine's own count (restart policies) plus the larger of the restarts our
manager made and the ``restart`` events seen. Ours are seen as events too while the stream is
connected, so the larger one counts each restart once, and counts ours made while it was down.

Every change of state happens on the event loop that runs :meth:`ContainerBoard.run`; the only
blocking work (list, inspect, engine version, image check) runs in threads.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import aclosing, suppress
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from core.containers import ContainerFacts, ContainerManager, ContainerRow, status_line
from core.engine_events import ContainerEvent, EngineBack, EngineEvent, EngineEvents, EngineLost
from core.errors import EngineError, FeedEnded
from core.fanout import Fanout

RECHECK = 0.1  # seconds before the list that follows a stale claim
RECHECK_MAX = 2.0  # the longest wait between two such lists
_RUNNING = ("running", "paused")


class EngineView(BaseModel):
    """What is known of the Docker engine and the agent image."""

    status: Literal["unknown", "up", "down"] = "unknown"
    endpoint: str = ""
    reason: str = ""
    attempt: int = 0
    retry_in: float | None = None
    version: str = ""
    image: str = ""  # the agent image of the settings
    image_present: bool | None = None  # None: not checked yet

    @property
    def up(self) -> bool:
        return self.status == "up"


class ContainersView(BaseModel):
    """The board's state at one moment."""

    engine: EngineView
    rows: list[ContainerRow]  # this project's containers (and unmanaged ones mounting the project)
    listed: bool = False  # rows come from at least one full list (False: nothing known yet)


class ContainerUpdate(BaseModel):
    """One step for a reader of :meth:`ContainerBoard.updates`."""

    view: ContainersView
    events: list[EngineEvent] = []  # applied since this reader's previous update, oldest first
    dropped: int = 0  # events this reader missed because it fell more than core.fanout.BOUND behind


class ContainerBoard:
    """The live rows of one project's containers; see the module docstring.

    ``events`` must follow ``manager``'s engine; ``image`` is the agent image to check for.
    """

    def __init__(self, manager: ContainerManager, events: EngineEvents, *, image: str) -> None:
        self.manager = manager
        self.events = events
        self._engine = EngineView(endpoint=manager.endpoint, image=image)
        self._rows: dict[str, ContainerRow] = {}  # id -> row (restart_count: the engine's own count)
        self._listed = False
        self._connected = False
        self._facts: dict[str, ContainerFacts] = {}
        self._seq = 0  # container events applied so far
        self._event_seq: dict[str, int] = {}  # id -> sequence number of its last event
        self._last_die: dict[str, ContainerEvent] = {}
        self._last_start: dict[str, datetime] = {}
        self._restarts_seen: dict[str, int] = {}
        self._destroyed: deque[str] = deque(maxlen=1000)
        self._recheck = RECHECK
        self._due: float | None = None  # loop time of the next list
        self._check_engine = False  # the next list also reads the engine version and the image
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fanout: Fanout[EngineEvent] = Fanout()
        self._view: ContainersView | None = None

    # --- reading ---------------------------------------------------------------------------

    @property
    def view(self) -> ContainersView:
        if self._view is None:
            rows = sorted((self._shown(row) for row in self._rows.values()), key=lambda r: (not r.managed, r.name))
            self._view = ContainersView(engine=self._engine, rows=rows, listed=self._listed)
        return self._view

    def _shown(self, row: ContainerRow) -> ContainerRow:
        counted = max(self.manager.restarts_made(row.id), self._restarts_seen.get(row.id, 0))
        return row.model_copy(update={"restart_count": row.restart_count + counted}) if counted else row

    def updates(self) -> AsyncIterator[ContainerUpdate]:
        """The current view, then one update per change; a slow reader gets the latest view (it
        never holds the board up) and its events since its previous update. The reader counts
        from its first step (the current view) on."""
        return self._fanout.follow(lambda events, dropped: ContainerUpdate(view=self.view, events=events,
                                                                           dropped=dropped))

    def _changed(self, events: list[EngineEvent] = ()) -> None:
        self._view = None
        self._fanout.publish(events)

    # --- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the engine for ever: apply its events, reconcile with lists. Raises only on a
        failure (:class:`~core.errors.FeedEnded` if the event stream ends)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        tasks = {asyncio.create_task(self._follow(), name="container board events"),
                 asyncio.create_task(self._reconcile(), name="container board lists")}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failure: raise it
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._connected = False
            self._loop = None
        raise FeedEnded(f"the event stream of the engine at {self.manager.endpoint} ended")

    async def _follow(self) -> None:
        async with aclosing(self.events.stream()) as stream:
            async for ev in stream:
                self._apply(ev)

    async def settle(self, timeout: float) -> ContainersView:
        """Run until the first full list and the engine and image check are in, or the engine is
        found unreachable, or ``timeout`` seconds pass; the view then (for one-shot commands)."""
        async def settled() -> None:
            async with aclosing(self.updates()) as updates:
                async for update in updates:
                    view = update.view
                    if view.engine.status == "down" or (view.listed and view.engine.image_present is not None):
                        return

        runner = asyncio.create_task(self.run())
        waiter = asyncio.create_task(settled())
        try:
            await asyncio.wait({runner, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (runner, waiter):
                task.cancel()
            await asyncio.gather(runner, waiter, return_exceptions=True)
        if runner.done() and not runner.cancelled() and not waiter.done():
            runner.result()  # the board failed before it settled: say why
        return self.view

    def refresh(self) -> None:
        """Ask for a reconciling list (and an engine and image check) soon; coalesced. Call it
        after an operation. Safe from any thread; does nothing while the board is not running."""
        loop = self._loop
        if loop is None:
            return
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self._ask(0.0, engine=True)
        else:
            loop.call_soon_threadsafe(self._ask, 0.0, True)

    def _ask(self, delay: float, engine: bool = False) -> None:
        if self._loop is None or self._wake is None:
            return
        due = self._loop.time() + delay
        self._due = due if self._due is None else min(self._due, due)
        self._check_engine = self._check_engine or engine
        self._wake.set()

    async def _reconcile(self) -> None:
        """The list job: waits to be asked, lists in a thread, never two at once."""
        assert self._loop is not None and self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._due is not None and (wait := self._due - self._loop.time()) > 0:
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                self._wake.clear()
            if self._due is None or not self._connected:
                continue  # not connected: the list of the next connection comes with it
            self._due = None
            check_engine, self._check_engine = self._check_engine, False
            began, facts = self._seq, dict(self._facts)
            try:
                rows = await asyncio.to_thread(self.manager.list, facts=facts)
                if self._connected:
                    self._reconciled(rows, began, facts)
                if check_engine:
                    await self._check()
            except EngineError:
                continue  # lost: the stream says so, and lists again when the engine is back

    async def _check(self) -> None:
        """The engine's version, and whether the agent image is there."""
        info = await asyncio.to_thread(self.manager.engine)
        present = await asyncio.to_thread(self.manager.image_exists, self._engine.image)
        self._engine = self._engine.model_copy(update={"version": info.version, "image_present": present})
        self._changed()

    # --- applying ---------------------------------------------------------------------------

    def _apply(self, ev: EngineEvent) -> None:
        if isinstance(ev, EngineBack):
            self._connected = True
            self._facts.clear()
            self._engine = self._engine.model_copy(update={
                "status": "up", "endpoint": ev.endpoint, "reason": "", "attempt": 0, "retry_in": None})
            # Taken after subscribing: every event that follows is newer than it.
            self._reconciled(ev.containers, self._seq, {})
            self._ask(0.0, engine=True)  # fills the facts, reads the version and the image
        elif isinstance(ev, EngineLost):
            self._connected = False
            self._facts.clear()
            self._engine = self._engine.model_copy(update={
                "status": "down", "endpoint": ev.endpoint, "reason": ev.reason, "attempt": ev.attempt,
                "retry_in": ev.retry_in})
        else:
            self._container_event(ev)
        self._changed([ev])

    def _container_event(self, ev: ContainerEvent) -> None:
        cid = ev.id
        self._seq += 1
        self._event_seq[cid] = self._seq
        self._facts.pop(cid, None)
        row = self._rows.get(cid)
        if ev.action == "destroy":
            self._rows.pop(cid, None)
            self._destroyed.append(cid)
            for table in (self._event_seq, self._last_die, self._last_start, self._restarts_seen):
                table.pop(cid, None)
            return
        change: dict = {}
        if ev.action == "start":
            self._last_start[cid] = ev.time
            change = {"state": "running", "started_at": ev.time, "exit_code": None}
        elif ev.action == "restart":  # after its own die and start: it only counts
            self._restarts_seen[cid] = self._restarts_seen.get(cid, 0) + 1
        elif ev.action == "die":
            self._last_die[cid] = ev
            change = {"state": "exited", "exit_code": ev.exit_code}
        elif ev.action == "health_status" and ev.health:
            change = {"health": ev.health}
        if row is not None and change:
            row = row.model_copy(update=change)
            self._rows[cid] = row.model_copy(update={"status_text": status_line(row.state, row.exit_code,
                                                                                  row.health)})
        self._ask(0.0)

    def _reconciled(self, rows: list[ContainerRow], began: int, facts: dict[str, ContainerFacts]) -> None:
        """Take a full list begun when ``began`` events had been applied; see the module docstring."""
        made = {r.id: self.manager.restarts_made(r.id) for r in rows}
        listed: dict[str, ContainerRow] = {}
        stale = False
        for row in rows:
            cid = row.id
            if cid in self._destroyed:
                continue
            current = self._rows.get(cid)
            if current is not None and self._event_seq.get(cid, 0) > began:
                listed[cid] = current  # an event came after this list began: what it said stands
            elif self._stale(row):
                stale = True
                listed[cid] = current if current is not None else self._as_events_say(row)
            else:
                listed[cid] = row.model_copy(update={"restart_count": row.restart_count - made[cid]})
                if cid in facts:
                    self._facts[cid] = facts[cid]
        for cid, current in self._rows.items():
            if cid not in listed and self._event_seq.get(cid, 0) > began:
                listed[cid] = current  # created after this list began
        self._rows = listed
        self._listed = True
        if stale:
            self._ask(self._recheck)
            self._recheck = min(RECHECK_MAX, self._recheck * 2)
        else:
            self._recheck = RECHECK
        self._changed()

    def _times(self, cid: str) -> tuple[datetime | None, datetime | None]:
        """When the last ``die`` and the last ``start`` seen of a container happened."""
        die = self._last_die.get(cid)
        return (die.time if die is not None else None), self._last_start.get(cid)

    def _stale(self, row: ContainerRow) -> bool:
        """True if ``row`` (a list's claim) describes a run older than the events seen."""
        died, started = self._times(row.id)
        if row.state in _RUNNING:
            return died is not None and (row.started_at is None or row.started_at <= died)
        if started is None or (died is not None and died >= started):
            return False  # the events say it is not running either
        return row.started_at is None or (died is not None and row.started_at <= died)

    def _as_events_say(self, row: ContainerRow) -> ContainerRow:
        """A stale claim about a container with no row yet, corrected by the events seen."""
        died, started = self._times(row.id)
        if started is not None and (died is None or started > died):
            update = {"state": "running", "started_at": started, "exit_code": None}
        else:
            update = {"state": "exited", "exit_code": self._last_die[row.id].exit_code}
        fixed = row.model_copy(update=update)
        return fixed.model_copy(update={"status_text": status_line(fixed.state, fixed.exit_code, fixed.health),
                                        "restart_count": row.restart_count - self.manager.restarts_made(row.id)})
