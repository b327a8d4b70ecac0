"""The app driven by keys over real core services: the dev server, the real engine, real files.

Each test starts the app from ``build_services`` exactly as ``qms-panel`` does, on the sample
project and a dev server on a free port, with container names under the test's unique prefix.
Waits are bounded (anyio.fail_after); nothing is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from core.containers import ContainerManager
from core.errors import ProjectError
from core.qms_board import QmsBoard
from core.qms_watch import QmsEvent, QmsWatcher
from core.services import build_services
from core.settings import Settings
from support.docker_env import TEST_LABEL
from tui.app import QmsPanel, make_app

SIZE = (160, 46)
LABELS = {TEST_LABEL: "1"}

pytestmark = pytest.mark.docker


def settings_for(root: Path, url: str, image: str, prefix: str) -> Settings:
    return Settings(project_root=root, agents=["claude"], image=image, mcp_url=url, container_prefix=prefix)


def meta(root: Path, doc_id: str) -> dict:
    return json.loads((root / "QMS" / ".meta" / doc_id.split("-")[0] / f"{doc_id}.json").read_text())


async def until(pilot, predicate, what: str, timeout: float = 30.0) -> None:
    """Let the app run until ``predicate()`` holds (fail with ``what`` after ``timeout`` seconds)."""
    try:
        with anyio.fail_after(timeout):
            while not predicate():
                await pilot.pause(0.05)
    except TimeoutError:
        notices = "; ".join(f"{t}: {m}" for _, t, m in getattr(pilot.app, "notices", ()))
        pytest.fail(f"timed out waiting for {what} (notifications: {notices or 'none'})")


def stream_text(app: QmsPanel, source: str | None = None) -> list[str]:
    return [f"{line.agent} {line.summary}" for line in app.main.stream.view.lines()
            if source is None or line.source == source]


def notifications(app: QmsPanel) -> list[str]:
    return [f"{title}: {message}" for _, title, message in app.notices]


@pytest.fixture
def panel(sample_project, devserver_factory, docker_client, test_image, unique_prefix):
    """(settings, services, server): the real bundle for the sample project and a dev server."""
    server = devserver_factory(sample_project)
    settings = settings_for(sample_project, server.url, test_image, unique_prefix)
    services = build_services(settings, extra_labels=LABELS)
    yield settings, services, server
    services.close()


async def ready(pilot) -> None:
    app: QmsPanel = pilot.app
    await until(pilot, lambda: app.main.engine.up and app.main.scanned, "the engine and the first scan")
    await until(pilot, lambda: app.main.link is not None and app.main.link.status == "connected", "the MCP link")


async def test_r_restarts_the_selected_container(panel):
    settings, services, _ = panel
    ContainerManager(settings, extra_labels=LABELS).launch("claude", command=["sleep", "3600"])
    app = make_app(settings, services)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: app.main.containers_pane.selected_agent == "claude", "claude's row")
        before = app.main.container_row("claude")
        assert before.state == "running"

        await pilot.press("r")
        await until(pilot, lambda: "claude" in app.main.busy, "the restart to show in the row")
        await until(pilot, lambda: app.main.container_row("claude").restart_count > before.restart_count,
                    "the restart count to go up")
        await until(pilot, lambda: "claude" not in app.main.busy, "the restart to finish")

        await until(pilot, lambda: app.main.container_row("claude").state == "running"
                    and app.main.container_row("claude").started_at > before.started_at, "the row to run again")
        await until(pilot, lambda: any("Restarted" in n for n in notifications(app)), "the result notification")
        name = settings.container_name("claude")
        await until(pilot, lambda: any(f"start {name}" in t for t in stream_text(app, "docker")),
                    "the Docker events in the stream")
        assert any(f"die {name}" in t for t in stream_text(app, "docker"))


async def test_c_checks_in_a_stuck_document_on_disk(panel):
    settings, services, _ = panel
    root = settings.project_root
    copy = root / ".claude" / "users" / "claude" / "workspace" / "CR-001.md"
    assert meta(root, "CR-001")["checked_out"] and copy.exists()
    app = make_app(settings, services)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        # claude has no container: the checkout is orphaned, the case a manual checkin is for
        await until(pilot, lambda: any(r.doc_id == "CR-001" and r.state == "orphaned" for r in app.main.checkouts),
                    "CR-001 to show as orphaned")
        app.main.workspace.focus()
        await until(pilot, lambda: app.main.workspace.selected is not None, "a selected document")
        while app.main.workspace.selected.doc_id != "CR-001":
            await pilot.press("down")

        await pilot.press("c")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", "the confirmation")
        await pilot.press(*"left by a dead agent", "enter")  # the reason field has the focus

        await until(pilot, lambda: not meta(root, "CR-001")["checked_out"], "CR-001 checked in on disk")
        assert not copy.exists()
        await until(pilot, lambda: not any(r.doc_id == "CR-001" for r in app.main.checkouts),
                    "CR-001 to leave the workspace pane")
        await until(pilot, lambda: any("Checked in" in n for n in notifications(app)), "the result notification")
        entries = services.actions.read(agent="claude").entries()
        assert [(e.action, e.doc_id, e.result, e.reason) for e in entries] == [
            ("checkin", "CR-001", "ok", "left by a dead agent")]
        await until(pilot, lambda: any("checkin" in t and "CR-001" in t for t in stream_text(app, "ops")),
                    "the operator's action in the stream")
        await until(pilot, lambda: any("claude CHECKIN CR-001" in t for t in stream_text(app, "qms")),
                    "the audit activity in the stream")
        mcp = stream_text(app, "mcp")
        assert any("tools/call qms_checkin" in t and "CR-001" in t for t in mcp)
        assert any("Checked in: CR-001" in t for t in mcp)


async def test_shift_r_repairs_a_missing_copy(panel):
    settings, services, _ = panel
    root = settings.project_root
    copy = root / ".claude" / "users" / "claude" / "workspace" / "CR-001.md"
    copy.unlink()
    app = make_app(settings, services)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: any(r.doc_id == "CR-001" and r.state == "missing-copy"
                                       for r in app.main.checkouts), "CR-001 to show a missing copy")
        app.main.workspace.focus()
        await until(pilot, lambda: app.main.workspace.selected is not None, "a selected document")
        assert app.main.workspace.selected.doc_id == "CR-001"  # missing copies sort first

        await pilot.press("R")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", "the confirmation")
        await pilot.press("enter")

        await until(pilot, lambda: not meta(root, "CR-001")["checked_out"], "CR-001 repaired and checked in")
        assert not copy.exists()
        await until(pilot, lambda: any("Repaired" in n for n in notifications(app)), "the result notification")
        assert any("tools/call qms_checkin" in t and "CR-001" in t for t in stream_text(app, "mcp"))


async def test_a_refused_checkin_shows_the_servers_reason(panel):
    settings, services, _ = panel
    root = settings.project_root
    copy = root / ".claude" / "users" / "claude" / "workspace" / "CR-001.md"
    before = copy.read_bytes()
    app = make_app(settings, services)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        row = next(r for r in app.main.checkouts if r.doc_id == "CR-001")
        app.operations.document("checkin", row.doc_id, "lead")  # lead is not CR-001's owner
        await until(pilot, lambda: any("refused" in n for n in notifications(app)), "the refusal")
        text = "\n".join(notifications(app))
        assert "not the responsible user" in text or "not found in your workspace" in text
        assert copy.read_bytes() == before and meta(root, "CR-001")["checked_out"]


async def test_the_link_goes_down_with_the_server_and_comes_back(panel):
    settings, services, server = panel
    app = make_app(settings, services)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        server.stop()
        await until(pilot, lambda: app.main.link.status == "down", "the link to go down")
        assert app.main.link_down  # the workspace pane says why checkin waits
        assert app.is_running
        await pilot.press("c")  # refused locally with a notification, not a crash
        server.start()
        await until(pilot, lambda: app.main.link.status == "connected", "the link to come back", timeout=60)
        assert not app.main.link_down
        assert any("link down" in t for t in stream_text(app, "mcp"))


CHATTY = ["sh", "-c", "trap 'exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"]


async def test_l_follows_the_log_and_s_stops_after_asking_then_starts(panel):
    settings, services, _ = panel
    ContainerManager(settings, extra_labels=LABELS).launch("claude", command=CHATTY)
    app = make_app(settings, services)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: app.main.containers_pane.selected_agent == "claude", "claude's row")

        await pilot.press("l")
        await until(pilot, lambda: type(app.screen).__name__ == "LogsScreen", "the logs screen")
        log = app.screen.query_one("Log")
        await until(pilot, lambda: log.line_count >= 3, "log lines")
        seen = log.line_count
        await until(pilot, lambda: log.line_count > seen, "new lines while following")
        assert log.lines[0].startswith("line ")
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ == "MainScreen", "back to the panel")
        await until(pilot, lambda: not [w for w in app.workers if w.group == "logs" and not w.is_finished],
                    "the log reader to stop")

        await pilot.press("s")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", "the stop confirmation")
        await pilot.press("enter")
        await until(pilot, lambda: app.main.container_row("claude").state == "exited", "the container to stop")
        await until(pilot, lambda: "claude" not in app.main.busy, "the stop to finish")
        await pilot.press("s")  # starting asks nothing
        await until(pilot, lambda: app.main.container_row("claude").state == "running", "the container to start")
        assert type(app.screen).__name__ == "MainScreen"


async def test_s_launches_an_agent_that_has_no_container(panel):
    settings, services, _ = panel
    app = make_app(settings, services)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: app.main.containers_pane.selected_agent == "claude", "claude's row")
        assert app.main.container_row("claude") is None
        await pilot.press("s")
        await until(pilot, lambda: app.main.container_row("claude") is not None
                    and app.main.container_row("claude").state == "running", "the launched container to run")
        await until(pilot, lambda: any(n.startswith("Launched") for n in notifications(app)), "the notification")
        assert app.main.container_row("claude").managed
        assert settings.container_name("claude") == app.main.container_row("claude").name


async def test_o_checks_out_for_the_selected_agent_and_p_a_run_the_checks(panel):
    settings, services, _ = panel
    root = settings.project_root
    ContainerManager(settings, extra_labels=LABELS).launch("claude", command=["sleep", "3600"])
    app = make_app(settings, services)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: app.main.containers_pane.selected_agent == "claude", "claude's row")

        await pilot.press("o")
        await until(pilot, lambda: type(app.screen).__name__ == "InputScreen", "the document id question")
        await pilot.press("x", "enter")  # not a document id: asked again
        assert type(app.screen).__name__ == "InputScreen"
        await pilot.press("backspace", *"CR-002", "enter")
        await until(pilot, lambda: meta(root, "CR-002")["checked_out"], "CR-002 checked out on disk")
        assert meta(root, "CR-002")["responsible_user"] == "claude"
        assert (root / ".claude" / "users" / "claude" / "workspace" / "CR-002.md").exists()
        await until(pilot, lambda: any(r.doc_id == "CR-002" and r.holder == "claude" for r in app.main.checkouts),
                    "CR-002 in the workspace pane")

        await until(pilot, lambda: not app.main.auditing and "claude" in app.main.audits, "the first audit")
        first = app.main.audited_at
        await pilot.press("a")
        await until(pilot, lambda: app.main.audited_at > first and not app.main.auditing, "the audit to run again")
        assert app.main.audits["claude"].audited

        await pilot.press("p")
        await until(pilot, lambda: any(t.startswith("Doctor") for _, t, _ in app.notices), "the doctor's result")
        assert "claude" in app.main.probes


DIES = ["sh", "-c", "sleep 0.3; exit 1"]


async def test_a_container_that_dies_at_once_shows_exited_every_time(panel):
    """The die race at panel level: Docker sends ``die`` before its list shows the container
    stopped; the row must end exited (never a stale running), launch after launch."""
    settings, services, _ = panel
    manager = ContainerManager(settings, extra_labels=LABELS)
    app = make_app(settings, services)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        for run in range(5):
            row = await anyio.to_thread.run_sync(lambda: manager.launch("claude", command=DIES))
            await until(pilot, lambda: (r := app.main.container_row("claude")) is not None and r.id == row.id
                        and r.state == "exited" and r.exit_code == 1, f"run {run}: the row to show the exit")
            await pilot.pause(0.5)  # the lists that follow the die must not bring "running" back
            shown = app.main.container_row("claude")
            assert shown.state == "exited", f"run {run}: {shown.state}"
            assert "exited (1)" in str(app.main.containers_pane.table.get_row("claude")[1])
            await anyio.to_thread.run_sync(lambda: manager.remove("claude"))
            await until(pilot, lambda: app.main.container_row("claude") is None, f"run {run}: the row to go")
        name = settings.container_name("claude")
        assert sum(f"die {name} (exit 1)" in t for t in stream_text(app, "docker")) == 5


class FailsOnce(QmsWatcher):
    """A real watcher that fails once its watches are up (as when a watched folder goes away)."""

    async def events(self) -> AsyncIterator[QmsEvent]:
        events = super().events()
        first = asyncio.ensure_future(anext(events))
        try:
            await self.wait_ready()
            raise ProjectError("the watcher failed (injected)")
        finally:
            first.cancel()
            with contextlib.suppress(BaseException):
                await first
            await events.aclose()
        yield  # an async generator, like the real one


async def test_the_workspace_pane_follows_a_checkout_after_its_watcher_failed_once(panel):
    """A project whose .claude/users appears after the panel opened, and whose watcher fails once:
    the feed starts a fresh watcher, which picks the new folder up; a checkout the real dev server
    makes afterwards reaches the Workspace pane."""
    settings, services, _ = panel
    root = settings.project_root
    shutil.rmtree(root / ".claude" / "users")
    made: list[QmsWatcher] = []

    def watcher() -> QmsWatcher:
        made.append((FailsOnce if not made else QmsWatcher)(root, agents=settings.agents))
        return made[-1]

    services.qms_board = QmsBoard(root, list(settings.agents), stuck_after=settings.stuck_after, now=services.now,
                                  watcher_factory=watcher)
    app = make_app(settings, services)
    app.feeds.first_retry = 0.1
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: any("injected" in n for n in notifications(app)), "the watcher's failure said")
        await until(pilot, lambda: len(made) >= 2 and app.main.scanned, "a fresh watcher and its scan")
        await ready(pilot)
        assert not any(r.doc_id == "CR-002" for r in app.main.checkouts)
        await until(pilot, lambda: "QMS watcher" not in app.main.feeds_down, "the feed up again")
        outcome = await services.ops.checkout("CR-002", "claude")  # the server makes .claude/users/claude/...
        assert outcome.ok, outcome.one_line()
        assert (root / ".claude" / "users" / "claude" / "workspace" / "CR-002.md").exists()
        await until(pilot, lambda: any(r.doc_id == "CR-002" and r.holder == "claude" for r in app.main.checkouts),
                    "CR-002 in the workspace pane")
        assert len(made) == 2  # the second watcher followed the new folder itself


async def test_an_agents_call_through_the_gateway_is_in_the_stream_and_its_row(sample_project, devserver_factory,
                                                                               gateway_factory, docker_client,
                                                                               test_image, unique_prefix):
    """A call made inside a real container, through a real gateway, reaches the panel over the
    gateway's feed: one stream line with the agent first, the agent's live columns, and the
    refusal of a call as another agent."""
    from support.gateway import call_body, container_post

    server = devserver_factory(sample_project, transport="streamable-http")
    gw = gateway_factory(sample_project, server.url)
    settings = Settings(project_root=sample_project, agents=["claude"], image=test_image, mcp_url=server.url,
                        container_prefix=unique_prefix, feed_listen=gw.feed_listen, state_dir=gw.state_dir)
    manager = ContainerManager(settings, client=docker_client, extra_labels=LABELS)
    row = manager.launch("claude", command=["sleep", "3600"])
    services = build_services(settings, extra_labels=LABELS)
    try:
        app = make_app(settings, services)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await until(pilot, lambda: app.main.gateway.state is not None, "the gateway's state over its feed")
            await asyncio.to_thread(container_post, manager, row.name, gw.port,
                                    call_body("qms_status", doc_id="CR-001", user="claude"))
            await until(pilot, lambda: "claude qms_status CR-001 -> ok" in " ".join(stream_text(app, "agents")),
                        "the call in the stream")
            calls = app.main.gateway.agents["claude"]
            assert calls.last_tool == "qms_status" and calls.calls_last_minute == 1 and not calls.failing
            await asyncio.to_thread(container_post, manager, row.name, gw.port, call_body("qms_inbox", 2, user="qa"))
            await until(pilot, lambda: app.main.gateway.agents["claude"].failing, "the refused call on the row")
            # the stream draws its lines in batches: its identity line may come a frame after the row
            await until(pilot, lambda: any(line.startswith("claude qms_inbox -> identity")
                                           for line in stream_text(app, "agents")), "the refused call in the stream")
            assert "gateway feed" not in app.main.feeds_down
    finally:
        services.close()
        manager.remove("claude", remove_volume=True)


async def test_a_waiting_agent_on_a_real_container_is_said_once_then_stopping_it_wins(panel):
    """Over the real bundle and a real running container: the agent's activity (as the gateway's
    activity board will hand it: real ActivityEvent and AgentActivity models, put into the real
    calls board's view while its telemetry receiver is another change) turns the row waiting and
    says it once; t refuses here (no terminal to hand over); the stopped container's state wins."""
    from core.gateway.calls_board import CallsUpdate
    from core.gateway.events import ActivityEvent, Who
    from core.telemetry.activity import ActivityView, AgentActivity

    settings, services, _ = panel
    row = ContainerManager(settings, extra_labels=LABELS).launch("claude", command=["sleep", "3600"])
    waits = AgentActivity(agent="claude", container=row.name, state="waiting", since=row.started_at,
                          waiting_tool="Bash(rm -rf build)", tokens=1200, cost_usd=0.05, per_minute=[0] * 29 + [1200])
    board_view = services.calls_board.view
    services.calls_board.view = lambda now=None: board_view(now).model_copy(
        update={"activity": ActivityView(agents={"claude": waits})})
    event = ActivityEvent(time=row.started_at, who=Who(peer="172.17.0.9", agent="claude", container=row.name),
                          source="hook", name="Notification", summary="Claude needs your permission to use Bash",
                          attributes={"notification_type": "permission_prompt"})
    app = make_app(settings, services)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: app.main.container_row("claude") is not None
                    and app.main.container_row("claude").state == "running", "claude's running row")
        for _ in range(2):
            app._calls(CallsUpdate.model_construct(view=services.calls_board.view(), event=event))
        pane = app.main.containers_pane
        await until(pilot, lambda: pane.has_class("-waiting"), "the row in the attention colour")
        asked = [n for n in notifications(app) if n.startswith("Permission asked")]
        assert asked == ["Permission asked: claude waits for permission: Bash(rm -rf build) (t opens its terminal)"]
        assert "claude Notification: Claude needs your permission to use Bash" in stream_text(app, "activity")

        await pilot.press("t")
        await until(pilot, lambda: any(n.startswith("Cannot attach here") for n in notifications(app)), "the refusal")

        await pilot.press("s")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", "the stop confirmation")
        await pilot.press("enter")
        await until(pilot, lambda: app.main.container_row("claude").state == "exited", "the container to stop")
        await until(pilot, lambda: not pane.has_class("-waiting"), "the container's state to win")
        await until(pilot, lambda: "claude" not in app.main.busy, "the stop to finish")
        assert pane._cells("claude", app.main.container_row("claude"))["STATE"].plain.startswith("exited")
