"""The QMS state scanner over hand-made projects (contract 2, 3, 4, 6, 9) and over one made by
the dev server through real checkouts."""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client

from core.containers import ContainerRow
from core.errors import ProjectError
from core.qms_state import (
    TAIL_BLOCK,
    QmsFileUnreadable,
    RowState,
    audit_record,
    classify_path,
    rescan_paths,
    restate,
    scan,
    sha256,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
STUCK = timedelta(hours=4)


def Container(agent: str, state: str = "running") -> ContainerRow:  # noqa: N802 - reads as a row
    """A container row as core.containers hands them out."""
    return ContainerRow(agent=agent, id=f"{agent:0<64}"[:64], name=f"qms-agent-{agent}", state=state,
                        image="claude-agent")


class Project:
    """Writes a project the way the QMS CLI lays it out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("QMS/.meta", "QMS/.audit", ".claude/users"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def meta(self, doc_id: str, doc_type: str = "CR", *, holder: str | None = None, checked_out: bool = False,
             out_date: str | None = "2026-03-01", **fields) -> Path:
        meta = {
            "doc_id": doc_id, "doc_type": doc_type, "version": "0.1", "status": "DRAFT", "executable": True,
            "execution_phase": "pre_release", "responsible_user": holder, "checked_out": checked_out,
            "checked_out_date": out_date if checked_out else None, "effective_version": None,
            "pending_assignees": [], **fields,
        }
        return self.write(f"QMS/.meta/{doc_type}/{doc_id}.json", json.dumps(meta, indent=2))

    def audit(self, doc_id: str, doc_type: str = "CR", *lines: dict | str, end: str = "\n") -> Path:
        text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
        return self.write(f"QMS/.audit/{doc_type}/{doc_id}.jsonl", text + end)

    def copy(self, agent: str, doc_id: str, title: str | None = "A title", *, mtime: datetime | None = None) -> Path:
        head = f"---\ntitle: {title}\nrevision_summary: Initial draft\n---\n\n" if title else ""
        path = self.write(f".claude/users/{agent}/workspace/{doc_id}.md", head + f"# {doc_id}\n\nBody.\n")
        stamp = (mtime or NOW - timedelta(minutes=5)).timestamp()
        os.utime(path, (stamp, stamp))
        return path

    def task(self, agent: str, doc_id: str, workflow: str = "PRE_REVIEW", version: str = "0.1", *,
             text: str | None = None) -> Path:
        name = f"task-{doc_id}-{workflow.lower()}-v{version.replace('.', '-')}.md"
        kind = "APPROVAL" if "APPROVAL" in workflow else "REVIEW"
        text = text if text is not None else (
            f"---\ntask_id: {name[:-3]}\ntask_type: {kind}\nworkflow_type: {workflow}\ndoc_id: {doc_id}\n"
            f"title: Fix the login\nstatus: IN_{workflow}\nresponsible_user: claude\nassigned_by: lead\n"
            f"assigned_date: '2026-03-01'\nversion: '{version}'\n---\n\n# Review {doc_id}\n"
        )
        return self.write(f".claude/users/{agent}/inbox/{name}", text)

    def user(self, agent: str) -> None:
        for sub in ("workspace", "inbox"):
            (self.root / ".claude/users" / agent / sub).mkdir(parents=True, exist_ok=True)

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def ev(event: str, user: str, ts: str, version: str = "0.1", **extra) -> dict:
    return {"ts": ts, "event": event, "user": user, "version": version, **extra}


SEED = {"timestamp": "2026-01-05T09:00:00.123456+00:00", "action": "seed", "user": "system",
        "details": {"message": "Document seeded during QMS initialization", "version": "1.0", "status": "EFFECTIVE"}}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project(tmp_path)
    for agent in ("lead", "claude", "qa"):
        p.user(agent)
    return p


def do_scan(project: Project, **kwargs):
    kwargs.setdefault("stuck_after", STUCK)
    kwargs.setdefault("now", NOW)
    return scan(project.root, **kwargs)


# --- held since ---------------------------------------------------------------------------


def test_checkout_row_held_since_the_holders_last_checkout(project: Project):
    project.meta("CR-001", holder="claude", checked_out=True)
    project.audit("CR-001", "CR",
                  ev("CREATE", "claude", "2026-02-20T08:00:00+00:00", title="Fix the login"),
                  ev("CHECKIN", "claude", "2026-02-20T09:00:00+00:00"),
                  ev("CHECKOUT", "claude", "2026-03-01T10:15:30+00:00"),
                  ev("CHECKIN", "claude", "2026-03-01T10:20:00+00:00"),
                  ev("CHECKOUT", "claude", "2026-03-02T11:00:00+00:00"),
                  ev("STATUS_CHANGE", "lead", "2026-03-02T11:10:00+00:00", from_status="A", to_status="B"))
    copy = project.copy("claude", "CR-001", "Fix the login (copy)")
    snap = do_scan(project)
    row = snap.row("CR-001")
    assert row.state is RowState.OK
    assert (row.holder, row.doc_type, row.version, row.status) == ("claude", "CR", "0.1", "DRAFT")
    assert row.held_since == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    assert row.held_since_source == "checkout"
    assert row.checked_out_date == date(2026, 3, 1)
    assert row.title == "Fix the login (copy)"  # the copy's frontmatter wins over the CREATE title
    assert row.workspace_file.path == copy.resolve()
    assert row.last_edit == datetime.fromtimestamp(copy.stat().st_mtime, UTC)
    assert snap.warnings == []


def test_created_document_is_held_since_its_create_and_checkouts_by_others_do_not_count(project: Project):
    project.meta("CR-002", holder="lead", checked_out=True)
    project.audit("CR-002", "CR",
                  ev("CREATE", "lead", "2026-03-01T07:00:00+00:00", title="Add audit export"),
                  ev("CHECKOUT", "claude", "2026-03-01T08:00:00+00:00"))
    snap = do_scan(project)
    row = snap.row("CR-002")
    assert (row.held_since, row.held_since_source) == (datetime(2026, 3, 1, 7, tzinfo=UTC), "create")
    assert row.title == "Add audit export"  # no copy: the CREATE title
    assert row.state is RowState.MISSING_COPY


def test_no_audit_event_falls_back_to_local_midnight_of_checked_out_date(project: Project):
    project.meta("VAR-001", "VAR", holder="claude", checked_out=True, out_date="2026-01-11")
    project.copy("claude", "VAR-001")
    row = do_scan(project).row("VAR-001")
    assert row.held_since_source == "date"
    assert row.held_since == datetime.combine(date(2026, 1, 11), time()).astimezone(UTC)
    assert row.held_since.tzinfo == UTC


def test_seed_shaped_lines_are_tolerated(project: Project):
    project.meta("SOP-001", "SOP", holder="claude", checked_out=True, version="1.1", status="DRAFT")
    project.audit("SOP-001", "SOP", SEED,
                  ev("CHECKOUT", "claude", "2026-03-02T09:30:00+00:00", "1.1", from_version="1.0"))
    project.meta("SOP-002", "SOP", holder="lead", checked_out=True)
    project.audit("SOP-002", "SOP", SEED)  # seeded, never checked out by lead in the trail
    project.copy("claude", "SOP-001")
    snap = do_scan(project)
    assert snap.row("SOP-001").held_since == datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    assert snap.row("SOP-002").held_since_source == "date"
    assert snap.warnings == []
    record = audit_record(SEED)
    assert (record.event, record.user, record.version) == ("SEED", "system", "1.0")
    assert record.time == datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC)
    assert record.details["status"] == "EFFECTIVE"


def test_partial_last_line_is_skipped_and_bad_lines_become_warnings(project: Project):
    project.meta("CR-003", holder="claude", checked_out=True)
    audit = project.audit("CR-003", "CR",
                          ev("CHECKOUT", "claude", "2026-03-02T08:00:00+00:00"),
                          '{"ts": "2026-03-02T09:00:00+00:00", "event": "CHECKOUT", "user": "claude", oops}',
                          '{"ts": "2026-03-02T10:00:00+00:00", "event": "CHECKOUT", "us',
                          end="")  # the last line is still being written
    project.copy("claude", "CR-003")
    snap = do_scan(project)
    assert snap.row("CR-003").held_since == datetime(2026, 3, 2, 8, tzinfo=UTC)
    assert [(w.path, "not valid JSON" in w.reason) for w in snap.warnings] == [(audit.resolve(), True)]


def test_audit_tail_crosses_blocks(project: Project):
    project.meta("CR-004", holder="claude", checked_out=True)
    filler = [ev("REVIEW", "qa", "2026-02-01T00:00:00+00:00", comment="x" * 500) for _ in range(3 * TAIL_BLOCK // 500)]
    long_line = ev("REJECT", "qa", "2026-02-02T00:00:00+00:00", comment="y" * (2 * TAIL_BLOCK))
    project.audit("CR-004", "CR", ev("CREATE", "claude", "2026-01-01T00:00:00+00:00", title="Long"),
                  ev("CHECKOUT", "claude", "2026-01-02T00:00:00+00:00"), *filler, long_line)
    project.copy("claude", "CR-004", title=None)
    row = do_scan(project).row("CR-004")
    assert row.held_since == datetime(2026, 1, 2, tzinfo=UTC)
    assert row.title == "Long"  # CREATE sits in the block that held the CHECKOUT


# --- states --------------------------------------------------------------------------------


def test_states_and_their_precedence(project: Project):
    old = NOW - STUCK - timedelta(minutes=1)
    project.meta("CR-010", holder="claude", checked_out=True)  # ok
    project.copy("claude", "CR-010")
    project.meta("CR-011", holder="claude", checked_out=True)  # stale: old mtime
    project.copy("claude", "CR-011", mtime=old)
    project.meta("CR-012", holder="claude", checked_out=True)  # missing copy
    project.meta("CR-013", holder="lead", checked_out=True)  # lead not running: orphaned, though stale too
    project.copy("lead", "CR-013", mtime=old)
    project.meta("CR-014", holder="lead", checked_out=True)  # missing copy beats orphaned
    states = lambda snap: {r.doc_id: r.state.value for r in snap.checkouts}  # noqa: E731

    unknown = do_scan(project)  # containers unknown: nothing is orphaned
    assert states(unknown) == {"CR-010": "ok", "CR-011": "stale", "CR-012": "missing-copy",
                               "CR-013": "stale", "CR-014": "missing-copy"}
    running = [Container("claude"), Container("lead", state="exited"), Container("qa")]
    known = do_scan(project, containers=running)
    assert known.running_agents == {"claude", "qa"}
    assert states(known) == {"CR-010": "ok", "CR-011": "stale", "CR-012": "missing-copy",
                             "CR-013": "orphaned", "CR-014": "missing-copy"}
    assert states(do_scan(project, containers=[])) == {**states(known), "CR-010": "orphaned", "CR-011": "orphaned"}


def test_unmanaged_copies_are_rows_of_their_workspace_owner(project: Project):
    project.meta("CR-020", holder="claude", checked_out=False, status="IN_REVIEW", version="0.2")  # checked in
    project.copy("claude", "CR-020", "Left behind")
    project.meta("CR-021", holder="claude", checked_out=True)
    project.copy("claude", "CR-021")
    project.copy("lead", "CR-021", "Lead's stray copy")  # held by claude, so lead's copy is nobody's
    project.copy("qa", "NOTES")  # no such document
    project.write(".claude/users/qa/workspace/scratch.txt", "not a document")
    snap = do_scan(project, containers=[Container("claude")])
    unmanaged = snap.rows(RowState.UNMANAGED)
    assert [(r.doc_id, r.holder) for r in unmanaged] == [("CR-020", "claude"), ("CR-021", "lead"), ("NOTES", "qa")]
    cr020 = unmanaged[0]
    assert (cr020.doc_type, cr020.version, cr020.status, cr020.title) == ("CR", "0.2", "IN_REVIEW", "Left behind")
    assert cr020.held_since is None and cr020.last_edit == cr020.workspace_file.mtime
    assert snap.row("CR-021").state is RowState.OK  # row() prefers the checkout
    assert unmanaged[2].doc_type is None
    assert [f.name for f in snap.workspaces["qa"]] == ["NOTES.md"]


# --- bad data ------------------------------------------------------------------------------


def test_bad_meta_files_become_warnings_and_the_scan_goes_on(project: Project):
    project.meta("CR-030", holder="claude", checked_out=True)
    project.copy("claude", "CR-030")
    broken = project.write("QMS/.meta/CR/CR-031.json", '{"doc_id": "CR-031", "checked_out": tr')
    listed = project.write("QMS/.meta/CR/CR-032.json", "[1, 2]")
    binary = project.root / "QMS/.meta/CR/CR-033.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    unreadable = project.root / "QMS/.meta/CR/CR-034.json"
    unreadable.mkdir()  # reading a folder fails like an unreadable file
    bad_date = project.meta("CR-035", holder="claude", checked_out=True, out_date="yesterday")
    nobody = project.meta("CR-036", holder=None, checked_out=True)
    snap = do_scan(project)
    reasons = {w.path.name: w.reason for w in snap.warnings}
    assert set(reasons) == {"CR-031.json", "CR-032.json", "CR-033.json", "CR-034.json", "CR-035.json", "CR-036.json"}
    assert reasons["CR-031.json"].startswith("not valid JSON")
    assert reasons["CR-032.json"] == "not a JSON object (list)"
    assert reasons["CR-033.json"].startswith("not valid JSON")
    assert reasons["CR-034.json"].startswith("cannot read")
    assert "not YYYY-MM-DD" in reasons["CR-035.json"]
    assert "responsible_user is empty" in reasons["CR-036.json"]
    assert all(w.path.is_absolute() for w in snap.warnings)
    assert {w.path for w in snap.warnings} >= {broken.resolve(), listed.resolve(), bad_date.resolve(), nobody.resolve()}
    assert snap.row("CR-030").state is RowState.OK
    assert snap.row("CR-035").held_since is None  # no date, no audit
    assert (snap.row("CR-036").holder, snap.row("CR-036").state) == (None, RowState.MISSING_COPY)


def test_source_json_and_namespaces_are_not_documents(project: Project):
    project.write("QMS/.meta/sdlc_namespaces.json", json.dumps({"CQ": {"path": "SDLC-CQ"}}))
    project.write("QMS/.meta/VR/CR-001-VR-001.source.json",
                  json.dumps({"doc_id": "CR-001-VR-001", "checked_out": True}))
    project.write("QMS/.meta/VR/CR-002-VR-001.source.json", "{not json")
    snap = do_scan(project)
    assert snap.checkouts == [] and snap.warnings == []


def test_missing_project_is_an_error(tmp_path: Path):
    with pytest.raises(ProjectError):
        scan(tmp_path, stuck_after=STUCK)


# --- agents, workspaces, inboxes -----------------------------------------------------------


def test_agents_are_the_given_ids_plus_every_user_folder(project: Project):
    (project.root / ".claude/users/Bad Name").mkdir()
    snap = do_scan(project, agents=["tu_ui", "claude"])
    assert snap.agents == ["tu_ui", "claude", "lead", "qa"]
    assert snap.workspaces["tu_ui"] == [] and snap.inbox_count("tu_ui") == 0
    assert [w.reason for w in snap.warnings] == ["not a valid agent id ([a-z0-9_-]+); skipped"]


def test_inbox_tasks_from_frontmatter(project: Project):
    project.task("qa", "CR-001")
    project.task("qa", "CR-001-TP-001", "POST_APPROVAL", "1.10")
    broken = project.task("qa", "CR-005", "REVIEW", "0.2", text="---\ntitle: [unclosed\n---\n")
    project.write(".claude/users/qa/inbox/readme.txt", "not a task")
    snap = do_scan(project)
    assert snap.inbox_count("qa") == 3 and snap.inbox_count("claude") == 0
    tasks = {t.doc_id: t for t in snap.inboxes["qa"]}
    first, second, third = tasks["CR-001"], tasks["CR-001-TP-001"], tasks["CR-005"]
    assert (first.task_type, first.workflow, first.doc_id, first.from_user, first.date, first.version, first.title) == (
        "REVIEW", "PRE_REVIEW", "CR-001", "lead", date(2026, 3, 1), "0.1", "Fix the login")
    assert (second.task_type, second.workflow, second.version) == ("APPROVAL", "POST_APPROVAL", "1.10")
    # a broken task is still a task: what its name says, and a warning
    assert (third.doc_id, third.workflow, third.task_type, third.version, third.from_user) == (
        "CR-005", "REVIEW", "REVIEW", "0.2", None)
    assert [(w.path, "not valid YAML" in w.reason) for w in snap.warnings] == [(broken.resolve(), True)]


def test_workspace_files_and_hash_on_demand(project: Project):
    copy = project.copy("claude", "CR-001", """'Fix: the ''login'''""")  # quoted, as yaml.dump writes it
    project.write(".claude/users/claude/workspace/.CR-001.md.swp", "editor junk")
    snap = do_scan(project)
    (ws,) = snap.workspaces["claude"]
    assert (ws.agent, ws.name, ws.doc_id, ws.size) == ("claude", "CR-001.md", "CR-001", copy.stat().st_size)
    assert ws.title == "Fix: the 'login'"
    assert ws.sha256() == hashlib.sha256(copy.read_bytes()).hexdigest()
    copy.unlink()
    with pytest.raises(QmsFileUnreadable):
        sha256(copy)


def test_scan_is_read_only(project: Project):
    project.meta("CR-001", holder="claude", checked_out=True)
    project.audit("CR-001", "CR", ev("CHECKOUT", "claude", "2026-03-02T08:00:00+00:00"), '{"partial', end="")
    project.copy("claude", "CR-001")
    project.task("qa", "CR-001")
    project.write("QMS/.meta/CR/CR-009.json", "{bad")

    def state():
        return {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
                for p in sorted(project.root.rglob("*"))}

    before = state()
    do_scan(project, containers=[])
    assert state() == before


# --- incremental ---------------------------------------------------------------------------


def same(a, b) -> None:
    """Two snapshots agree on everything the app shows."""
    assert a.checkouts == b.checkouts
    assert a.workspaces == b.workspaces
    assert a.inboxes == b.inboxes
    assert sorted(map(str, a.warnings)) == sorted(map(str, b.warnings))


def test_rescan_paths_rereads_only_what_changed_and_matches_a_full_scan(project: Project):
    cr1 = project.meta("CR-001", holder="claude", checked_out=True)
    a1 = project.audit("CR-001", "CR", ev("CHECKOUT", "claude", "2026-03-02T08:00:00+00:00"))
    c1 = project.copy("claude", "CR-001")
    bad = project.write("QMS/.meta/CR/CR-002.json", "{bad")
    snap = do_scan(project, containers=[Container("claude")])

    # checkin of CR-001: meta checked in, CHECKIN line, copy gone; CR-002 repaired and checked out to lead
    project.meta("CR-001", holder="claude", checked_out=False)
    project.audit("CR-001", "CR", ev("CHECKOUT", "claude", "2026-03-02T08:00:00+00:00"),
                  ev("CHECKIN", "claude", "2026-03-02T09:00:00+00:00"))
    c1.unlink()
    project.meta("CR-002", holder="lead", checked_out=True)
    c2 = project.copy("lead", "CR-002")
    task = project.task("claude", "CR-002")
    new_agent = project.copy("tu_ui", "CR-003")
    paths = [cr1, a1, c1, bad, c2, task, new_agent, new_agent.parent.parent]
    after = rescan_paths(snap, paths, now=NOW)
    same(after, do_scan(project, containers=[Container("claude")]))
    assert after.row("CR-001") is None
    assert after.row("CR-002").state is RowState.ORPHANED  # containers kept from the snapshot
    assert "tu_ui" in after.agents and after.inbox_count("claude") == 1
    assert after.warnings == []

    # a new CHECKOUT line alone moves held-since
    project.meta("CR-001", holder="claude", checked_out=True)
    c1 = project.copy("claude", "CR-001")
    mid = rescan_paths(after, [cr1, c1], now=NOW)
    with a1.open("a") as fh:
        fh.write(json.dumps(ev("CHECKOUT", "claude", "2026-03-02T11:30:00+00:00")) + "\n")
    later = rescan_paths(mid, [a1], now=NOW)
    assert later.row("CR-001").held_since == datetime(2026, 3, 2, 11, 30, tzinfo=UTC)
    same(later, do_scan(project, containers=[Container("claude")]))


def test_rescan_reuses_unchanged_workspace_files(project: Project):
    project.copy("claude", "CR-001")
    changed = project.copy("claude", "CR-002", "Old")
    snap = do_scan(project)
    changed.write_text("---\ntitle: New\n---\n")
    after = rescan_paths(snap, [changed])
    assert after.workspaces["claude"][0] is snap.workspaces["claude"][0]
    assert after.workspaces["claude"][1].title == "New"


def test_a_new_meta_folder_rescans_that_folder(project: Project):
    snap = do_scan(project)
    project.meta("INV-001", "INV", holder="claude", checked_out=True)
    after = rescan_paths(snap, [project.root / "QMS/.meta/INV"], now=NOW)
    same(after, do_scan(project))
    assert after.row("INV-001").state is RowState.MISSING_COPY


def test_restate_without_io(project: Project):
    project.meta("CR-001", holder="claude", checked_out=True)
    project.copy("claude", "CR-001", mtime=NOW - timedelta(hours=1))
    snap = do_scan(project)
    assert snap.row("CR-001").state is RowState.OK
    assert restate(snap, [], now=NOW).row("CR-001").state is RowState.ORPHANED
    assert restate(snap, None, now=NOW + STUCK).row("CR-001").state is RowState.STALE
    assert restate(snap, [Container("claude")], now=NOW).row("CR-001").state is RowState.OK


def test_classify_path(tmp_path: Path):
    root = tmp_path
    assert classify_path(root, root / "QMS/.meta/CR/CR-001.json") == [("meta", None)]
    assert classify_path(root, root / "QMS/.meta/VR/X.source.json") == []
    assert classify_path(root, root / "QMS/.meta/sdlc_namespaces.json") == []
    assert classify_path(root, root / "QMS/.audit/CR/CR-001.jsonl") == [("audit", None)]
    assert classify_path(root, root / ".claude/users/qa/inbox/task-x.md") == [("inbox", "qa")]
    assert classify_path(root, root / ".claude/users/qa") == [("workspace", "qa"), ("inbox", "qa")]
    assert classify_path(root, root / ".claude/users/qa/container/x") == []
    assert classify_path(root, root / "QMS/CR/CR-001/CR-001-draft.md") == []
    assert classify_path(root, Path("/elsewhere/QMS/.meta/CR/CR-001.json")) == []


# --- a project made by the dev server through real checkouts -------------------------------


async def call_tool(url: str, tool: str, **arguments) -> str:
    """One MCP tool call over SSE (the session opens and closes in this task)."""
    with anyio.fail_after(30):
        async with sse_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool(tool, arguments)
    assert not result.isError, result.content
    return "\n".join(c.text for c in result.content if c.type == "text")


def audit_ts(root: Path, doc_type: str, doc_id: str, event: str, user: str) -> datetime:
    lines = (root / "QMS/.audit" / doc_type / f"{doc_id}.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    return datetime.fromisoformat([r for r in records if (r.get("event"), r.get("user")) == (event, user)][-1]["ts"])


async def test_scan_of_a_project_made_through_real_checkouts(devserver, sample_project: Path):
    url = devserver.url
    assert "Checked out: SOP-001" in await call_tool(url, "qms_checkout", doc_id="SOP-001", user="claude")
    assert "Checked out: CR-002" in await call_tool(url, "qms_checkout", doc_id="CR-002", user="lead")
    root = sample_project.resolve()
    snap = scan(root, agents=["claude"], containers=[Container("claude"), Container("lead")], stuck_after=STUCK)
    assert snap.warnings == []
    rows = {r.doc_id: r for r in snap.checkouts}
    assert set(rows) == {"CR-001", "CR-002", "SOP-001"}
    sop = rows["SOP-001"]
    assert (sop.holder, sop.doc_type, sop.version, sop.status, sop.state) == (
        "claude", "SOP", "1.1", "DRAFT", RowState.OK)
    assert sop.held_since == audit_ts(root, "SOP", "SOP-001", "CHECKOUT", "claude")
    assert sop.held_since_source == "checkout"
    assert sop.title == "Document Control" and sop.checked_out_date == date.today()
    assert rows["CR-002"].holder == "lead" and rows["CR-002"].workspace_file.agent == "lead"
    assert rows["CR-001"].held_since == audit_ts(root, "CR", "CR-001", "CHECKOUT", "claude")

    # what the server says agrees with what the files say
    listing = await call_tool(url, "qms_workspace", user="claude")
    assert {f.doc_id for f in snap.workspaces["claude"]} == set(re.findall(r"^  (\S+)$", listing, re.M))
    inbox = await call_tool(url, "qms_inbox", user="qa")
    (task,) = snap.inboxes["qa"]
    assert f"[{task.task_type}] {task.doc_id}" in inbox
    for line in (f"Workflow: {task.workflow}", f"From: {task.from_user}", f"Date: {task.date}"):
        assert line in inbox

    # a copy lost on the host: missing copy (the repair case); checkin through the server ends a row
    (root / ".claude/users/lead/workspace/CR-002.md").unlink()
    assert "Checked in: SOP-001" in await call_tool(url, "qms_checkin", doc_id="SOP-001", user="claude")
    after = scan(root, containers=[Container("claude")], stuck_after=STUCK)
    assert {r.doc_id: r.state.value for r in after.checkouts} == {"CR-001": "ok", "CR-002": "missing-copy"}
    assert "not found in your workspace" in await call_tool(url, "qms_checkin", doc_id="CR-002", user="lead")


# --- hostile workspace entries are unsafe rows, never read through (issue 11, item 5) -------------


def test_unsafe_workspace_entries_are_rows_of_their_own_and_never_read(project, tmp_path):
    secret = tmp_path / "host-secret"
    secret.write_text("---\ntitle: HOST SECRET\n---\n")
    ws = project.root / ".claude/users/claude/workspace"
    for doc in ("CR-001", "CR-002", "CR-003", "CR-004", "CR-005"):
        project.meta(doc, holder="claude", checked_out=True)
    (ws / "CR-001.md").symlink_to(secret)
    (ws / "CR-002.md").mkdir()
    os.mkfifo(ws / "CR-003.md")  # reading it would block the scanner for good
    os.link(secret, ws / "CR-004.md")
    project.copy("claude", "CR-005")
    (ws / "SOP-001.md").symlink_to("/etc/passwd")  # unmanaged, and a link
    snap = do_scan(project, containers=[Container("claude")])
    states = {(r.doc_id, r.state.value, r.workspace_file.unsafe if r.workspace_file else None) for r in snap.checkouts}
    assert states == {("CR-001", "unsafe", "is a symlink"), ("CR-002", "unsafe", "is a directory"),
                      ("CR-003", "unsafe", "is a fifo"), ("CR-004", "unsafe", "is a hard link (2 names for one file)"),
                      ("CR-005", "ok", None), ("SOP-001", "unsafe", "is a symlink")}
    assert all(r.title != "HOST SECRET" for r in snap.checkouts)
    with pytest.raises(QmsFileUnreadable):
        sha256(ws / "CR-003.md")  # on demand too: never from a fifo or through a link
    with pytest.raises(QmsFileUnreadable):
        sha256(ws / "CR-001.md")


def test_a_symlinked_workspace_or_inbox_folder_is_not_listed(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "CR-001.md").write_text("---\ntitle: elsewhere\n---\n")
    (elsewhere / "task-CR-001-review-v0-1.md").write_text("---\ndoc_id: CR-001\n---\n")
    users = project.root / ".claude/users/claude"
    for sub in ("workspace", "inbox"):
        (users / sub).rmdir()
        (users / sub).symlink_to(elsewhere)
    (project.root / ".claude/users/qa/inbox" / "task-CR-009-review-v0-1.md").symlink_to(elsewhere / "CR-001.md")
    snap = do_scan(project)
    assert snap.workspaces["claude"] == [] and snap.inboxes["claude"] == []
    assert [(t.doc_id, t.title) for t in snap.inboxes["qa"]] == [("CR-009", None)]  # from its name; not read
    reasons = {(w.path.relative_to(project.root).as_posix(), w.reason) for w in snap.warnings}
    assert (".claude/users/claude/workspace", "not listed: .claude/users/claude/workspace is a symlink: qms-panel "
            "reads agents' folders only through real folders") in reasons
    assert any(p == ".claude/users/qa/inbox/task-CR-009-review-v0-1.md" and r.startswith("not read: ")
               and r.endswith("is a symlink") for p, r in reasons)
