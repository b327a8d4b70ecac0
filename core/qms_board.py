"""The QMS's live state, owned in one place: the scanner's snapshot, kept true to the files.

:class:`QmsBoard` holds the :class:`~core.qms_state.QmsSnapshot` of one project and hands out
typed views: ``board.view`` now, ``async for update in board.updates()`` for every change (with
the audit lines and watcher warnings that came with it). The panel and ``qms-panel status``
(:meth:`QmsBoard.settle`) read the same board.

:meth:`QmsBoard.run` is one run of a fresh watcher (``watcher_factory()``): once its watches are
up it scans in full, then applies each StateChanged by re-reading only the paths it names
(:func:`~core.qms_state.rescan_paths`), and in full again when a watched folder itself came or
went. Changes that arrive during a scan are gathered and applied in one go after it. All file
work runs in a thread. A run ends only by raising: a watcher that fails raises its error, one that
ends raises :class:`~core.errors.FeedEnded`; the caller starts a new run (with a new watcher).

The row states (orphaned, stale, ...) depend on the running containers (:meth:`set_containers`)
and on the time: :meth:`retime` and :meth:`view_at` derive them again without any I/O.
Use on one event loop: the one that runs :meth:`run`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel

from core import qms_state
from core.containers import ContainerRow
from core.errors import FeedEnded
from core.fanout import Fanout
from core.qms_state import QmsSnapshot, ScanWarning
from core.qms_watch import ActivityEvent, QmsWatcher, StateChanged

Activity = ActivityEvent | ScanWarning


class QmsView(BaseModel):
    """The board's state, with the row states derived for ``at``."""

    snapshot: QmsSnapshot | None  # None: not scanned yet
    at: datetime  # the time the derived states are computed for
    warnings: int = 0  # the scan's warnings (unreadable files)


class QmsUpdate(BaseModel):
    """One step for a reader of :meth:`QmsBoard.updates`."""

    view: QmsView
    activity: list[Activity] = []  # audit lines and watcher warnings since the previous update
    dropped: int = 0  # activity this reader missed because it fell more than core.fanout.BOUND behind


class QmsBoard:
    """The live QMS state of one project; see the module docstring."""

    def __init__(self, project_root: Path, agents: list[str], *, stuck_after: timedelta,
                 now: Callable[[], datetime], watcher_factory: Callable[[], QmsWatcher]) -> None:
        self.project_root = Path(project_root)
        self.agents = list(agents)
        self.stuck_after = stuck_after
        self.now = now
        self.watcher_factory = watcher_factory
        self._snapshot: QmsSnapshot | None = None
        self._containers: list[ContainerRow] | None = None
        self._at = now()
        self._paths: set[Path] = set()  # named by changes not applied yet
        self._full = True  # a full scan is due
        self._fanout: Fanout[Activity] = Fanout()
        self._view: QmsView | None = None

    # --- reading ---------------------------------------------------------------------------

    @property
    def view(self) -> QmsView:
        if self._view is None:
            snapshot = self._snapshot
            self._view = QmsView(snapshot=snapshot, at=self._at, warnings=len(snapshot.warnings) if snapshot else 0)
        return self._view

    def view_at(self, at: datetime) -> QmsView:
        """The view with the row states derived for ``at`` (no I/O; the board is not changed)."""
        snapshot = self._snapshot
        if snapshot is None:
            return QmsView(snapshot=None, at=at)
        return QmsView(snapshot=qms_state.restate(snapshot, self._containers, now=at), at=at,
                       warnings=len(snapshot.warnings))

    def updates(self) -> AsyncIterator[QmsUpdate]:
        """The current view, then one update per change; a slow reader gets the latest view (it
        never holds the board up) and the activity since its previous update. The reader counts
        from its first step (the current view) on."""
        return self._fanout.follow(lambda activity, dropped: QmsUpdate(view=self.view, activity=activity,
                                                                       dropped=dropped))

    def _changed(self, activity: list[Activity] = ()) -> None:
        self._view = None
        self._fanout.publish(activity)

    # --- what the row states depend on -----------------------------------------------------

    def set_containers(self, rows: list[ContainerRow] | None) -> None:
        """The containers now (None: unknown, so nothing is orphaned); the states follow at once."""
        self._containers = None if rows is None else list(rows)
        self.retime()

    def retime(self) -> None:
        """Derive the row states again for ``now()`` (no I/O)."""
        self._at = self.now()
        if self._snapshot is not None:
            self._snapshot = qms_state.restate(self._snapshot, self._containers, now=self._at)
        self._changed()

    # --- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """One run of a fresh watcher; ends only by raising (see the module docstring)."""
        watcher = self.watcher_factory()
        self._full = True  # what happened before this watcher's watches were up is unknown
        changed = asyncio.Event()
        follower = asyncio.create_task(self._follow(watcher, changed), name="QMS board watcher")
        scanner: asyncio.Task | None = None
        try:
            ready = asyncio.create_task(watcher.wait_ready())
            await asyncio.wait({follower, ready}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if not follower.done():
                scanner = asyncio.create_task(self._scan_loop(changed), name="QMS board scans")
                await asyncio.wait({follower, scanner}, return_when=asyncio.FIRST_COMPLETED)
            for task in (follower, scanner):
                if task is not None and task.done():
                    task.result()  # a failure: raise it
        finally:
            watcher.stop()
            for task in (follower, scanner):
                if task is not None:
                    task.cancel()
            await asyncio.gather(follower, *([scanner] if scanner else []), return_exceptions=True)
        raise FeedEnded(f"the file watcher of {self.project_root} ended")

    async def settle(self, timeout: float) -> QmsView:
        """One full scan (for one-shot commands), within ``timeout`` seconds; the view then."""
        await asyncio.wait_for(self._scan(), timeout)
        return self.view

    async def _follow(self, watcher: QmsWatcher, changed: asyncio.Event) -> None:
        roots = set(watcher.roots())
        async with aclosing(watcher.events()) as events:
            async for ev in events:
                if isinstance(ev, StateChanged):
                    if roots.intersection(ev.paths):
                        self._full = True  # a watched folder itself came or went
                    self._paths.update(ev.paths)
                    changed.set()
                else:
                    self._changed([ev])

    async def _scan_loop(self, changed: asyncio.Event) -> None:
        """Apply what changed: in full first, then the paths named; never two scans at once."""
        while True:
            await self._scan()
            await changed.wait()
            changed.clear()

    async def _scan(self) -> None:
        full, paths = self._full or self._snapshot is None, self._paths
        self._full, self._paths = False, set()
        at = self.now()
        if full:
            snapshot = await asyncio.to_thread(
                qms_state.scan, self.project_root, agents=self.agents, containers=self._containers,
                stuck_after=self.stuck_after, now=at)
        elif paths:
            snapshot = await asyncio.to_thread(qms_state.rescan_paths, self._snapshot, paths, now=at)
        else:
            return
        # The containers may have changed during the scan: derive the states for the latest.
        self._snapshot = qms_state.restate(snapshot, self._containers, now=at)
        self._at = at
        self._changed()
