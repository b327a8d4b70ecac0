"""Benchmark: 50 agent containers on the real engine.

Reports the time of ``ContainerManager.list()`` (median of several; cold = no event stream, so
start times come from one inspect per container; warm = with an EngineEvents stream connected,
so one list call) and the time from ``docker kill`` to its events on the stream (median over
10 kills). Everything it makes is named ``qmsbench-*`` and removed at the end, even on Ctrl-C.

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

from core.containers import ContainerManager  # noqa: E402
from core.engine_events import ContainerEvent, EngineBack, EngineEvents  # noqa: E402
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
    arrivals: dict[tuple[str, str], float] = {}
    seen = asyncio.Condition()
    ready = asyncio.Event()

    async def consume() -> None:
        async with aclosing(EngineEvents(manager).stream()) as stream:
            async for ev in stream:
                if isinstance(ev, EngineBack):
                    ready.set()
                elif isinstance(ev, ContainerEvent) and ev.action in ("kill", "die"):
                    async with seen:
                        arrivals[(ev.id, ev.action)] = time.perf_counter()
                        seen.notify_all()

    consumer = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(ready.wait(), 60)
        warm = [await asyncio.to_thread(timed, manager.list) for _ in range(rounds)]
        to_kill, to_die = [], []
        for cid in ids:
            t0 = time.perf_counter()
            await asyncio.to_thread(client.api.kill, cid)
            async with seen:
                await asyncio.wait_for(seen.wait_for(lambda: (cid, "die") in arrivals), 30)
            to_kill.append(arrivals[(cid, "kill")] - t0)
            to_die.append(arrivals[(cid, "die")] - t0)
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
    return {"cold": cold, "warm": warm, "kill": to_kill, "die": to_die}


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
        print(f"  without an event stream (1 list call + {opts.containers} inspects): "
              f"{ms(statistics.median(figures['cold']))} (min {ms(min(figures['cold']))})")
        print(f"  with the event stream connected (1 list call):          "
              f"{ms(statistics.median(figures['warm']))} (min {ms(min(figures['warm']))})")
        print(f"docker kill -> event on the stream, median of {len(figures['die'])} "
              f"(from sending the kill request):")
        print(f"  kill event: {ms(statistics.median(figures['kill']))} (max {ms(max(figures['kill']))})")
        print(f"  die event:  {ms(statistics.median(figures['die']))} (max {ms(max(figures['die']))})")
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
