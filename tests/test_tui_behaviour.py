"""How the app behaves around its edges: the action table, the stream pane, failures, coalescing.

These run over the scene bundle (tests/support/tui_scenes.py) where a fake is the only way to
make the edge case happen on demand (a restart that fails, a watcher that cannot start); the
paths themselves run over real parts in tests/test_tui_pilot.py.
"""

from __future__ import annotations

import ast
import asyncio
import html
import importlib
import threading
import typing
from collections.abc import AsyncIterator
from datetime import timedelta
from enum import Enum
from pathlib import Path

import anyio
import pytest
from pydantic import BaseModel
from textual.app import App

from core.errors import ContainerNotFound, ProjectError, SettingsError
from core.notice import Notice
from core.qms_ops import OpOutcome
from support import tui_scenes as scenes
from tui.actions import ACTIONS, bindings, palette
from tui.checks import Coalesced
from tui.feeds import Feed, FeedRunner
from tui.screens.main import MainScreen
from tui.screens.payload import PayloadScreen
from tui.widgets.stream import StreamLine, StreamPane

TUI = Path(__file__).resolve().parent.parent / "tui"


until = scenes.until


# --- the action table -------------------------------------------------------------------------


def test_every_binding_has_a_unique_id_and_help():
    ids = [a.id for a in ACTIONS]
    assert len(ids) == len(set(ids))
    assert all(a.help and a.label for a in ACTIONS)
    assert all(b.id for b in bindings("main"))
    assert {b.key for b in bindings("main")} >= {"r", "s", "l", "c", "R", "o", "p", "a", "slash", "space",
                                                  "tab", "shift+tab", "question_mark", "q"}


def test_screens_take_their_bindings_from_the_table():
    for path in (TUI / "screens").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "BINDINGS" for t in node.targets):
                assert "bindings(" in ast.unparse(node.value), f"{path.name}: BINDINGS not from tui.actions"


async def test_the_command_palette_offers_the_panel_actions():
    app = scenes.app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert [a.label for a in palette("main")] == titles[: len(palette("main"))]


async def test_the_header_names_a_container_with_high_drift():
    """lead's container in the scenes mounts production writable: a high-severity drift the header shows
    whatever pane is selected; an audit without it clears the warning."""
    from tui.widgets.status_bar import StatusBar

    app = scenes.app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        await until(pilot, lambda: app.main.high_drift == ("qms-agent-lead",), "lead's drift in the header")
        assert "HIGH drift: qms-agent-lead" in app.main.query_one(StatusBar).render().plain
        app.main.audits = {k: v for k, v in app.main.audits.items() if v.container != "qms-agent-lead"}
        await pilot.pause()
        assert "HIGH drift" not in app.main.query_one(StatusBar).render().plain


# --- widgets and screens do no I/O ------------------------------------------------------------

IO_LIBRARIES = {"docker", "httpx", "httpx_sse", "mcp", "socket", "subprocess", "watchfiles"}
IO_MODULES = {"core.containers", "core.container_board", "core.engine", "core.engine_events", "core.mcp_link",
              "core.doctor", "core.access_audit", "core.qms_board", "core.qms_watch", "core.services"}


def _data_type(obj: object) -> bool:
    """A pydantic model, an enum, or a union of them (``EngineEvent``)."""
    if typing.get_origin(obj) is typing.Union:
        return all(_data_type(arg) for arg in typing.get_args(obj))
    return isinstance(obj, type) and issubclass(obj, (BaseModel, Enum))


@pytest.mark.parametrize("folder", ["widgets", "screens"])
def test_widgets_and_screens_import_nothing_that_does_io(folder):
    """No I/O library at all; from the core's I/O modules only the pydantic rows (and enums) they render."""
    for path in (TUI / folder).glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] not in IO_LIBRARIES | {"core"}, f"{path.name}: {alias.name}"
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert module.split(".")[0] not in IO_LIBRARIES, f"{path.name}: {module}"
                if module in IO_MODULES:
                    imported = importlib.import_module(module)
                    for alias in node.names:
                        assert _data_type(getattr(imported, alias.name)), f"{path.name}: {module}.{alias.name}"
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "open":
                pytest.fail(f"{path.name} opens a file")


# --- the live stream --------------------------------------------------------------------------


class StreamApp(App):
    def compose(self):
        yield StreamPane(maxlen=100)


def line(i: int, source: str = "mcp", text: str = "") -> StreamLine:
    return StreamLine(i, scenes.NOW + timedelta(seconds=i), source, "claude", text or f"message {i}", {"n": i})


async def test_the_stream_is_bounded_filters_and_pauses():
    app = StreamApp()
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(StreamPane)
        pane.extend(line(i, "mcp" if i % 2 else "docker") for i in range(250))
        await pilot.pause()
        assert pane.view.total == 100 and pane.view.shown == 100
        assert pane.view.lines()[0].seq == 150  # the oldest fell off

        pane.toggle_source("docker")
        assert {ln.source for ln in pane.view.lines()} == {"mcp"}
        pane.toggle_source("docker")
        pane.start_filter()
        await pilot.press("2", "4", "9")
        assert [ln.summary for ln in pane.view.lines()] == ["message 249"]
        await pilot.press("escape")
        assert pane.view.shown == 100 and pane.view.needle == ""

        pane.toggle_pause()
        pane.push(line(1000))
        await pilot.pause()
        assert pane.view.lines()[-1].seq == 249  # held while paused
        pane.toggle_pause()
        await pilot.pause()
        assert pane.view.lines()[-1].seq == 1000


async def test_enter_on_a_stream_line_shows_its_payload():
    app = scenes.app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        view = app.main.stream.view
        view.focus()
        await until(pilot, lambda: view.selected is not None, "a selected line")
        while "tools/call qms_checkout" not in view.selected.summary:
            await pilot.press("up")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PayloadScreen), "the payload screen")
        assert app.screen.line.payload["params"]["arguments"] == {"doc_id": "CR-041", "user": "claude"}
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen), "back to the panel")


async def test_slash_and_space_drive_the_stream_from_anywhere():
    app = scenes.app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        await pilot.press("space")
        assert app.main.stream.paused
        await pilot.press("space")
        assert not app.main.stream.paused
        await pilot.press("slash", "C", "H", "E", "C", "K", "I", "N", "space", "C", "R", "-", "0", "4", "0")
        assert [ln.summary for ln in app.main.stream.view.lines()] == ["CHECKIN CR-040 v0.2"]


# --- failures become notifications ------------------------------------------------------------


async def test_a_failed_restart_is_a_notification_with_a_readable_title():
    bundle = scenes.services()

    def refuse(agent):
        raise ContainerNotFound(f"no container qms-agent-{agent}")

    bundle.containers.restart = refuse
    app = scenes.app(bundle)
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        await pilot.press("r")
        await until(pilot, lambda: any(t == "No such agent container" for _, t, _ in app.notices), "the notice")
        severity, title, message = next(n for n in app.notices if n[1] == "No such agent container")
        assert severity == "error" and "restarting claude" in message and "qms-agent-claude" in message
        assert "claude" not in app.main.busy  # the row's progress is cleared
        assert app.is_running


async def test_a_feed_that_fails_is_reported_once_started_again_and_shown_down():
    bundle = scenes.services()
    starts = []

    async def broken() -> None:
        starts.append(1)
        raise ProjectError("/srv/pipe-dream has none of QMS/.meta, QMS/.audit, .claude/users to watch")

    bundle.qms_board.run = broken
    app = scenes.app(bundle)
    app.feeds.first_retry = 0.02
    async with app.run_test(size=scenes.SIZE) as pilot:
        await until(pilot, lambda: len(starts) >= 3, "the feed to be started again")
        await until(pilot, lambda: "QMS watcher" in app.main.feeds_down, "the status bar to say which feed is down")
        said = [n for n in app.notices if n[1] == "Bad project"]
        assert len(said) == 1 and "QMS watcher" in said[0][2]


async def keep_until(runner: FeedRunner, feed: Feed, done) -> None:
    """Run ``feed`` under ``runner`` until ``done()`` (bounded), then stop it."""
    task = asyncio.create_task(runner.keep(feed))
    try:
        with anyio.fail_after(10):
            while not done():
                await asyncio.sleep(0.01)
    finally:
        task.cancel()


async def test_a_feed_that_ends_is_a_failure_and_restarts_on_a_fresh_iterator():
    made, applied, said, health = [], [], [], []

    def items() -> AsyncIterator[int]:
        async def run() -> AsyncIterator[int]:
            yield len(made)  # one item, then the iterator ends: a failure like any other
        made.append(1)
        return run()

    runner = FeedRunner(lambda h: health.append(dict(h)), said.append, first_retry=0.01, last_retry=0.02)
    await keep_until(runner, Feed("numbers", items, applied.append), lambda: len(made) >= 4)
    assert applied[:3] == [1, 2, 3]  # each run is a fresh iterator
    assert [n.title for n in said] == ["Live feed ended"] * len(said) and len(said) >= 3  # recovered in between
    assert any(not h["numbers"].up and h["numbers"].retry_in for h in health)


async def test_the_same_failure_is_said_once_until_the_feed_recovers():
    said, runs = [], []

    async def fails() -> None:
        runs.append(1)
        raise ContainerNotFound("no container qms-agent-claude")

    runner = FeedRunner(lambda h: None, said.append, first_retry=0.01, last_retry=0.02)
    await keep_until(runner, Feed.task("logs", fails), lambda: len(runs) >= 5)
    assert len(said) == 1 and said[0].message.startswith("logs: no container qms-agent-claude (retrying in")
    assert runner.down()[0].attempt >= 4


# --- operations and notices -------------------------------------------------------------------


async def test_a_container_operation_asks_the_board_to_list_again():
    bundle = scenes.services()
    app = scenes.app(bundle)
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        before = bundle.container_board.refreshed
        await pilot.press("r")
        await until(pilot, lambda: any(t == "Restarted" for _, t, _ in app.notices), "the notice")
        assert bundle.container_board.refreshed == before + 1
        assert next(m for _, t, m in app.notices if t == "Restarted") == "claude: Up 3 hours"


HOSTILE = "\x1b[2J\x1b]0;owned\x07[bold red]x[/] done"


async def test_notices_reach_the_screen_escaped_and_never_as_markup():
    """A server's reply with terminal controls and Rich markup: shown visibly, nothing interpreted."""
    bundle = scenes.services()

    async def checkin(doc_id: str, agent: str) -> OpOutcome:
        return OpOutcome(operation="checkin", doc_id=doc_id, agent=agent, status="refused", reason=HOSTILE)

    bundle.ops.checkin = checkin
    app = scenes.app(bundle)
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        app.operations.document("checkin", "CR-041", "claude")
        app.show(Notice(title=f"title {HOSTILE}", message="plain"))
        await until(pilot, lambda: len([n for n in app.notices if "refused" in n[1]]) == 1, "the refusal")
        await pilot.pause()
        shown = [(n.title, n.message, n.markup) for n in app._notifications]
        assert all("\x1b" not in title + message and not markup for title, message, markup in shown)
        assert any("\\x1b[2J\\x1b]0;owned\\x07[bold red]x[/] done" in message for _, message, _ in shown)
        assert any(title.startswith("title \\x1b[2J") for title, _, _ in shown)
        assert "\x1b" not in html.unescape(app.export_screenshot())


# --- small parts ------------------------------------------------------------------------------


async def test_a_coalesced_call_asked_for_while_it_runs_runs_exactly_once_more():
    gate = threading.Event()
    runs, tasks, running = [], [], []

    async def work() -> None:
        runs.append(1)
        await asyncio.to_thread(gate.wait, 5)

    job = Coalesced(work, lambda coro, name: tasks.append(asyncio.create_task(coro)), "job", running.append)
    job.request()
    with anyio.fail_after(10):
        while not runs:
            await asyncio.sleep(0.01)
        job.request()
        job.request()
        job.request()
        gate.set()
        await asyncio.gather(*tasks)
    assert len(runs) == 2 and len(tasks) == 1 and running == [True, False] and not job.running


async def test_keymap_setting_remaps_a_binding_everywhere():
    """`keymap` (binding id -> key) moves a binding: the new key acts, the help shows it."""
    from tui.actions import check_keymap
    from tui.screens.help import help_table

    bundle = scenes.services()
    restarted = []
    bundle.containers.restart = lambda agent: restarted.append(agent)
    bundle.settings = bundle.settings.model_copy(update={"keymap": {"container.restart": "ctrl+r"}})
    app = scenes.app(bundle)
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        await pilot.press("r")
        await pilot.pause(0.2)
        assert restarted == []  # the old key no longer restarts
        await pilot.press("ctrl+r")
        await until(pilot, lambda: restarted == ["claude"], "the remapped key to restart")
    assert "ctrl+r" in [str(c) for c in help_table({"container.restart": "ctrl+r"}).columns[0].cells]
    with pytest.raises(SettingsError, match="unknown binding id 'container.reboot'"):
        check_keymap({"container.reboot": "x"})


async def test_agents_calls_heartbeats_and_the_live_columns():
    """The gateway's calls are their own source (1), the panel's link heartbeats are hidden until
    5 shows them; a failing agent's row is amber; a document its holder works on is active."""
    app = scenes.app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        lines = app.main.stream.view.lines()
        agents = [f"{ln.agent} {ln.summary}" for ln in lines if ln.source == "agents"]
        assert "claude qms_checkout CR-041 -> ok 41 ms" in agents
        assert not any(ln.source == "beat" for ln in lines)
        app.main.stream.focus()
        await pilot.press("5")
        assert any(ln.source == "beat" and "ping" in ln.summary for ln in app.main.stream.view.lines())
        tu_ui = app.main.gateway.agents["tu_ui"]
        assert tu_ui.failing and tu_ui.failures_last_10m == 2
        cells = app.main.containers_pane._cells("tu_ui", None)
        assert cells["AGENT"].plain == "⚠ tu_ui" and "yellow" in str(cells["AGENT"].style)
        rows = {r.doc_id: r for r in app.main.checkouts}
        assert app.main.workspace._shown_state(rows["CR-041"]) == "active"
        assert app.main.workspace._shown_state(rows["CR-043"]) == "stale"


# --- the agents' activity ---------------------------------------------------------------------


def waiting_update(app, *, since_s: float = 10, tool: str = "Bash(rm -rf build)"):
    """A gateway update as the activity board will send it: lead waits for permission (a real
    ActivityEvent on the update, the scene board's fixed activity view changed to match)."""
    from core.gateway.calls_board import CallsUpdate
    from core.gateway.events import ActivityEvent, Who

    board = app.services.calls_board
    agents = board.fixed_activity.agents
    lead = agents["lead"].model_copy(update={
        "state": "waiting", "since": scenes.ago(seconds=since_s), "waiting_tool": tool,
        "waiting_message": "Claude needs your permission to use Bash"})
    board.fixed_activity = board.fixed_activity.model_copy(update={"agents": {**agents, "lead": lead}})
    event = ActivityEvent(time=scenes.ago(seconds=since_s), who=Who(peer="172.17.0.3", agent="lead"), source="hook",
                          name="Notification", summary="[bold]Claude needs\x1b[2J your permission",
                          attributes={"notification_type": "permission_prompt"})
    return CallsUpdate(view=board.view(), event=event)


async def test_an_agent_that_starts_to_wait_is_said_once_and_its_row_turns():
    """lead waits for permission: one notification however often the view comes (feed, ticks),
    its row and the pane in the attention colour, the hook's line in source 6 (safe); working
    again clears it, and a new wait is said again."""
    app = scenes.app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        pane = app.main.containers_pane
        assert not pane.has_class("-waiting") and not app.notices
        for _ in range(3):
            app._calls(waiting_update(app))
            app._tick()
        await until(pilot, lambda: pane.has_class("-waiting"), "the pane's attention class")
        asked = [(t, m) for _, t, m in app.notices]
        assert asked == [("Permission asked", "lead waits for permission: Bash(rm -rf build) (t opens its terminal)")]
        cells = app.main.containers_pane._cells("lead", app.main.container_row("lead"))
        name, state = cells["AGENT"], cells["STATE"]
        attention = pane.get_component_rich_style("containers--waiting", partial=True)
        assert name.plain == "⚑ lead" and name.style == attention and state.plain.startswith("waiting Bash(")
        await until(pilot, lambda: not app.main.stream.pending, "the stream")
        line = [ln for ln in app.main.stream.view.lines() if ln.source == "activity"][-1]
        assert (line.agent, line.level) == ("lead", "warning") and "\x1b" not in line.summary
        assert line.summary.startswith("Notification: [bold]Claude needs\\x1b[2J")

        board = app.services.calls_board
        board.fixed_activity = scenes.agent_activity()  # lead idle again
        app._gateway(board.view())
        await until(pilot, lambda: not pane.has_class("-waiting"), "the class to go")
        app._calls(waiting_update(app, since_s=2, tool="Edit(src/x.py)"))
        assert [m for _, _, m in app.notices][-1].startswith("lead waits for permission: Edit(src/x.py)")
        assert len(app.notices) == 2


async def test_a_waiting_agent_whose_container_is_not_running_shows_its_container_state():
    app = scenes.app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        board = app.services.calls_board
        agents = board.fixed_activity.agents
        qa = agents["qa"].model_copy(update={"state": "waiting", "waiting_tool": "Bash"})
        board.fixed_activity = board.fixed_activity.model_copy(update={"agents": {**agents, "qa": qa}})
        app._gateway(board.view())
        await pilot.pause()
        cells = app.main.containers_pane._cells("qa", app.main.container_row("qa"))
        assert cells["STATE"].plain == "exited (137)" and cells["AGENT"].plain == "qa" and not app.notices
        assert cells["USAGE"].plain == "16k $0.52 3✗"  # usage since the container started, API errors in 10 min


async def test_t_refuses_with_one_notice_when_there_is_nothing_to_attach_to():
    """No terminal to hand over in a test (headless), an exited container, one not ours, none."""
    app = scenes.app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        await pilot.press("t")  # claude runs, but this app has no terminal to give away
        await until(pilot, lambda: len(app.notices) == 1, "the refusal")
        assert app.notices[-1][1] == "Cannot attach here" and "qms-panel attach claude" in app.notices[-1][2]
        for agent, title in (("tu_ui", "Nothing to attach to"), ("qa", "No terminal to open"),
                             ("pd-scratch", "Will not attach to")):  # in row order: the cursor goes down
            await scenes.select_container(pilot, agent)
            before = len(app.notices)
            await pilot.press("t")
            await until(pilot, lambda: len(app.notices) == before + 1, f"the refusal for {agent}")
            assert app.notices[-1][1] == title, app.notices[-1]
        assert isinstance(app.screen, MainScreen)


async def test_source_6_is_the_agents_activity():
    app = scenes.app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        activity = [f"{ln.agent} {ln.summary}" for ln in app.main.stream.view.lines() if ln.source == "activity"]
        assert "claude PreToolUse: Bash: npm test" in activity and len(activity) == 4
        await pilot.press("6")
        assert not any(ln.source == "activity" for ln in app.main.stream.view.lines())
        assert "activity" not in app.main.stream.view.sources
        await pilot.press("6")
        assert sum(ln.source == "activity" for ln in app.main.stream.view.lines()) == 4
    assert "container.terminal" in {a.id for a in palette("main")}
    assert {b.key for b in bindings("main")} >= {"t", "6"}
