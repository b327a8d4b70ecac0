"""The container board on the real engine: a container that dies is shown dead, every time.

Docker 20.10 sends ``die`` before its list (and an inspect made right after) shows the container
stopped; these tests make that race happen many times and wait (generously, never timed) for the
board to show what the engine finally says, checking on the way that a dead run never shows as
running again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import aclosing, asynccontextmanager
from datetime import UTC, datetime

import anyio
import docker
import pytest

from core.container_board import ContainerBoard, ContainersView, EngineView
from core.containers import ContainerManager, ContainerRow, status_line
from core.engine_events import ContainerEvent, EngineEvents
from support.docker_env import TEST_LABEL
from test_containers import AGENT_CMD, cleanup, settings  # noqa: F401 - fixtures
from test_engine_events import relay  # noqa: F401 - a fixture

EXITS_SOON = ["sh", "-c", "sleep 0.3; exit 1"]
WAIT = 60  # seconds: generous, the engine is shared


@pytest.fixture
def manager(settings, cleanup):  # noqa: F811 - the fixtures above
    return ContainerManager(settings, extra_labels={TEST_LABEL: "1"}, stop_timeout=2)


@asynccontextmanager
async def running(board: ContainerBoard):
    task = asyncio.create_task(board.run())
    try:
        yield board
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Watch:
    """Every update of a board, with a check that no run seen dying is later shown running."""

    def __init__(self, board: ContainerBoard) -> None:
        self.updates = aclosing(board.updates())
        self.died: dict[str, object] = {}  # id -> time of the last die seen
        self.resurrected: list[ContainerRow] = []

    async def __aenter__(self) -> Watch:
        self.stream = await self.updates.__aenter__()
        await anext(self.stream)  # the current view: from here on, no event is missed
        return self

    async def __aexit__(self, *exc) -> None:
        await self.updates.__aexit__(*exc)

    async def until(self, what: Callable[[ContainersView], ContainerRow | bool | None]) -> ContainersView:
        with anyio.fail_after(WAIT):
            async for update in self.stream:
                for ev in update.events:
                    if isinstance(ev, ContainerEvent) and ev.action == "die":
                        self.died[ev.id] = ev.time
                for row in update.view.rows:
                    died = self.died.get(row.id)
                    if row.state == "running" and died is not None and row.started_at <= died:
                        self.resurrected.append(row)
                assert not self.resurrected, f"a dead run shown running: {self.resurrected}"
                if what(update.view):
                    return update.view
        raise AssertionError("the updates ended")


def listed_state(agent: str, state: str, **expect) -> Callable[[ContainersView], ContainerRow | None]:
    """The row of ``agent`` in ``state`` as a list of the engine confirms it: its status text is the
    list's (``Exited (1) Less than a second ago``), not the one an event gives (``Exited (1)``)."""
    def found(view: ContainersView) -> ContainerRow | None:
        return next((row for row in view.rows
                     if row.agent == agent and row.state == state
                     and row.status_text != status_line(row.state, row.exit_code, row.health)
                     and all(getattr(row, k) == v for k, v in expect.items())), None)
    return found


def row_of(view: ContainersView, agent: str) -> ContainerRow:
    return next(r for r in view.rows if r.agent == agent)


@pytest.mark.docker
async def test_a_container_that_exits_at_once_shows_exited_every_time(manager):
    board = ContainerBoard(manager, EngineEvents(manager), image=manager.settings.image)
    async with running(board), Watch(board) as watch:
        await watch.until(lambda view: view.listed)
        for n in range(20):
            row = await asyncio.to_thread(manager.launch, "quick", EXITS_SOON)
            view = await watch.until(listed_state("quick", "exited", id=row.id, exit_code=1))
            assert row_of(view, "quick").exit_code == 1, n
            await asyncio.to_thread(manager.remove, "quick")
            await watch.until(lambda view: not any(r.agent == "quick" for r in view.rows))
        assert len(watch.died) == 20


@pytest.mark.docker
async def test_kill_stop_restart_and_an_exit_while_restarting(manager, docker_client):
    board = ContainerBoard(manager, EngineEvents(manager), image=manager.settings.image)
    async with running(board), Watch(board) as watch:
        row = await asyncio.to_thread(manager.launch, "claude", AGENT_CMD)
        first = await watch.until(listed_state("claude", "running", id=row.id))
        assert first.engine == EngineView(status="up", endpoint=manager.endpoint, version=first.engine.version,
                                          image=manager.settings.image, image_present=True)

        await asyncio.to_thread(docker_client.api.kill, row.id)
        await watch.until(listed_state("claude", "exited", exit_code=137))

        await asyncio.to_thread(docker_client.api.start, row.id)
        await watch.until(listed_state("claude", "running"))
        await asyncio.to_thread(docker_client.api.stop, row.id, timeout=5)
        await watch.until(listed_state("claude", "exited", exit_code=0))

        # `docker restart` from outside counts once; so does ours (seen as an event too).
        await asyncio.to_thread(docker_client.api.restart, row.id, timeout=5)
        await watch.until(listed_state("claude", "running", restart_count=1))
        await asyncio.to_thread(manager.restart, "claude")
        board.refresh()
        view = await watch.until(listed_state("claude", "running", restart_count=2))
        assert len(view.rows) == 1

        # An agent that exits while it restarts is shown exited, with the restart counted.
        quick = await asyncio.to_thread(manager.launch, "quick", EXITS_SOON)
        gone = await watch.until(listed_state("quick", "exited", id=quick.id))
        await asyncio.to_thread(docker_client.api.restart, quick.id, timeout=1)
        again = await watch.until(listed_state("quick", "exited", restart_count=1))
        assert again.rows and row_of(again, "quick").started_at > row_of(gone, "quick").started_at


@pytest.mark.docker
async def test_what_happened_while_the_engine_was_lost_is_shown_on_its_return(settings, docker_client, relay,
                                                                             cleanup):  # noqa: F811
    client = docker.DockerClient(base_url=f"unix://{relay.path}", timeout=10)
    manager = ContainerManager(settings, client=client, extra_labels={TEST_LABEL: "1"}, stop_timeout=2)
    events = EngineEvents(manager, initial_backoff=0.05, max_backoff=0.4, heartbeat=1)
    board = ContainerBoard(manager, events, image=settings.image)
    try:
        row = await asyncio.to_thread(manager.launch, "claude", AGENT_CMD)
        async with running(board), Watch(board) as watch:
            await watch.until(listed_state("claude", "running", id=row.id))
            relay.cut()
            down = await watch.until(lambda view: view.engine.status == "down")
            assert f"unix://{relay.path}" == down.engine.endpoint and down.engine.retry_in is not None
            assert [r.state for r in down.rows] == ["running"]  # the last known, until the engine says more
            await asyncio.to_thread(docker_client.api.stop, row.id, timeout=5)
            relay.restore()
            back = await watch.until(listed_state("claude", "exited", exit_code=0))
            assert back.engine.up and back.engine.reason == ""
    finally:
        client.close()


@pytest.mark.docker
async def test_settle_gives_the_first_full_view(manager):
    row = await asyncio.to_thread(manager.launch, "claude", AGENT_CMD)
    board = ContainerBoard(manager, EngineEvents(manager), image="no-such-image:never")
    view = await board.settle(WAIT)
    assert view.listed and [r.id for r in view.rows] == [row.id]
    assert view.engine.up and view.engine.version and view.engine.image_present is False


async def test_settle_on_no_engine_says_down(project_root, tmp_path):
    from core.engine import EngineTarget
    from core.settings import Settings

    settings = Settings.model_construct(project_root=project_root, image="x", container_prefix="qmst-none-")
    manager = ContainerManager(settings, target=EngineTarget(base_url=f"unix://{tmp_path}/no.sock"))
    view = await ContainerBoard(manager, EngineEvents(manager), image="x").settle(WAIT)
    assert view.engine.status == "down" and "no.sock" in view.engine.reason and not view.listed


async def test_a_slow_reader_never_holds_the_board_up_and_keeps_a_bound_of_events(project_root):
    """Events applied while a reader sleeps: it wakes to the latest view, the last BOUND events and
    the count of the ones it lost (synthetic events: the bound is the edge case here)."""
    from core.fanout import BOUND
    from core.settings import Settings

    settings = Settings.model_construct(project_root=project_root, image="x", container_prefix="qmst-slow-")
    manager = ContainerManager(settings)
    board = ContainerBoard(manager, EngineEvents(manager), image="x")
    async with aclosing(board.updates()) as updates:
        first = await anext(updates)
        assert (first.events, first.dropped, first.view.listed) == ([], 0, False)
        sent = [ContainerEvent(time=datetime.now(UTC), action="die", agent="a", name=f"c{n}", id=f"{n:064d}",
                               exit_code=n) for n in range(BOUND + 5)]
        for ev in sent:
            board._apply(ev)  # what run() does with each event of the stream
        update = await anext(updates)
    assert update.events == sent[5:] and update.dropped == 5
