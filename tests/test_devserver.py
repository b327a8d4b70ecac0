"""The QMS MCP dev server over real HTTP with the SDK client, on both transports; and its store."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from core.devserver.sample import init_project
from core.devserver.server import IdentityLocks, IdentityRefused
from core.devserver.store import QmsStore
from core.errors import ProjectError
from support.devserver import DevServer

TOOLS = {"qms_inbox", "qms_workspace", "qms_status", "qms_read", "qms_history", "qms_create",
         "qms_checkout", "qms_checkin"}
TRANSPORTS = ["sse", "streamable-http"]


@asynccontextmanager
async def connect(server: DevServer, headers: dict[str, str] | None = None):
    """An initialized SDK session to ``server`` (over its transport), sending ``headers`` on every request."""
    if server.transport == "sse":
        transport = sse_client(server.url, headers=headers)
    else:
        transport = streamable_http_client(server.url, http_client=create_mcp_http_client(headers=headers))
    async with transport as streams, ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments) -> tuple[str, bool]:
    result = await session.call_tool(tool, arguments)
    return result.content[0].text, bool(result.isError)


def meta(root: Path, doc_id: str, doc_type: str = "CR") -> dict:
    return json.loads((root / "QMS" / ".meta" / doc_type / f"{doc_id}.json").read_text())


def audit(root: Path, doc_id: str, doc_type: str = "CR") -> list[dict]:
    return [json.loads(line) for line in (root / "QMS" / ".audit" / doc_type / f"{doc_id}.jsonl").read_text().splitlines()]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=TRANSPORTS)
def served(request, tmp_path_factory):
    """One dev server per transport on its own sample project, shared by the tests that leave files as found.

    Streamable HTTP binds 0.0.0.0, as pipe-dream's hub runs it (containers come in via host.docker.internal).
    """
    root = tmp_path_factory.mktemp(request.param) / "pipe-dream"
    init_project(root)
    host = "0.0.0.0" if request.param == "streamable-http" else "127.0.0.1"
    server = DevServer(root, transport=request.param, host=host, log_path=root.parent / "devserver.log")
    server.start()
    yield server
    server.stop()


async def test_lists_the_tools_with_their_parameters(served):
    assert served.url == f"http://127.0.0.1:{served.port}/{'sse' if served.transport == 'sse' else 'mcp'}"
    with anyio.fail_after(30):
        async with connect(served) as session:
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    assert tools["qms_checkout"].inputSchema["required"] == ["doc_id", "user"]
    assert tools["qms_read"].inputSchema["properties"]["draft"]["default"] is False
    assert tools["qms_create"].inputSchema["required"] == ["doc_type", "title", "user"]


async def test_checkout_then_checkin(served):
    root = served.project_root
    workspace = root / ".claude/users/lead/workspace/CR-002.md"
    with anyio.fail_after(30):
        async with connect(served) as session:
            text, error = await call(session, "qms_checkout", doc_id="CR-002", user="lead")
            assert (text, error) == ("Checked out: CR-002\nWorkspace: .claude/users/lead/workspace/CR-002.md", False)
            assert workspace.is_file() and "Pin the Textual version" in workspace.read_text()
            assert meta(root, "CR-002")["checked_out"] is True
            assert meta(root, "CR-002")["checked_out_date"] == str(date.today())
            last = audit(root, "CR-002")[-1]
            assert (last["event"], last["user"], last["version"]) == ("CHECKOUT", "lead", "0.1")
            assert last["ts"].endswith("+00:00") and len(last["ts"]) == 25

            workspace.write_text(workspace.read_text() + "\nEdited in the workspace.\n")
            text, error = await call(session, "qms_checkin", doc_id="CR-002", user="lead")
            assert (text, error) == ("Checked in: CR-002 (v0.1)", False)
    assert not workspace.exists()
    assert meta(root, "CR-002")["checked_out"] is False and meta(root, "CR-002")["responsible_user"] == "lead"
    assert audit(root, "CR-002")[-1]["event"] == "CHECKIN"
    assert "Edited in the workspace." in (root / "QMS/CR/CR-002/CR-002-draft.md").read_text()


async def test_refusals_come_back_as_text_and_change_nothing(served):
    root = served.project_root
    stray = root / ".claude/users/lead/workspace/CR-003.md"
    stray.write_text("---\ntitle: not lead's\n---\n\nbody\n")
    before = snapshot(root)
    try:
        with anyio.fail_after(30):
            async with connect(served) as session:
                assert await call(session, "qms_checkout", doc_id="CR-001", user="claude") == (
                    "You already have CR-001 checked out", False)
                assert await call(session, "qms_checkout", doc_id="CR-001", user="lead") == (
                    "Error: CR-001 is checked out by claude", False)
                assert await call(session, "qms_checkout", doc_id="CR-404", user="claude") == (
                    "Error: Document not found: CR-404", False)
                text, error = await call(session, "qms_checkin", doc_id="CR-002", user="claude")
                assert not error and text.splitlines() == [
                    "Error: CR-002 not found in your workspace.", "",
                    "Your workspace contains documents you have checked out for editing.",
                    "To check out a document: qms --user claude checkout CR-002",
                    "To see your workspace: qms --user claude workspace"]
                text, error = await call(session, "qms_checkin", doc_id="CR-003", user="lead")
                assert not error and text.splitlines() == [
                    "Permission Denied: 'checkin' command", "",
                    "You (lead) are not the responsible user for this document.",
                    "Responsible user: claude", "",
                    "Only the document owner can perform this action."]
                text, error = await call(session, "qms_checkout", doc_id="CR-002", user="qa")
                assert not error and text.splitlines()[:4] == [
                    "Permission Denied: 'checkout' command", "", "Your role: quality (qa)",
                    "Required role(s): initiator"]
                text, error = await call(session, "qms_workspace", user="mallory")
                assert not error and text.startswith("Error: User 'mallory' not found.\n\nTo use qms-cli")
                for bad in ("../../etc/passwd", "CR-001/../../x", "cr-001", "CR-001.md"):
                    assert await call(session, "qms_checkout", doc_id=bad, user="claude") == (
                        f"Error: Document not found: {bad}", False)
                text, _ = await call(session, "qms_read", doc_id="SOP-001", user="claude", version="../../../x")
                assert text == "Error: Document not found: SOP-001"
                text, _ = await call(session, "qms_workspace", user="../lead")
                assert text.startswith("Error: User '../lead' not found.")
        assert snapshot(root) == before
    finally:
        stray.unlink()


async def test_read_status_history_inbox_and_create(served):
    with anyio.fail_after(30):
        async with connect(served) as session:
            text, _ = await call(session, "qms_inbox", user="qa")
            assert text.splitlines()[:6] == ["Inbox for qa:", "-" * 60, "  [REVIEW] CR-003", "    Workflow: PRE_REVIEW",
                                              "    From: claude", f"    Date: {date.today()}"]
            assert (await call(session, "qms_inbox", user="lead"))[0] == "Inbox is empty"
            text, _ = await call(session, "qms_status", doc_id="SOP-001", user="qa")
            assert "Status: EFFECTIVE\nLocation: effective\nType: SOP" in text
            text, _ = await call(session, "qms_read", doc_id="SOP-002", user="qa")
            assert text.startswith("---\ntitle: Change Control\n")
            text, _ = await call(session, "qms_history", doc_id="CR-001", user="claude")
            assert text.splitlines()[0:2] == ["Audit History: CR-001", "=" * 70]
            assert text.splitlines()[-1].endswith("] CHECKOUT by claude - v0.1")
            text, _ = await call(session, "qms_create", doc_type="INV", title="Stale checkout", user="claude")
    assert text == ("Created: INV-001 (v0.1, DRAFT)\nLocation: QMS/INV/INV-001/INV-001-draft.md\n"
                    "Workspace: .claude/users/claude/workspace/INV-001.md\nResponsible User: claude")
    root = served.project_root
    assert meta(root, "INV-001", "INV")["checked_out"] is True
    assert [e["event"] for e in audit(root, "INV-001", "INV")] == ["CREATE"]


def test_bad_host_header_gets_421(served):
    """Contract 1.3: Host must be an allowed name with a port; a bad Origin gets 403."""
    port = served.port
    # SSE: the stream (GET /sse) and the POSTs (/messages/); streamable HTTP: POST /mcp.
    requests = [("GET", "/sse"), ("POST", "/messages/?session_id=0")] if served.transport == "sse" else [("POST", "/mcp")]
    # One connection per request: after a refused GET /sse the SDK raises and uvicorn drops the connection.
    json_body = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                 "Connection": "close"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for method, path in requests:
            for bad in ("localhost", "evil.example:80", f"10.0.0.5:{port}"):
                reply = client.request(method, path, headers={**json_body, "Host": bad}, content="{}")
                assert (reply.status_code, reply.text) == (421, "Invalid Host header"), (method, path, bad)
            reply = client.request(method, path, headers={**json_body, "Origin": "http://evil.example"}, content="{}")
            assert reply.status_code == 403, (method, path)
        with client.stream("GET", requests[0][1] if served.transport == "sse" else "/mcp",
                           headers={"Host": f"host.docker.internal:{port}", "Accept": "text/event-stream"}) as reply:
            assert reply.status_code not in (421, 403)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_identity_mismatch_lock_and_restart(sample_project, devserver_factory, transport):
    server = devserver_factory(sample_project, transport=transport)
    container = {"X-QMS-Identity": "claude", "X-QMS-Instance": "0123456789abcdef"}
    with anyio.fail_after(60):
        async with connect(server, container) as session:
            text, error = await call(session, "qms_workspace", user="qa")
            assert error and text.startswith(
                "Error executing tool qms_workspace: IDENTITY MISMATCH: Your authenticated identity is 'claude' "
                "but you called with user='qa'")
            text, error = await call(session, "qms_workspace", user=" ")
            assert error and text.startswith("Error executing tool qms_workspace: IDENTITY REQUIRED:")
            assert (await call(session, "qms_workspace", user="claude"))[1] is False  # enforced: locks claude

        async with connect(server) as host_session:
            text, error = await call(host_session, "qms_checkin", doc_id="CR-001", user="claude")
            assert error and text.startswith(
                "Error executing tool qms_checkin: IDENTITY LOCKED: 'claude' is active in enforced mode "
                "(container instance 01234567).")
            assert (await call(host_session, "qms_inbox", user="qa"))[1] is False  # other identities pass

        async with connect(server, {**container, "X-QMS-Instance": "fedcba9876543210"}) as twin:
            text, error = await call(twin, "qms_workspace", user="claude")
            assert error and text.startswith(
                "Error executing tool qms_workspace: IDENTITY LOCKED: 'claude' is already registered to "
                "container instance 01234567.")

    assert meta(sample_project, "CR-001")["checked_out"] is True  # the refused checkin changed nothing

    if transport == "sse":  # a restart does not depend on the transport: once is enough
        server.restart()  # locks live in memory only
        with anyio.fail_after(60):
            async with connect(server) as host_session:
                assert await call(host_session, "qms_workspace", user="claude") == (
                    "Workspace for claude:\n" + "-" * 60 + "\n  CR-001\n    Version: ?\n    Status: ?", False)


async def test_identity_lock_expires_after_the_ttl(sample_project, devserver_factory):
    server = devserver_factory(sample_project, identity_ttl=0.5)
    with anyio.fail_after(30):
        async with connect(server, {"X-QMS-Identity": "claude", "X-QMS-Instance": "c0ffee00"}) as session:
            assert (await call(session, "qms_inbox", user="claude"))[1] is False
        await anyio.sleep(1.0)  # longer than the TTL: the lock has expired whatever the timing
        async with connect(server) as host_session:
            assert (await call(host_session, "qms_inbox", user="claude")) == ("Inbox is empty", False)


# --- the store in process: the [latest] rules and edge cases ------------------------------------


@pytest.fixture
def store(sample_project) -> QmsStore:
    return QmsStore(sample_project)


def test_checkout_of_an_effective_document_makes_draft_n1(store):
    result = store.checkout("SOP-001", "claude")
    assert result.text == ("Created draft v1.1 from effective v1.0\nChecked out: SOP-001\n"
                           "Workspace: .claude/users/claude/workspace/SOP-001.md")
    root = store.root
    assert (root / "QMS/SOP/SOP-001-draft.md").is_file() and (root / "QMS/SOP/SOP-001.md").is_file()
    m = meta(root, "SOP-001", "SOP")
    assert (m["version"], m["status"], m["effective_version"], m["responsible_user"]) == ("1.1", "DRAFT", "1.0", "claude")
    assert audit(root, "SOP-001", "SOP")[-1]["from_version"] == "1.0"
    assert list((root / "QMS/.archive").rglob("*.md")) == []  # [latest]: no archive on checkout


def test_owner_checkout_from_review_auto_withdraws(store):
    root = store.root
    assert store.checkout("CR-003", "lead").text.splitlines() == [
        "Error: CR-003 is in IN_PRE_REVIEW and owned by claude",
        "Only the document owner can checkout from an active workflow"]
    result = store.checkout("CR-003", "claude")
    assert result.ok and result.text.splitlines()[0] == "Auto-withdrawn: IN_PRE_REVIEW -> DRAFT"
    assert meta(root, "CR-003")["status"] == "DRAFT" and meta(root, "CR-003")["pending_assignees"] == []
    assert [e["event"] for e in audit(root, "CR-003")][-2:] == ["WITHDRAW", "CHECKOUT"]
    assert list((root / ".claude/users/qa/inbox").iterdir()) == []


def test_closed_documents_refuse_checkout_and_execution_bumps(store):
    ref = store.doc_ref("CR-002")
    m = meta(store.root, "CR-002")
    store.write_meta(ref, {**m, "status": "CLOSED"})
    assert store.checkout("CR-002", "lead").text == "Error: CR-002 is CLOSED and cannot be checked out."
    store.write_meta(ref, {**m, "status": "IN_EXECUTION", "version": "1.0"})
    assert store.checkout("CR-002", "lead").text.splitlines()[0] == "Execution checkout: creating v1.1 (current: v1.0)"
    assert store.checkin("CR-002", "lead").text == "Archived: v1.0\nChecked in: CR-002 (v1.1)"
    assert (store.root / "QMS/.archive/CR/CR-002/CR-002-v1.0.md").is_file()


def test_ids_resolve_to_types_and_folders(store):
    cases = {
        "SOP-001": ("SOP", "SOP"), "TEMPLATE-CR": ("TEMPLATE", "TEMPLATE"), "CR-001": ("CR", "CR/CR-001"),
        "CR-001-TP-001-ER-002": ("ER", "CR/CR-001"), "INV-004-VAR-001": ("VAR", "INV/INV-004"),
        "CR-091-ADD-001-VR-001": ("VR", "CR/CR-091"), "SDLC-QMS-RS": ("QMS-RS", "SDLC-QMS"),
    }
    for doc_id, (doc_type, folder) in cases.items():
        ref = store.doc_ref(doc_id)
        assert (ref.doc_type, ref.folder) == (doc_type, folder), doc_id
    for bad in ("", "..", "../CR-001", "CR-001/x", "SOP-1a", "SDLC-NOPE-RS", "VAR-001", "CR-001-FOO-001"):
        assert store.doc_ref(bad) is None, bad


def test_create_child_and_template_documents(store):
    assert store.create("TP", "Test plan", "claude", parent="CR-002").text.splitlines()[0] == (
        "Created: CR-002-TP-001 (v0.1, DRAFT)")
    assert store.create("VAR", "Variance", "claude").text.startswith("Error: VAR documents require --parent flag")
    assert store.create("TEMPLATE", "SOP template", "lead", name="sop").text.splitlines()[0] == (
        "Created: TEMPLATE-SOP (v0.1, DRAFT)")
    assert store.create("XYZ", "x", "lead").text.startswith("Error: Unknown document type 'XYZ'")
    assert store.create("CR", "No", "qa").text.startswith("Permission Denied: 'create' command")
    body = (store.root / "QMS/CR/CR-002/CR-002-TP-001-draft.md").read_text()
    assert body.startswith("---\ntitle: Test plan\n---\n\n# CR-002-TP-001: Test plan")
    cr = store.create("CR", "From the template", "claude")
    assert (store.root / "QMS/CR/CR-004/CR-004-draft.md").read_text().startswith(
        "---\ntitle: From the template\nrevision_summary: Initial draft\n---\n\n# CR-004: From the template"), cr.text


def test_meta_writes_leave_no_temp_files(store):
    store.checkin("CR-001", "claude")
    assert [p.name for p in (store.root / "QMS/.meta/CR").iterdir() if p.suffix != ".json"] == []


def test_identity_lock_expiry_is_by_ttl(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("core.devserver.server.time.monotonic", lambda: clock[0])
    locks = IdentityLocks(ttl=90)
    assert locks.resolve("qa", "qa", "instance-a") == "qa"
    clock[0] += 89
    with pytest.raises(IdentityRefused, match="IDENTITY LOCKED: 'qa' is active in enforced mode"):
        locks.resolve("qa", None)
    clock[0] += 91  # 91 s after the last enforced call
    assert locks.resolve("qa", None) == "qa"
    assert locks.resolve("qa", "qa", "instance-b") == "qa"  # an expired lock can be claimed again


def test_init_project_refuses_an_existing_qms(sample_project):
    with pytest.raises(ProjectError, match="already exists"):
        init_project(sample_project)
