"""The live event stream on the real engine: kills seen from outside, and engine loss survived."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
from contextlib import aclosing
from pathlib import Path

import anyio
import docker
import pytest

from core.containers import ContainerManager
from core.engine import EngineTarget
from core.engine_events import ContainerEvent, EngineBack, EngineEvents, EngineLost, backoff_delay
from core.settings import Settings
from support.docker_env import TEST_LABEL
from test_containers import AGENT_CMD, cleanup  # noqa: F401 - a fixture

ENGINE_SOCKET = "/var/run/docker.sock"


class UnixRelay:
    """A unix-socket relay to the engine that a test can cut (connections dropped) or freeze, and restore."""

    def __init__(self, path: str, target: str = ENGINE_SOCKET) -> None:
        self.path, self.target = path, target
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()

    def start(self) -> None:
        self._stop.clear()
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(self.path)
        listener.listen(64)
        listener.settimeout(0.1)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while not self._stop.is_set():
                try:
                    conn, _ = listener.accept()
                except (socket.timeout, BlockingIOError):
                    continue
                conn.settimeout(None)
                upstream = socket.socket(socket.AF_UNIX)
                upstream.connect(self.target)
                with self._lock:
                    self._conns |= {conn, upstream}
                for a, b in ((conn, upstream), (upstream, conn)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            self._drop(s)

    def _drop(self, s: socket.socket) -> None:
        with self._lock:
            self._conns.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def cut(self) -> None:
        """Stop listening, remove the socket file and drop every open connection."""
        self._stop.set()
        Path(self.path).unlink(missing_ok=True)
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            self._drop(s)

    restore = start

    def freeze(self, frozen: bool = True) -> None:
        """Keep every connection open but pass nothing (an engine host that vanished)."""
        if frozen:
            self._flowing.clear()
        else:
            self._flowing.set()


async def next_of(stream, kind, where=lambda ev: True):
    async for ev in stream:
        if isinstance(ev, kind) and where(ev):
            return ev
    raise AssertionError("the stream ended")


@pytest.fixture
def relay():
    workdir = tempfile.mkdtemp(prefix="qmst-relay-", dir="/tmp")  # short: unix socket paths are limited
    relay = UnixRelay(f"{workdir}/engine.sock")
    relay.start()
    yield relay
    relay.freeze(False)
    relay.cut()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def settings(project_root, test_image, unique_prefix) -> Settings:
    return Settings.model_construct(project_root=project_root, image=test_image, container_prefix=unique_prefix)


@pytest.mark.docker
async def test_kill_from_outside_is_a_die_event_and_restarts_are_events(docker_client, settings, project_root, test_image,
                                                                   cleanup):
    manager = ContainerManager(settings, extra_labels={TEST_LABEL: "1"})
    row = await asyncio.to_thread(manager.launch, "claude", AGENT_CMD)
    events = EngineEvents(manager)
    with anyio.fail_after(60):
        async with aclosing(events.stream()) as stream:
            first = await next_of(stream, EngineBack)
            assert first.first and [r.id for r in first.containers] == [row.id]

            # A restart, from outside or ours, is an event (the container board counts them).
            await asyncio.to_thread(docker_client.api.restart, row.id, timeout=5)
            await next_of(stream, ContainerEvent, lambda ev: ev.action == "restart" and ev.id == row.id)
            assert manager.get("claude").restart_count == 0  # the manager counts only its own
            await asyncio.to_thread(manager.restart, "claude")
            await next_of(stream, ContainerEvent, lambda ev: ev.action == "restart" and ev.id == row.id)
            assert manager.get("claude").restart_count == 1

            # A container made by hand that mounts the project is followed, flagged.
            hand = await asyncio.to_thread(
                docker_client.containers.run, test_image, AGENT_CMD, name=f"{settings.container_prefix}by-hand",
                detach=True, labels={TEST_LABEL: "1"}, volumes={str(project_root): {"bind": "/mnt", "mode": "ro"}})
            started = await next_of(stream, ContainerEvent, lambda ev: ev.action == "start" and ev.id == hand.id)
            assert not started.managed and started.agent == "by-hand"

            await asyncio.to_thread(docker_client.containers.get(row.name).kill)
            died = await next_of(stream, ContainerEvent, lambda ev: ev.action == "die" and ev.id == row.id)
    assert (died.agent, died.name, died.exit_code, died.managed) == ("claude", row.name, 137, True)


@pytest.mark.docker
async def test_engine_loss_is_survived(docker_client, settings, cleanup, relay):
    client = docker.DockerClient(base_url=f"unix://{relay.path}", timeout=10)
    manager = ContainerManager(settings, client=client, extra_labels={TEST_LABEL: "1"})
    row = await asyncio.to_thread(manager.launch, "claude", AGENT_CMD)
    events = EngineEvents(manager, initial_backoff=0.05, max_backoff=0.4, heartbeat=1)
    try:
        with anyio.fail_after(60):
            async with aclosing(events.stream()) as stream:
                await next_of(stream, EngineBack)
                relay.cut()
                lost = await next_of(stream, EngineLost)
                assert lost.endpoint == f"unix://{relay.path}" and lost.attempt == 1 and lost.retry_in <= 0.4
                # While the panel is cut off, the agent stops; the next attempts fail, naming the socket.
                await asyncio.to_thread(docker_client.api.stop, row.id, timeout=5)
                again = await next_of(stream, EngineLost, lambda ev: ev.attempt >= 2)
                assert f"no socket at {relay.path}" in again.reason

                relay.restore()
                back = await next_of(stream, EngineBack)
                assert not back.first
                assert [(r.id, r.state, r.exit_code) for r in back.containers] == [(row.id, "exited", 0)]
                # And the stream is live again.
                await asyncio.to_thread(docker_client.api.start, row.id)
                ev = await next_of(stream, ContainerEvent, lambda ev: ev.action == "start")
                assert ev.id == row.id
    finally:
        client.close()


@pytest.mark.docker
async def test_engine_that_stops_answering_is_lost_then_back(settings, cleanup, relay):
    client = docker.DockerClient(base_url=f"unix://{relay.path}", timeout=30)
    manager = ContainerManager(settings, client=client)
    events = EngineEvents(manager, initial_backoff=0.05, max_backoff=0.2, heartbeat=0.3, ping_timeout=0.5)
    try:
        with anyio.fail_after(60):
            async with aclosing(events.stream()) as stream:
                await next_of(stream, EngineBack)
                relay.freeze()  # nothing is closed: only the heartbeat can tell
                lost = await next_of(stream, EngineLost)
                assert "did not answer in time" in lost.reason or "stopped answering" in lost.reason
                await next_of(stream, EngineLost, lambda ev: ev.attempt >= 2)  # reconnecting hangs too
                relay.freeze(False)
                assert not (await next_of(stream, EngineBack)).first
    finally:
        client.close()


async def test_no_engine_at_all_yields_lost_forever_never_raises(project_root, tmp_path):
    sock = tmp_path / "no-engine.sock"
    settings = Settings.model_construct(project_root=project_root, image="img", container_prefix="qmst-none-")
    manager = ContainerManager(settings, target=EngineTarget(f"unix://{sock}"))
    seen = []
    with anyio.fail_after(10):
        async with aclosing(EngineEvents(manager, initial_backoff=0.01, max_backoff=0.04).stream()) as stream:
            async for ev in stream:
                seen.append(ev)
                if len(seen) == 4:
                    break
    assert [ev.attempt for ev in seen] == [1, 2, 3, 4]
    assert all(isinstance(ev, EngineLost) and f"no socket at {sock}" in ev.reason for ev in seen)
    assert all(ev.retry_in <= 0.04 for ev in seen)


def test_backoff_is_exponential_jittered_and_capped():
    assert [backoff_delay(n, initial=0.5, cap=10, rng=lambda: 1.0) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert [backoff_delay(n, initial=0.5, cap=10, rng=lambda: 0.0) for n in (1, 6)] == [0.25, 5]
