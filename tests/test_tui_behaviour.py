"""How the app behaves around its edges: the action table, the stream pane, failures, coalescing.

These run over the scene bundle (tests/support/tui_scenes.py) where a fake is the only way to
make the edge case happen on demand (a restart that fails, a watcher that cannot start); the
paths themselves run over real parts in tests/test_tui_pilot.py.
"""

from __future__ import annotations

import ast
import threading
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from textual.app import App

from core.errors import ContainerNotFound, ProjectError, SettingsError
from support import tui_scenes as scenes
from tui.actions import ACTIONS, bindings, palette
from tui.app import Job, apply_event
from tui.screens.main import MainScreen
from tui.screens.payload import PayloadScreen
from tui.widgets.stream import StreamLine, StreamPane

TUI = Path(__file__).resolve().parent.parent / "tui"


async def until(pilot, predicate, what: str, timeout: float = 10.0) -> None:
    try:
        with anyio.fail_after(timeout):
            while not predicate():
                await pilot.pause(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


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


# --- widgets and screens do no I/O ------------------------------------------------------------

IO_MODULES = {"docker", "httpx", "httpx_sse", "mcp", "socket", "subprocess", "watchfiles", "core.containers",
              "core.engine", "core.engine_events", "core.mcp_link", "core.doctor", "core.access_audit",
              "core.qms_watch", "core.services"}


@pytest.mark.parametrize("folder", ["widgets", "screens"])
def test_widgets_and_screens_import_nothing_that_does_io(folder):
    for path in (TUI / folder).glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not any(name == m or name.startswith(m + ".") for m in IO_MODULES), f"{path.name}: {name}"
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
        await pilot.press("slash", "C", "H", "E", "C", "K", "I", "N")
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


async def test_a_feed_that_fails_is_reported_once_and_started_again(monkeypatch):
    monkeypatch.setattr("tui.app.FEED_RETRY", 0.05)
    bundle = scenes.services()
    starts = []

    async def broken():
        starts.append(1)
        raise ProjectError("/srv/pipe-dream has none of QMS/.meta, QMS/.audit, .claude/users to watch")
        yield  # an async generator, like the real one

    bundle.watcher.events = broken
    app = scenes.app(bundle)
    async with app.run_test(size=scenes.SIZE) as pilot:
        await until(pilot, lambda: len(starts) >= 3, "the feed to be started again")
        said = [n for n in app.notices if n[1] == "Bad project"]
        assert len(said) == 1 and "QMS watcher" in said[0][2]


# --- small parts ------------------------------------------------------------------------------


def test_container_events_apply_to_the_rows_at_once():
    rows = scenes.container_rows()
    qa = next(r for r in rows if r.agent == "qa")
    claude = next(r for r in rows if r.agent == "claude")
    events = {ev.action: ev for ev in scenes.docker_events(rows)[1:]}
    started = apply_event(rows, events["start"].model_copy(update={"id": qa.id}))
    assert next(r for r in started if r.agent == "qa").state == "running"
    died = apply_event(rows, events["die"].model_copy(update={"id": claude.id}))
    assert next(r for r in died if r.agent == "claude").exit_code == 137
    gone = apply_event(rows, events["die"].model_copy(update={"action": "destroy", "id": claude.id}))
    assert "claude" not in {r.agent for r in gone}


async def test_a_job_asked_for_while_it_runs_runs_exactly_once_more():
    gate = threading.Event()
    runs = []

    def work():
        runs.append(1)
        gate.wait(5)

    class JobApp(App):
        def on_mount(self):
            self.job = Job(self, "job", work)

        def on_worker_state_changed(self, event):
            self.job.finished(event.worker)

    app = JobApp()
    async with app.run_test() as pilot:
        app.job.request()
        await until(pilot, lambda: len(runs) == 1, "the first run")
        app.job.request()
        app.job.request()
        app.job.request()
        gate.set()
        await until(pilot, lambda: len(runs) == 2 and not app.job.running, "one more run")
        await pilot.pause(0.1)
        assert len(runs) == 2


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
