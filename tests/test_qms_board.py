"""The QMS board over real files and the real dev server: a fresh watcher per run, and nothing missed."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from core.errors import FeedEnded
from core.qms_board import QmsBoard, QmsView
from core.qms_state import RowState
from core.qms_watch import ActivityEvent, QmsWatcher
from test_qms_state import NOW, STUCK, Container, Project, call_tool, ev

GUARD = 30  # seconds: a guard against hanging, never a timing assertion


def watcher_of(root: Path) -> Callable[[], QmsWatcher]:
    return lambda: QmsWatcher(root, debounce_ms=200, step_ms=30)


class BrokenWatcher(QmsWatcher):
    """A watcher that cannot set its watches up, as when inotify runs out of watches."""

    async def events(self):
        raise OSError(28, "OS file watch limit reached")
        yield  # an async generator, as the real one


class Feed:
    """What the panel's feed runner does with a board: a new run after each failure."""

    def __init__(self, board: QmsBoard) -> None:
        self.board = board
        self.failures: list[BaseException] = []

    async def __aenter__(self) -> Feed:
        self.task = asyncio.create_task(self._runs())
        return self

    async def __aexit__(self, *exc) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def _runs(self) -> None:
        while True:
            try:
                await self.board.run()
            except Exception as exc:  # noqa: BLE001 - the test looks at them
                self.failures.append(exc)


class Updates:
    """One reader of a board's updates, kept open across steps (so no activity falls between)."""

    def __init__(self, board: QmsBoard) -> None:
        self.board = board
        self.activity: list = []

    async def __aenter__(self) -> Updates:
        self.closing = aclosing(self.board.updates())
        self.stream = await self.closing.__aenter__()
        await anext(self.stream)  # the current view: from here on, nothing is missed
        return self

    async def __aexit__(self, *exc) -> None:
        await self.closing.__aexit__(*exc)

    async def until(self, what: Callable[[QmsView], bool]) -> QmsView:
        view = None
        try:
            with anyio.fail_after(GUARD):
                async for update in self.stream:
                    self.activity.extend(update.activity)
                    view = update.view
                    if what(view):
                        return view
        except TimeoutError:
            raise AssertionError(f"not seen; the last view: {view}; activity {self.activity}") from None
        raise AssertionError("the updates ended")


async def until(board: QmsBoard, what: Callable[[QmsView], bool]) -> QmsView:
    async with Updates(board) as updates:
        return await updates.until(what)


def holder(view: QmsView, doc_id: str) -> str | None:
    row = view.snapshot.row(doc_id) if view.snapshot else None
    return row.holder if row and row.workspace_file else None


async def test_board_follows_a_checkout_after_its_watcher_failed_and_users_appeared(devserver, sample_project):
    root = sample_project.resolve()
    shutil.rmtree(root / ".claude/users")  # made by the first checkout, after the board started
    made: list[QmsWatcher] = []

    def factory() -> QmsWatcher:
        made.append((BrokenWatcher if not made else QmsWatcher)(root, debounce_ms=200, step_ms=30))
        return made[-1]

    board = QmsBoard(root, ["claude"], stuck_after=STUCK, now=lambda: datetime.now(UTC), watcher_factory=factory)
    async with Feed(board) as feed:
        await until(board, lambda view: view.snapshot is not None and len(made) >= 2)
        assert [type(f) for f in feed.failures] == [OSError]
        assert holder(board.view, "CR-002") is None and not (root / ".claude/users").exists()

        async with Updates(board) as updates:
            # An agent's folder appears with a file in it, and nothing else changes.
            draft = root / ".claude/users/claude/workspace/CR-009.md"
            draft.parent.mkdir(parents=True)
            draft.write_text("# notes\n")
            await updates.until(lambda view: holder(view, "CR-009") == "claude")
            assert board.view.snapshot.row("CR-009").state is RowState.UNMANAGED

            assert "Checked out: CR-002" in await call_tool(devserver.url, "qms_checkout", doc_id="CR-002",
                                                            user="claude")
            view = await updates.until(lambda view: holder(view, "CR-002") == "claude" and any(
                isinstance(a, ActivityEvent) and a.event == "CHECKOUT" for a in updates.activity)
                and view.snapshot.row("CR-002").state is RowState.OK)
            copy = view.snapshot.row("CR-002").workspace_file
            assert copy.path == root / ".claude/users/claude/workspace/CR-002.md"
            # The agent edits its copy: only the watch on the new .claude/users can see that.
            with copy.path.open("a") as fh:
                fh.write("\nMore work.\n")
            await updates.until(lambda view: view.snapshot.row("CR-002").workspace_file.size > copy.size)

            assert "Checked in: CR-002" in await call_tool(devserver.url, "qms_checkin", doc_id="CR-002",
                                                           user="claude")
            await updates.until(lambda view: view.snapshot.row("CR-002") is None)
    assert len(feed.failures) == 1 and len(made) == 2


async def test_a_watcher_that_ends_is_a_failure(tmp_path):
    project = Project(tmp_path.resolve())

    class Ending(QmsWatcher):
        async def events(self):
            async for ev in super().events():
                yield ev
            # a watcher someone stopped: its events end, quietly

    watcher = Ending(project.root, debounce_ms=200, step_ms=30)
    board = QmsBoard(project.root, [], stuck_after=STUCK, now=lambda: NOW, watcher_factory=lambda: watcher)
    run = asyncio.create_task(board.run())
    await until(board, lambda view: view.snapshot is not None)
    watcher.stop()
    with anyio.fail_after(GUARD), pytest.raises(FeedEnded, match="file watcher"):
        await run


async def test_states_follow_the_containers_and_the_time(tmp_path):
    project = Project(tmp_path.resolve())
    project.user("claude")
    project.meta("CR-001", holder="claude", checked_out=True)
    project.audit("CR-001", "CR", ev("CHECKOUT", "claude", "2026-03-02T07:00:00+00:00"))
    project.copy("claude", "CR-001", mtime=datetime(2026, 3, 2, 11, 0, tzinfo=UTC))
    clock = [NOW]
    board = QmsBoard(project.root, ["claude"], stuck_after=STUCK, now=lambda: clock[0],
                     watcher_factory=watcher_of(project.root))
    assert board.view.snapshot is None
    view = await board.settle(GUARD)
    assert view.snapshot.row("CR-001").state is RowState.OK  # containers unknown: never orphaned
    board.set_containers([])
    assert board.view.snapshot.row("CR-001").state is RowState.ORPHANED
    board.set_containers([Container("claude")])
    assert board.view.snapshot.row("CR-001").state is RowState.OK
    later = NOW.replace(hour=16)
    assert board.view_at(later).snapshot.row("CR-001").state is RowState.STALE
    assert board.view.snapshot.row("CR-001").state is RowState.OK  # view_at changes nothing
    clock[0] = later
    board.retime()
    assert (board.view.at, board.view.snapshot.row("CR-001").state) == (later, RowState.STALE)
