"""Operations on behalf of agents, against the real dev server: classification of every reply
of contract 1.4-1.6, checkout/checkin verified on disk, nothing lost, and repair."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from core.devserver.server import FAULTS_ENV
from core.errors import InvalidAgentId, InvalidDocumentId
from core.layout import workspace_dir
from core.mcp_link import McpLink
from core.qms_files import draft_path, find_meta
from core.qms_ops import QmsOps, classify

TRANSPORTS = ["sse", "streamable-http"]


def tree_hash(root: Path) -> str:
    """Every folder and file under ``root``, with contents: equal hashes mean nothing changed."""
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        digest.update(f"D {os.path.relpath(folder, root)}\n".encode())
        for name in sorted(files + [d for d in dirs if Path(folder, d).is_symlink()]):
            path = Path(folder, name)
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):  # a link, fifo or device is hashed as what it is, never read
                content = hashlib.sha256(path.read_bytes()).digest()
            else:
                content = f"{stat.S_IFMT(st.st_mode)} {os.readlink(path) if path.is_symlink() else ''}".encode()
            digest.update(f"F {path.relative_to(root)} ".encode() + content)
    return digest.hexdigest()


def meta(root: Path, doc_id: str) -> dict:
    return find_meta(root, doc_id)


@asynccontextmanager
async def connected(url: str, root: Path, headers: dict[str, str] | None = None, **link_options):
    link = McpLink(url, ping_interval=60, headers=headers, **link_options)
    async with anyio.create_task_group() as tg:
        tg.start_soon(link.run)
        with anyio.fail_after(20):
            await link.wait_connected(20)
        yield QmsOps(link, root)
        tg.cancel_scope.cancel()


@pytest.fixture(params=TRANSPORTS)
def server(request, sample_project, devserver_factory):
    """The dev server over each transport (a link's task group cannot span a fixture's yield)."""
    return devserver_factory(sample_project, transport=request.param)


# --- classification of the contract's texts ----------------------------------------------------


PD_CHECKIN = ("Permission Denied: 'checkin' command\n\nYou (claude) are not the responsible user for this document.\n"
              "Responsible user: lead\n\nOnly the document owner can perform this action.")
PD_GROUP = "Permission Denied: 'checkout' command\nYour role: quality (qa)\n\nRequired role(s): initiator"
WS = "Workspace: .claude/users/claude/workspace/"


@pytest.mark.parametrize("operation, text, status, reason", [
    # the success forms of contract 1.6, with their known preamble lines
    ("checkout", f"Checked out: CR-001\n{WS}CR-001.md", "ok", None),
    ("checkout", f"Archived: v1.0\nCreated draft v1.1 from effective v1.0\nChecked out: SOP-001\n{WS}SOP-001.md",
     "ok", None),
    ("checkout", f"Auto-withdrawn: IN_PRE_REVIEW -> DRAFT\nChecked out: CR-001\n{WS}CR-001.md", "ok", None),
    ("checkout", f"Transitioned from PRE_APPROVED to DRAFT\nExecution checkout: creating v1.2 (current: v1.1)\n"
     f"Interactive session initialized (new)\nChecked out: CR-001\n{WS}CR-001.md", "ok", None),
    ("checkin", "Checked in: CR-001 (v0.1)", "ok", None),
    ("checkin", "Archived: v1.0\nChecked in: CR-001 (v1.1)", "ok", None),
    ("checkin", "Source saved: CR-001.source.json\nChecked in: CR-001 (v1.0, interactive)", "ok", None),
    ("status", "Document: CR-001\nTitle: t\nStatus: DRAFT", "ok", None),
    ("workspace", "Workspace is empty", "ok", None),
    ("inbox", "Inbox for qa:\n" + "-" * 60 + "\n  [REVIEW] CR-003", "ok", None),
    # refusals (every line of a Permission Denied; contract 11: a blank line before Required role(s))
    ("checkout", "You already have CR-001 checked out", "refused", "You already have CR-001 checked out"),
    ("checkout", "Error: CR-001 is checked out by claude", "refused", "Error: CR-001 is checked out by claude"),
    ("checkout", "Error: Document not found: CR-404", "refused", "Error: Document not found: CR-404"),
    ("checkout", "Error: CR-001 is CLOSED and cannot be checked out.", "refused",
     "Error: CR-001 is CLOSED and cannot be checked out."),
    ("checkout", "Error: CR-001 is in IN_REVIEW and owned by lead\nOnly the document owner can checkout from an "
     "active workflow", "refused",
     "Error: CR-001 is in IN_REVIEW and owned by lead\nOnly the document owner can checkout from an active workflow"),
    ("checkin", "\nError: CR-001 not found in your workspace.\n\nTo check out a document: qms --user U checkout ID\n"
     "To see your workspace: qms --user U workspace", "refused", "Error: CR-001 not found in your workspace."),
    ("checkin", PD_CHECKIN, "refused", PD_CHECKIN),
    ("checkout", PD_GROUP, "refused", PD_GROUP),
    ("status", "Error: User 'x' not found.\n\nTo add this user, run: ...", "refused", "Error: User 'x' not found."),
    ("checkout", "Error: CR-001 is still checked out by claude.", "refused",
     "Error: CR-001 is still checked out by claude."),
    # server failures
    ("checkin", "Error: Command timed out after 30 seconds", "error", "Error: Command timed out after 30 seconds"),
    ("checkin", "Error: Could not find QMS root directory. Ensure you are in a QMS project.", "error",
     "Error: Could not find QMS root directory. Ensure you are in a QMS project."),
    ("checkin", "qms.py: error: argument command: invalid choice: 'withdraw'", "error",
     "qms.py: error: argument command: invalid choice: 'withdraw'"),
    ("checkin", "(no output)", "error", "unexpected reply: (no output)"),
    # hostile or broken replies that contain a success line: never ok (issue 11, item 3)
    ("checkin", "Error: could not write the draft\nChecked in: CR-001 (v0.1) rolled back", "error",
     "Error: could not write the draft"),
    ("checkin", "Checked in: CR-001 (v0.1)\nError: the meta was not written", "error",
     "Error: the meta was not written"),
    ("checkin", "Checked in: CR-001 (v0.1) rolled back", "error", "unexpected reply: Checked in: CR-001 (v0.1) rolled back"),
    ("checkin", "Checked in: CR-002 (v0.1)", "error", "unexpected reply: Checked in: CR-002 (v0.1)"),  # another doc
    ("checkin", "Note: nothing happened\nChecked in: CR-001 (v0.1)", "error", "unexpected reply: Note: nothing happened"),
    ("checkin", "Checked in: CR-001 (v0.1)\nChecked in: CR-001 (v0.1)", "error",
     "unexpected reply: Checked in: CR-001 (v0.1)"),
    ("checkout", "Checked out: CR-001", "error", "unexpected reply: Checked out: CR-001"),  # no Workspace line
    ("checkout", f"Checked out: CR-001\n{WS}CR-001.md\nError: disk full", "error", "Error: disk full"),
    ("checkout", f"Checked out: CR-001\n{WS}CR-002.md", "error", "unexpected reply: Checked out: CR-001"),
    ("status", "Error: Document not found: CR-404\nDocument: CR-404", "refused", "Error: Document not found: CR-404"),
    ("workspace", "Workspace for claude:\nError: cannot list", "error", "Error: cannot list"),
])
def test_classify_contract_texts(operation, text, status, reason):
    assert classify(operation, text, False, "CR-001" if operation in ("checkin", "checkout") and
                    "SOP-001" not in text else None)[:2] == (status, reason)


def test_classify_tool_errors():
    status, reason, retry = classify("checkin", "Error executing tool qms_checkin: IDENTITY LOCKED: 'claude' is "
                                     "active in enforced mode (container instance 1234abcd). Trusted-mode ...", True)
    assert (status, retry) == ("identity-locked", None)  # the TTL is the server's: no delay is promised
    assert reason.startswith("IDENTITY LOCKED: 'claude'")
    assert classify("checkin", "Error executing tool qms_checkin: IDENTITY REQUIRED: the 'user' ...", True)[:2] == \
        ("error", "IDENTITY REQUIRED: the 'user' ...")

# --- on disk --------------------------------------------------------------------------------------


async def test_checkout_then_checkin_for_claude_on_disk(server, sample_project):
    async with connected(server.url, sample_project) as ops:
        root = ops.project_root
        copy = workspace_dir(root, "claude") / "CR-002.md"
        out = await ops.checkout("CR-002", "claude")
        assert out.status == "ok", out
        assert copy.is_file() and out.workspace is not None and out.workspace.path == copy
        m = meta(root, "CR-002")
        assert m["checked_out"] is True and m["responsible_user"] == "claude"

        copy.write_text(copy.read_text(encoding="utf-8") + "\nAn edit made for claude.\n", encoding="utf-8")
        out = await ops.checkin("CR-002", "claude")
        assert out.status == "ok", out
        assert out.text.startswith("Checked in: CR-002")
        assert not copy.exists()
        assert meta(root, "CR-002")["checked_out"] is False
        assert "An edit made for claude." in draft_path(root, "CR-002", "CR").read_text(encoding="utf-8")

        assert (await ops.status("CR-002", "claude")).text.count("Checked Out: False") == 1
        assert (await ops.workspace("claude")).status == "ok"
        inbox = await ops.inbox("qa")
        assert inbox.status == "ok" and "CR-003" in inbox.text


async def test_every_refusal_is_classified(server, sample_project):
    async with connected(server.url, sample_project) as ops:
        root = ops.project_root
        checks = [
            (ops.checkout("CR-001", "claude"), "You already have CR-001 checked out"),
            (ops.checkout("CR-001", "lead"), "Error: CR-001 is checked out by claude"),
            (ops.checkout("CR-404", "claude"), "Error: Document not found: CR-404"),
            (ops.checkout("CR-003", "lead"), "Error: CR-003 is in IN_PRE_REVIEW and owned by claude\nOnly the document "
                                             "owner can checkout from an active workflow"),
            (ops.checkin("CR-002", "lead"), "Error: CR-002 not found in your workspace."),
            (ops.checkout("CR-002", "qa"), "Permission Denied: 'checkout' command\n\nYour role: quality (qa)\n"
                                           "Required role(s): initiator"),
            (ops.checkout("CR-002", "x"), "Error: User 'x' not found."),
        ]
        for call, reason in checks:
            before = tree_hash(root)
            out = await call
            assert out.status == "refused" and out.reason.startswith(reason), out
            assert tree_hash(root) == before
        # CLOSED ([latest]): the server refuses before anything else.
        path = next((root / "QMS" / ".meta").glob("*/CR-002.json"))
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "status": "CLOSED"}, indent=2))
        out = await ops.checkout("CR-002", "lead")
        assert (out.status, out.reason) == ("refused", "Error: CR-002 is CLOSED and cannot be checked out.")


async def test_refused_checkin_leaves_the_copy_byte_identical(server, sample_project):
    async with connected(server.url, sample_project) as ops:
        root = ops.project_root
        copy = workspace_dir(root, "claude") / "CR-002.md"  # CR-002 belongs to lead
        copy.write_bytes(b"---\ntitle: mine\n---\n\nclaude's unsaved work \xe2\x9c\x93\n")
        before = tree_hash(root)
        out = await ops.checkin("CR-002", "claude")
        assert out.status == "refused"
        assert out.reason.startswith("Permission Denied: 'checkin' command\n\nYou (claude) are not the responsible user")
        assert "Checkin refused: CR-002 for claude: Permission Denied: 'checkin' command You (claude)" in \
            out.notice().one_line()
        assert out.workspace_intact is True and out.workspace.sha256 == hashlib.sha256(copy.read_bytes()).hexdigest()
        assert any("byte-identical" in a for a in out.actions)
        assert tree_hash(root) == before


async def test_missing_copy_refused_then_repaired(server, sample_project):
    async with connected(server.url, sample_project) as ops:
        root = ops.project_root
        copy = workspace_dir(root, "claude") / "CR-001.md"
        copy.unlink()  # contract 9: meta says checked out to claude, no workspace copy
        draft = draft_path(root, "CR-001", "CR")
        draft_before = draft.read_bytes()
        before = tree_hash(root)

        out = await ops.checkin("CR-001", "claude")
        assert out.status == "refused"
        assert ".claude/users/claude/workspace/CR-001.md is missing" in out.reason and "repair" in out.reason
        assert tree_hash(root) == before

        out = await ops.repair("CR-001", "claude")
        assert out.status == "ok", out
        assert out.actions[0].startswith(
            "copied QMS/CR/CR-001/CR-001-draft.md to .claude/users/claude/workspace/CR-001.md")
        assert out.actions[1].startswith("checked in CR-001 as claude: Checked in: CR-001")
        assert meta(root, "CR-001")["checked_out"] is False
        assert not copy.exists()
        assert draft.read_bytes() == draft_before  # the content did not change

        again = await ops.repair("CR-001", "claude")
        assert (again.status, again.reason) == ("refused", "CR-001 is not checked out: nothing to repair")


async def test_repair_refuses_what_it_should_not_touch(server, sample_project):
    async with connected(server.url, sample_project) as ops:
        root = ops.project_root
        before = tree_hash(root)
        assert (await ops.repair("CR-001", "claude")).reason.endswith("UTC): nothing to repair (check it in instead)")
        assert (await ops.repair("CR-001", "lead")).reason == \
            "CR-001 is checked out by claude, not lead: repair it as claude"
        assert (await ops.repair("CR-404", "lead")).reason.startswith("CR-404 has no metadata")
        assert tree_hash(root) == before


# --- identity lock (contract 1.4) ----------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_identity_locked_is_classified_and_repair_undoes_its_copy(sample_project, devserver_factory, transport):
    server = devserver_factory(sample_project, transport=transport, identity_ttl=60)
    root = sample_project
    proxy = {"X-QMS-Identity": "claude", "X-QMS-Instance": "c0ffee00-1111"}  # as a container's proxy sends them
    async with connected(server.url, root, headers=proxy) as agent, connected(server.url, root) as ops:
        assert (await agent.inbox("claude")).status == "ok"  # a live agent session, in enforced mode

        out = await ops.status("CR-001", "claude")
        assert out.status == "identity-locked" and out.retry_after_s is None
        assert out.reason.startswith(
            "IDENTITY LOCKED: 'claude' is active in enforced mode (container instance c0ffee00)")
        notice = out.notice()
        assert notice.title == "Status refused" and "(instance c0ffee00)" in notice.message
        assert "container" not in notice.message and " s " not in notice.message  # no claim, no promised wait

        copy = workspace_dir(root, "claude") / "CR-001.md"
        copy.write_text(copy.read_text(encoding="utf-8") + "\nwork in progress\n", encoding="utf-8")
        before = tree_hash(root)
        out = await ops.checkin("CR-001", "claude")
        assert out.status == "identity-locked" and out.workspace_intact is True
        assert tree_hash(root) == before

        copy.unlink()
        before = tree_hash(root)
        out = await ops.repair("CR-001", "claude")
        assert out.status == "identity-locked"
        assert out.actions[0].startswith("copied ") and out.actions[1].startswith("checkin as claude failed: IDENTITY")
        assert out.actions[2].startswith("checked .claude/users/claude/workspace/CR-001.md: byte-identical")
        assert out.actions[3].endswith("again: the files are as they were")
        assert tree_hash(root) == before
        assert (await ops.status("CR-001", "lead")).status == "ok"  # other identities are not locked


# --- input checks and a dead link -----------------------------------------------------------------


@pytest.mark.parametrize("doc_id", ["../CR-001", "CR-001/../../x", "cr-001", "CR 001", "", "CR", "CR-001\n"])
async def test_bad_document_ids_are_refused_before_any_call(tmp_path, doc_id):
    ops = QmsOps(McpLink("http://127.0.0.1:9/sse"), tmp_path)
    for call in (ops.checkout, ops.checkin, ops.status, ops.repair):
        with pytest.raises(InvalidDocumentId):
            await call(doc_id, "claude")


async def test_bad_agent_ids_are_refused_before_any_call(tmp_path):
    ops = QmsOps(McpLink("http://127.0.0.1:9/sse"), tmp_path)
    for agent in ("Claude", "../lead", "a b", "", "claude\n"):
        with pytest.raises(InvalidAgentId):
            await ops.checkin("CR-001", agent)
        with pytest.raises(InvalidAgentId):
            await ops.inbox(agent)


async def test_link_down_is_an_error_outcome_and_the_copy_is_checked(sample_project):
    ops = QmsOps(McpLink("http://127.0.0.1:9/sse"), sample_project)
    out = await ops.checkin("CR-001", "claude")
    assert out.status == "error" and out.reason.startswith("MCP link down")
    assert out.workspace_intact is True


def test_draft_path_follows_the_layout(tmp_path):
    qms = tmp_path / "QMS"
    for rel in ("SOP/SOP-001-draft.md", "CR/CR-005/CR-005-draft.md", "CR/CR-005/CR-005-VAR-001-draft.md",
                "INV/INV-002/INV-002-TP-001-draft.md", "SDLC-FLOW/SDLC-FLOW-RS-draft.md",
                "SDLC-CQ/SDLC-CQ-RTM-draft.md",
                "TEMPLATE/TEMPLATE-CR-draft.md", "CR/CR-001/CR-001-TP-001-ER-001-draft.md"):
        (qms / rel).parent.mkdir(parents=True, exist_ok=True)
        (qms / rel).write_text("x")
    (qms / ".meta").mkdir()
    (qms / ".meta" / "sdlc_namespaces.json").write_text('{"CQ": {"path": "SDLC-CQ"}}')
    assert draft_path(tmp_path, "SOP-001", "SOP") == qms / "SOP/SOP-001-draft.md"
    assert draft_path(tmp_path, "CR-005", "CR") == qms / "CR/CR-005/CR-005-draft.md"
    assert draft_path(tmp_path, "CR-005-VAR-001", "VAR") == qms / "CR/CR-005/CR-005-VAR-001-draft.md"
    assert draft_path(tmp_path, "INV-002-TP-001", "TP") == qms / "INV/INV-002/INV-002-TP-001-draft.md"
    assert draft_path(tmp_path, "SDLC-FLOW-RS", "FLOW-RS") == qms / "SDLC-FLOW/SDLC-FLOW-RS-draft.md"
    assert draft_path(tmp_path, "SDLC-CQ-RTM", "CQ-RTM") == qms / "SDLC-CQ/SDLC-CQ-RTM-draft.md"
    assert draft_path(tmp_path, "TEMPLATE-CR", "TEMPLATE") == qms / "TEMPLATE/TEMPLATE-CR-draft.md"
    assert draft_path(tmp_path, "CR-001-TP-001-ER-001", "TP") == qms / "CR/CR-001/CR-001-TP-001-ER-001-draft.md"
    assert draft_path(tmp_path, "CR-404", "CR") is None


# --- only a regular file in the real workspace folder is checked in (issue 11, item 5) ------------


def _unsafe_entries(root: Path) -> list[tuple[str, str, str]]:
    """Make each kind of hostile workspace entry in turn: (doc, setup name, expected reason part)."""
    return [("SOP-001", "symlink to a host file", "is a symlink"),
            ("CR-001", "symlink over the copy", "is a symlink"),
            ("CR-001", "directory", "is a directory"),
            ("CR-001", "fifo", "is a fifo"),
            ("CR-001", "hard link", "is a hard link"),
            ("CR-001", "symlinked workspace folder", ".claude/users/claude/workspace is a symlink")]


def _make(root: Path, doc: str, kind: str, outside: Path) -> None:
    ws = workspace_dir(root, "claude")
    target = ws / f"{doc}.md"
    if kind != "symlink to a host file" and kind != "symlinked workspace folder":
        target.unlink()
    if kind == "symlink to a host file":
        target.symlink_to("/etc/passwd")
    elif kind == "symlink over the copy":
        target.symlink_to(outside)
    elif kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "hard link":
        os.link(outside, target)
    else:
        elsewhere = root.parent / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / f"{doc}.md").write_bytes(outside.read_bytes())
        ws.rename(root.parent / "real-workspace")
        ws.symlink_to(elsewhere)


async def test_checkin_and_repair_refuse_anything_but_a_regular_file(server, sample_project, tmp_path):
    root = sample_project
    outside = tmp_path / "host-secret.md"
    outside.write_bytes(b"---\ntitle: host\n---\n\nroot:x:0:0:host file\n")
    pristine = tmp_path / "pristine"
    import shutil

    shutil.copytree(root, pristine, symlinks=True)
    async with connected(server.url, root) as ops:
        for doc, kind, expected in _unsafe_entries(root):
            shutil.rmtree(root)
            shutil.copytree(pristine, root, symlinks=True)
            _make(root, doc, kind, outside)
            before = tree_hash(root)
            with anyio.fail_after(10):  # a fifo must never block the read
                out = await ops.checkin(doc, "claude")
            assert out.status == "refused", (kind, out)
            assert expected in out.reason and "nothing was sent to the server" in out.reason or \
                "only through real folders" in out.reason, (kind, out.reason)
            assert out.one_line().startswith(f"Checkin refused: {doc} for claude: ")
            assert tree_hash(root) == before, kind
            assert not any(e.method == "tools/call" and "qms_checkin" in (e.payload or "")
                           for e in ops.link.stream.snapshot()), kind
            if doc == "CR-001":  # repair: the target is there (or its folder is a link): refused, nothing changed
                out = await ops.repair(doc, "claude")
                assert out.status == "refused", (kind, out)
                assert tree_hash(root) == before, kind


# --- a lost reply is read back from the files (issue 11, item 2) -----------------------------------


@pytest.fixture
def faults(tmp_path, monkeypatch):
    path = tmp_path / "faults.json"
    monkeypatch.setenv(FAULTS_ENV, str(path))
    return path


async def _checkin_with_fault(server, root: Path, faults: Path, fault: dict, *, kill: bool, call_timeout: float = 60):
    copy = workspace_dir(root, "claude") / "CR-001.md"
    copy.write_bytes(copy.read_bytes() + b"\nthe agent's edit\n")
    edited = copy.read_bytes()
    faults.write_text(json.dumps(fault))
    async with connected(server.url, root, call_timeout=call_timeout, backoff=(5, 5)) as ops:
        async with anyio.create_task_group() as tg:
            result: list = []

            async def checkin() -> None:
                result.append(await ops.checkin("CR-001", "claude"))

            tg.start_soon(checkin)
            if kill:
                with anyio.fail_after(20):
                    while not faults.with_name("faults.json.stalled").exists():
                        await anyio.sleep(0.01)
                server.process.kill()
    return result[0], edited


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_killed_after_the_checkin_is_reported_checked_in(sample_project, devserver_factory, transport,
                                                                       faults):
    server = devserver_factory(sample_project, transport=transport)
    out, edited = await _checkin_with_fault(server, sample_project, faults, {"command": "checkin", "when": "after"},
                                            kill=True)
    assert (out.status, out.reply_lost) == ("ok", True), out
    assert out.notice().title == "Checked in"
    assert not (workspace_dir(sample_project, "claude") / "CR-001.md").exists()
    assert b"the agent's edit" in draft_path(sample_project, "CR-001", "CR").read_bytes()
    assert meta(sample_project, "CR-001")["checked_out"] is False


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_killed_before_the_checkin_is_reported_not_checked_in(sample_project, devserver_factory,
                                                                            transport, faults):
    server = devserver_factory(sample_project, transport=transport)
    out, edited = await _checkin_with_fault(server, sample_project, faults, {"command": "checkin", "when": "before"},
                                            kill=True)
    assert (out.status, out.reply_lost, out.workspace_intact) == ("error", True, True), out
    assert out.reason.startswith("not checked in: the reply was lost and the files show no checkin")
    assert out.notice().title == "Checkin failed" and "check CR-001 in again" in out.notice().message
    assert (workspace_dir(sample_project, "claude") / "CR-001.md").read_bytes() == edited
    assert meta(sample_project, "CR-001")["checked_out"] is True


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_stalled_checkin_is_unknown_and_may_complete_later(sample_project, devserver_factory, transport,
                                                                   faults):
    server = devserver_factory(sample_project, transport=transport)
    out, edited = await _checkin_with_fault(server, sample_project, faults,
                                            {"command": "checkin", "when": "before", "stall_s": 1.5},
                                            kill=False, call_timeout=0.3)
    assert (out.status, out.reply_lost, out.workspace_intact) == ("unknown", True, True), out
    notice = out.notice()
    assert notice.title == "Checkin outcome unknown" and "may still complete it" in notice.message
    assert "`qms-panel status`" in notice.message
    with anyio.fail_after(20):  # and it does: the server finishes the checkin after its stall
        while meta(sample_project, "CR-001")["checked_out"]:
            await anyio.sleep(0.05)
    assert b"the agent's edit" in draft_path(sample_project, "CR-001", "CR").read_bytes()


# --- checkout never follows or overwrites what is at its target (issue 11, item 1) ---------------


async def test_checkout_refuses_a_link_at_its_target_and_force_moves_the_link_itself(server, sample_project,
                                                                                      tmp_path):
    root = sample_project
    host = tmp_path / "host-file"
    host.write_bytes(b"host bytes\n")
    target = workspace_dir(root, "claude") / "CR-002.md"  # CR-002 is checked in
    target.symlink_to(host)
    async with connected(server.url, root) as ops:
        before = tree_hash(root)
        out = await ops.checkout("CR-002", "claude")
        assert out.status == "refused" and "exists while CR-002 is checked in" in out.reason
        assert "; it is a symlink)" in out.reason and "--force" in out.reason
        assert tree_hash(root) == before
        out = await ops.checkout("CR-002", "claude", force=True)
        assert out.ok, out
        assert out.displaced is not None and out.displaced.is_symlink() and os.readlink(out.displaced) == str(host)
        assert out.actions[0].startswith("moved .claude/users/claude/workspace/CR-002.md (")
        assert host.read_bytes() == b"host bytes\n"  # the server wrote a fresh copy, not through the link
        assert target.is_file() and not target.is_symlink()
        assert meta(root, "CR-002")["checked_out"] is True


async def test_file_work_runs_off_the_event_loop(server, sample_project, monkeypatch):
    """Reading and hashing the copy, .meta and drafts happen in a worker thread, never on the loop."""
    import threading

    import core.qms_ops as qms_ops

    threads: set[str] = set()
    for name in ("read_copy", "find_meta", "draft_path"):
        real = getattr(qms_ops, name)

        def spy(*args, _real=real, **kwargs):
            threads.add(threading.current_thread().name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(qms_ops, name, spy)
    async with connected(server.url, sample_project) as ops:
        (workspace_dir(sample_project, "claude") / "CR-001.md").unlink()
        assert (await ops.repair("CR-001", "claude")).ok
        assert (await ops.checkout("CR-001", "claude")).ok
        assert (await ops.checkin("CR-001", "claude")).ok
    assert threads and threading.main_thread().name not in threads, threads


def test_checkout_warning_says_a_checkout_in_review_withdraws_it_or_is_refused(sample_project):
    from core.qms_ops import checkout_warning

    assert checkout_warning(sample_project, "CR-003", "claude").startswith(  # claude's, IN_PRE_REVIEW
        "CR-003 is IN_PRE_REVIEW: checking it out withdraws it from pre-review")
    assert checkout_warning(sample_project, "CR-003", "lead") == (
        "CR-003 is IN_PRE_REVIEW, owned by claude: the server refuses a checkout by anyone but its owner during its "
        "pre-review.")
    assert checkout_warning(sample_project, "CR-002", "lead") is None  # a draft: nothing beyond the checkout
    assert checkout_warning(sample_project, "CR-404", "lead") is None  # no metadata: the server says what it finds
