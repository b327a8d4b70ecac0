"""Benchmark: 50 agent containers on the real engine.

Reports the time of ``ContainerManager.list()`` (median of several; cold = no facts known, so
start times come from one inspect per container; warm = with the inspect facts a
:class:`~core.container_board.ContainerBoard` keeps while it follows the events, so one list
call), the time from ``docker kill`` to its events on the stream, and to the board's view showing
the row exited as the engine's list confirms it (kill-to-row; median over 10 kills). Everything
it makes is named ``qmsbench-*`` and removed at the end, even on Ctrl-C.

    python tests/benchmarks/bench_containers.py [--containers 50] [--kills 10] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import docker  # noqa: E402

from core.container_board import ContainerBoard  # noqa: E402
from core.containers import ContainerManager, ContainerRow, status_line  # noqa: E402
from core.engine_events import ContainerEvent, EngineEvents  # noqa: E402
from core.settings import Settings  # noqa: E402
from support.docker_env import TEST_LABEL, ensure_test_image  # noqa: E402


def test_image(client) -> str:
    """The tests' busybox image (same recipe and tag as the ``test_image`` fixture)."""
    return ensure_test_image(client)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def measure(manager: ContainerManager, client: docker.DockerClient, ids: list[str], rounds: int) -> dict:
    cold = [await asyncio.to_thread(timed, manager.list) for _ in range(rounds)]
    facts: dict = {}
    manager.list(facts=facts)  # what the board keeps while it follows the events
    warm = [await asyncio.to_thread(timed, lambda: manager.list(facts=dict(facts))) for _ in range(rounds)]
    arrivals: dict[tuple[str, str], float] = {}
    seen = asyncio.Condition()
    board = ContainerBoard(manager, EngineEvents(manager), image=manager.settings.image)

    def exited(row: ContainerRow) -> bool:
        """Exited as the engine's list says it (its status text, not the event's ``Exited (137)``)."""
        return row.state == "exited" and row.status_text != status_line(row.state, row.exit_code, row.health)

    async def consume() -> None:
        async with aclosing(board.updates()) as updates:
            async for update in updates:
                now = time.perf_counter()
                async with seen:
                    for ev in update.events:
                        if isinstance(ev, ContainerEvent) and ev.action in ("kill", "die"):
                            arrivals[(ev.id, ev.action)] = now
                    for row in update.view.rows:
                        if exited(row):
                            arrivals.setdefault((row.id, "row"), now)
                    if update.view.listed:
                        arrivals.setdefault(("board", "listed"), now)
                    seen.notify_all()

    runner = asyncio.create_task(board.run())
    consumer = asyncio.create_task(consume())
    try:
        async with seen:
            await asyncio.wait_for(seen.wait_for(lambda: ("board", "listed") in arrivals), 60)
        to_kill, to_die, to_row = [], [], []
        for cid in ids:
            t0 = time.perf_counter()
            await asyncio.to_thread(client.api.kill, cid)
            async with seen:
                await asyncio.wait_for(seen.wait_for(lambda: (cid, "row") in arrivals), 30)
            to_kill.append(arrivals[(cid, "kill")] - t0)
            to_die.append(arrivals[(cid, "die")] - t0)
            to_row.append(arrivals[(cid, "row")] - t0)
    finally:
        for task in (consumer, runner):
            task.cancel()
        await asyncio.gather(consumer, runner, return_exceptions=True)
    return {"cold": cold, "warm": warm, "kill": to_kill, "die": to_die, "row": to_row}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    opts = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # cleanup on kill too, not only Ctrl-C

    client = docker.from_env(timeout=120)
    prefix = f"qmsbench-{uuid.uuid4().hex[:6]}-"  # not qmst-: test sessions sweep those
    workdir = Path(tempfile.mkdtemp(prefix="qms-bench-"))
    root = workdir / "pipe-dream"
    (root / "QMS").mkdir(parents=True)
    settings = Settings.model_construct(project_root=root, image=test_image(client), container_prefix=prefix)
    manager = ContainerManager(settings, extra_labels={TEST_LABEL: "1"})
    agents = [f"a{n:02d}" for n in range(opts.containers)]
    try:
        t0 = time.perf_counter()
        pool = ThreadPoolExecutor(4)
        try:
            rows = list(pool.map(lambda a: manager.launch(a, ["sleep", "3600"]), agents))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C: finish what started, drop the rest
        launch_time = time.perf_counter() - t0
        assert len(manager.list()) == opts.containers
        figures = asyncio.run(measure(manager, client, [r.id for r in rows[: opts.kills]], opts.rounds))
        engine = manager.engine()
        print(f"engine {engine.version} (API {engine.api_version}) at {engine.endpoint}")
        print(f"launched {opts.containers} agent containers in {launch_time:.1f} s (4 at a time)")
        print(f"list() of {opts.containers} containers, median of {opts.rounds}:")
        print(f"  without facts known (1 list call + {opts.containers} inspects):   "
              f"{ms(statistics.median(figures['cold']))} (min {ms(min(figures['cold']))})")
        print(f"  with the facts the board keeps (1 list call):           "
              f"{ms(statistics.median(figures['warm']))} (min {ms(min(figures['warm']))})")
        print(f"docker kill -> event on the stream, median of {len(figures['die'])} "
              f"(from sending the kill request):")
        print(f"  kill event: {ms(statistics.median(figures['kill']))} (max {ms(max(figures['kill']))})")
        print(f"  die event:  {ms(statistics.median(figures['die']))} (max {ms(max(figures['die']))})")
        print(f"  board row exited, confirmed by a list (kill-to-row): {ms(statistics.median(figures['row']))} "
              f"(max {ms(max(figures['row']))})")
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        names = [c["Id"] for c in client.api.containers(all=True, filters={"name": prefix})]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda cid: client.api.remove_container(cid, force=True), names))
        for volume in client.volumes.list(filters={"name": prefix}):
            volume.remove(force=True)
        shutil.rmtree(workdir, ignore_errors=True)
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
