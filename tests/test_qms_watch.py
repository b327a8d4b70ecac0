"""The live watcher and audit tail over hand-made projects, and over the dev server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from core.errors import FeedEnded, ProjectError
from core.qms_state import RowState, ScanWarning, rescan_paths, scan
from core.qms_watch import ActivityEvent, QmsWatcher, StateChanged
from test_qms_state import NOW, SEED, STUCK, Project, call_tool, ev

GUARD = 15  # seconds: a guard against hanging, never a timing assertion


class Stream:
    """Runs ``watcher.events()`` in a task and hands the events out in order."""

    def __init__(self, watcher: QmsWatcher) -> None:
        self.watcher = watcher
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Stream:
        self.task = asyncio.create_task(self._pump())
        with anyio.fail_after(GUARD):
            await self.watcher.wait_ready()
        return self

    async def __aexit__(self, *exc) -> None:
        self.watcher.stop()
        with anyio.fail_after(GUARD):
            await self.task

    async def _pump(self) -> None:
        async for event in self.watcher.events():
            self.queue.put_nowait(event)

    async def next(self) -> object:
        with anyio.fail_after(GUARD):
            return await self.queue.get()

    async def until(self, predicate) -> list:
        """Every event up to and including the first that matches ``predicate``."""
        seen = []
        while True:
            seen.append(await self.next())
            if predicate(seen[-1]):
                return seen

    async def until_changed(self, path: Path) -> list:
        return await self.until(lambda e: isinstance(e, StateChanged) and path in e.paths)


def activities(events) -> list[ActivityEvent]:
    return [e for e in events if isinstance(e, ActivityEvent)]


def append(path: Path, text: str) -> None:
    with path.open("a") as fh:
        fh.write(text)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project(tmp_path.resolve())
    for agent in ("lead", "claude", "qa"):
        p.user(agent)
    return p


def watcher_for(project: Project, **kwargs) -> QmsWatcher:
    kwargs.setdefault("debounce_ms", 300)
    kwargs.setdefault("step_ms", 30)
    return QmsWatcher(project.root, **kwargs)


# --- audit tail ----------------------------------------------------------------------------


async def test_new_audit_lines_become_activity_events(project: Project):
    audit = project.audit("CR-001", "CR", ev("CREATE", "claude", "2026-03-01T08:00:00+00:00", title="Old news"))
    async with Stream(watcher_for(project)) as stream:
        lines = [ev("CHECKOUT", "claude", "2026-03-02T09:00:00+00:00", "1.1", from_version="1.0"),
                 ev("CHECKIN", "claude", "2026-03-02T09:05:00+00:00", "1.1")]
        append(audit, "".join(json.dumps(x) + "\n" for x in lines))
        events = await stream.until_changed(audit)
    checkout, checkin = activities(events)
    assert (checkout.event, checkout.user, checkout.doc_id, checkout.doc_type, checkout.version) == (
        "CHECKOUT", "claude", "CR-001", "CR", "1.1")
    assert checkout.time == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert checkout.details == {"from_version": "1.0"}
    assert json.loads(checkout.raw)["event"] == "CHECKOUT" and checkout.path == audit
    assert checkin.event == "CHECKIN"
    assert events[-1].areas == {"audit"} and events[-1].agents == set()


async def test_a_partial_line_is_emitted_once_complete(project: Project):
    audit = project.audit("CR-001", "CR", ev("CREATE", "claude", "2026-03-01T08:00:00+00:00"))
    line = json.dumps(ev("CHECKIN", "claude", "2026-03-02T09:00:00+00:00"))
    async with Stream(watcher_for(project)) as stream:
        append(audit, line[:20])
        assert activities(await stream.until_changed(audit)) == []
        append(audit, line[20:] + "\n")
        (event,) = activities(await stream.until_changed(audit))
    assert event.raw == line and event.event == "CHECKIN"


async def test_a_line_being_written_at_start_is_emitted_whole(project: Project):
    line = json.dumps(ev("CHECKOUT", "lead", "2026-03-02T09:00:00+00:00"))
    audit = project.audit("CR-001", "CR", ev("CREATE", "claude", "2026-03-01T08:00:00+00:00"), line[:25], end="")
    async with Stream(watcher_for(project)) as stream:
        append(audit, line[25:] + "\n")
        (event,) = activities(await stream.until_changed(audit))
    assert (event.event, event.user, event.raw) == ("CHECKOUT", "lead", line)


async def test_new_files_and_folders_are_read_from_their_start(project: Project):
    async with Stream(watcher_for(project)) as stream:
        audit = project.audit("INV-001", "INV", ev("CREATE", "claude", "2026-03-02T08:00:00+00:00", title="Why"),
                              SEED)
        events = await stream.until(lambda e: len(activities([e])) and e.event == "SEED")
    create, seed = activities(events)
    assert (create.doc_id, create.doc_type, create.details) == ("INV-001", "INV", {"title": "Why"})
    assert (seed.event, seed.user, seed.version) == ("SEED", "system", "1.0")
    assert seed.path == audit


async def test_rotation_and_truncation_start_again(project: Project):
    audit = project.audit("CR-001", "CR", *[ev("REVIEW", "qa", "2026-03-01T08:00:00+00:00", comment="x" * 50)] * 5)
    async with Stream(watcher_for(project)) as stream:
        rotated = audit.with_suffix(".jsonl.1")
        audit.rename(rotated)
        fresh = audit.with_suffix(".new")
        fresh.write_text(json.dumps(ev("CHECKOUT", "claude", "2026-03-02T10:00:00+00:00")) + "\n")
        fresh.rename(audit)  # a new inode at the same path
        events = await stream.until(lambda e: isinstance(e, ActivityEvent))
        assert events[-1].event == "CHECKOUT"
        with audit.open("r+") as fh:
            fh.truncate(0)
        audit.write_text(json.dumps(ev("CHECKIN", "claude", "2026-03-02T11:00:00+00:00")) + "\n")
        events = await stream.until(lambda e: isinstance(e, ActivityEvent))
        assert events[-1].event == "CHECKIN"


async def test_an_invalid_audit_line_is_a_warning(project: Project):
    audit = project.audit("CR-001", "CR", ev("CREATE", "claude", "2026-03-01T08:00:00+00:00"))
    async with Stream(watcher_for(project)) as stream:
        append(audit, '{"ts": oops}\n[1]\n' + json.dumps(ev("CHECKIN", "claude", "2026-03-02T11:00:00+00:00")) + "\n")
        events = await stream.until_changed(audit)
    warnings = [e for e in events if isinstance(e, ScanWarning)]
    assert [w.path for w in warnings] == [audit, audit]
    assert "not valid JSON" in warnings[0].reason and "not a JSON object" in warnings[1].reason
    assert [a.event for a in activities(events)] == ["CHECKIN"]


# --- state changes -------------------------------------------------------------------------


async def test_state_changes_name_areas_and_agents(project: Project):
    async with Stream(watcher_for(project)) as stream:
        copy = project.copy("claude", "CR-001")
        changed = (await stream.until_changed(copy))[-1]
        assert "workspace" in changed.areas and "claude" in changed.agents
        task = project.task("qa", "CR-001")
        changed = (await stream.until_changed(task))[-1]
        assert "inbox" in changed.areas and "qa" in changed.agents
        meta = project.meta("CR-001", holder="claude", checked_out=True)
        changed = (await stream.until_changed(meta))[-1]
        assert "meta" in changed.areas
        source = project.write("QMS/.meta/CR/CR-001.source.json", "{}")
        draft = project.write("QMS/CR/CR-001/CR-001-draft.md", "not watched")
        marker = project.copy("lead", "CR-002")
        events = await stream.until_changed(marker)
    assert not any(isinstance(e, StateChanged) and {source, draft} & set(e.paths) for e in events)


async def test_a_burst_is_coalesced(project: Project):
    async with Stream(watcher_for(project, step_ms=300, debounce_ms=2000)) as stream:
        copies = [project.copy("claude", f"CR-{n:03d}") for n in range(1, 21)]
        seen: set[Path] = set()
        changes = 0
        while not set(copies) <= seen:
            event = await stream.next()
            if isinstance(event, StateChanged):
                changes += 1
                seen |= set(event.paths)
    assert changes < len(copies)


async def test_agents_filter(project: Project):
    async with Stream(watcher_for(project, agents=["claude"])) as stream:
        other = project.task("qa", "CR-001")
        mine = project.copy("claude", "CR-001")
        events = await stream.until_changed(mine)
    assert all(other not in e.paths and e.agents <= {"claude"} for e in events if isinstance(e, StateChanged))


async def test_events_keep_a_snapshot_equal_to_a_full_scan(project: Project):
    meta = project.meta("CR-001", holder="claude", checked_out=False)
    audit = project.audit("CR-001", "CR", ev("CREATE", "claude", "2026-03-01T08:00:00+00:00", title="Fix"),
                          ev("CHECKIN", "claude", "2026-03-01T09:00:00+00:00"))
    async with Stream(watcher_for(project)) as stream:
        snap = scan(project.root, stuck_after=STUCK, now=NOW)
        assert snap.checkouts == []
        # what a checkout does, in the CLI's order: meta, audit line, workspace copy
        project.meta("CR-001", holder="claude", checked_out=True)
        append(audit, json.dumps(ev("CHECKOUT", "claude", "2026-03-02T10:00:00+00:00")) + "\n")
        copy = project.copy("claude", "CR-001")
        pending = {meta, audit, copy}
        while pending:
            event = await stream.next()
            if isinstance(event, StateChanged):
                snap = rescan_paths(snap, event.paths, now=NOW)
                pending -= set(event.paths)
    full = scan(project.root, stuck_after=STUCK, now=NOW)
    assert snap.checkouts == full.checkouts and snap.workspaces == full.workspaces
    row = snap.row("CR-001")
    assert (row.state, row.held_since) == (RowState.OK, datetime(2026, 3, 2, 10, tzinfo=UTC))


async def test_stop_and_cancel_end_the_stream(project: Project):
    watcher = watcher_for(project)
    async with Stream(watcher):
        pass  # __aexit__ stops it and waits for the end
    cancelled = Stream(watcher_for(project))
    await cancelled.__aenter__()
    cancelled.task.cancel()
    with anyio.fail_after(GUARD), pytest.raises(asyncio.CancelledError):
        await cancelled.task


async def test_closing_the_iterator_stops_the_watching(project: Project):
    watcher = watcher_for(project)
    stream = watcher.events()
    first = asyncio.ensure_future(anext(stream))
    with anyio.fail_after(GUARD):
        await watcher.wait_ready()
        copy = project.copy("claude", "CR-001")
        assert copy in (await first).paths
        await stream.aclose()
    assert watcher._stop.is_set()


async def test_nothing_to_watch_is_an_error(tmp_path: Path):
    watcher = QmsWatcher(tmp_path)
    with pytest.raises(ProjectError):
        async for _ in watcher.events():
            pass
    with anyio.fail_after(GUARD):
        await watcher.wait_ready()  # does not hang


async def test_a_watcher_runs_once(project: Project):
    watcher = watcher_for(project)
    async with Stream(watcher):
        pass
    with pytest.raises(FeedEnded, match="runs once"):
        async for _ in watcher.events():
            pass


async def test_folders_made_after_the_start_are_followed(tmp_path: Path):
    """A project whose .claude (and QMS/.audit) appear after the watcher started."""
    root = tmp_path.resolve()
    (root / "QMS/.meta").mkdir(parents=True)
    watcher = QmsWatcher(root, debounce_ms=300, step_ms=30)
    assert watcher.watched() == [root / "QMS/.meta"]
    async with Stream(watcher) as stream:
        project = Project(root)  # makes QMS/.audit and .claude/users at once
        copy = project.copy("claude", "CR-001")  # written as soon as its folder exists
        await stream.until_changed(copy)
        assert watcher.watched() == [root / "QMS/.meta", root / "QMS/.audit", root / ".claude/users"]
        later = project.copy("qa", "CR-002")
        await stream.until_changed(later)
        audit = project.audit("CR-001", "CR", ev("CHECKOUT", "claude", "2026-03-01T08:00:00+00:00"))
        (line,) = activities(await stream.until(lambda e: isinstance(e, ActivityEvent)))
        assert (line.doc_id, line.path) == ("CR-001", audit)

        # A watched folder that goes is waited for, and followed again when it is back.
        shutil.rmtree(root / ".claude")
        await stream.until_changed(root / ".claude/users")  # it went: scan in full
        again = project.copy("claude", "CR-003")
        await stream.until_changed(again)


def test_watcher_reads_nothing_it_does_not_own(project: Project):
    """The watcher opens files read-only: a read-only project works."""
    audit = project.audit("CR-001", "CR", ev("CREATE", "claude", "2026-03-01T08:00:00+00:00"))
    os.chmod(audit, 0o444)
    watcher = watcher_for(project)
    watcher._tail.prime()
    assert watcher._tail.read(audit) == []


# --- live, through the dev server -----------------------------------------------------------


async def test_live_checkout_and_checkin_through_the_dev_server(devserver, sample_project: Path):
    root = sample_project.resolve()
    copy = root / ".claude/users/claude/workspace/CR-002.md"
    async with Stream(QmsWatcher(root, debounce_ms=300, step_ms=30)) as stream:
        snap = scan(root, stuck_after=STUCK)
        assert snap.row("CR-002") is None

        async def follow(done) -> list:
            """Apply every StateChanged to the snapshot until ``done(events)``."""
            nonlocal snap
            seen = []
            while not done(seen):
                seen.append(await stream.next())
                if isinstance(seen[-1], StateChanged):
                    snap = rescan_paths(snap, seen[-1].paths)
            return seen

        assert "Checked out: CR-002" in await call_tool(devserver.url, "qms_checkout", doc_id="CR-002", user="claude")
        seen = await follow(lambda s: any(isinstance(e, StateChanged) and copy in e.paths for e in s)
                            and any(isinstance(e, ActivityEvent) and e.event == "CHECKOUT" for e in s)
                            and getattr(snap.row("CR-002"), "state", None) is RowState.OK)
        (checkout,) = [e for e in activities(seen) if e.event == "CHECKOUT"]
        assert (checkout.user, checkout.doc_id, checkout.doc_type) == ("claude", "CR-002", "CR")
        row = snap.row("CR-002")
        assert (row.holder, row.state, row.held_since, row.held_since_source) == (
            "claude", RowState.OK, checkout.time, "checkout")
        assert row.workspace_file.path == copy

        assert "Checked in: CR-002" in await call_tool(devserver.url, "qms_checkin", doc_id="CR-002", user="claude")
        seen = await follow(lambda s: any(isinstance(e, StateChanged) and copy in e.paths for e in s)
                            and any(isinstance(e, ActivityEvent) and e.event == "CHECKIN" for e in s)
                            and snap.row("CR-002") is None)  # each folder's changes come in bursts of their own
        assert snap.row("CR-002") is None
        full = scan(root, stuck_after=STUCK)
        assert snap.checkouts == full.checkouts
