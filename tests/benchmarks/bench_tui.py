"""Benchmark (a script, not a test): the app with 20 agent containers and 1,000 MCP messages a second.

    python tests/benchmarks/bench_tui.py [--agents 20] [--rate 1000] [--presses 40]

Real parts: the engine (20 containers of the test image running ``sleep``), the dev server on the
sample project, ``build_services`` and ``make_app``, run headless at 160x46. The flood is recorded
into the bundle's real McpStream at ``--rate`` messages a second, from a task on the app's loop
(as the link's own reader records them). "On screen" means: the state is in the widget and a
screen refresh has run after it (``call_after_refresh``). Keys are posted as the terminal driver posts them (``simulate_key``).

Reports: launch to the first complete frame (20 rows, the QMS scan, the link state); ``docker
kill`` to the row showing the exit; key press to screen during the flood (median, p95, max);
and how many flood messages reached the pane.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

import docker  # noqa: E402

from core.containers import ContainerManager  # noqa: E402
from core.devserver.sample import init_project  # noqa: E402
from core.services import build_services  # noqa: E402
from core.settings import Settings  # noqa: E402
from support.devserver import DevServer  # noqa: E402
from support.docker_env import TEST_LABEL, ensure_test_image  # noqa: E402
from tui.app import make_app  # noqa: E402

SIZE = (160, 46)


def test_image(client) -> str:
    """The tests' busybox image (same recipe and tag as the ``test_image`` fixture)."""
    return ensure_test_image(client)


async def on_screen(app, predicate, timeout: float = 60.0) -> float:
    """Wait for ``predicate()``, then for a refresh after it; the perf_counter time of that refresh."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.002)
    painted = asyncio.get_running_loop().create_future()
    app.call_after_refresh(lambda: painted.done() or painted.set_result(time.perf_counter()))
    return await asyncio.wait_for(painted, timeout)


async def flood(stream, rate: int, stop: asyncio.Event, sent: list[int]) -> None:
    """Record ``rate`` JSON-RPC messages a second into ``stream`` (request/response pairs)."""
    tick = 0.01
    per_tick = max(1, rate // 100)
    start = time.perf_counter()
    n = 0
    while not stop.is_set():
        for _ in range(per_tick // 2):
            n += 1
            stream.record_message("out", {"jsonrpc": "2.0", "id": 10_000 + n, "method": "tools/call",
                                          "params": {"name": "qms_status", "arguments": {"doc_id": "CR-001",
                                                                                          "user": f"agent-{n % 20:02d}"}}})
            stream.record_message("in", {"jsonrpc": "2.0", "id": 10_000 + n, "result": {
                "content": [{"type": "text", "text": "Document: CR-001\nStatus: DRAFT"}], "isError": False}})
        sent[0], sent[1] = 2 * n, 10_000 + n
        next_at = start + (sent[0] / rate)
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()) or tick / 10)


async def measure(settings: Settings, labels: dict, agents: list[str], kill_name: str, rate: int,
                  presses: int, think: float) -> dict:
    services = build_services(settings, extra_labels=labels)
    t0 = time.perf_counter()
    app = make_app(settings, services)
    results: dict = {}
    async with app.run_test(size=SIZE):
        main = app.main

        def complete() -> bool:
            return (main.containers_pane.table.row_count >= len(agents) and len(main.containers) >= len(agents)
                    and main.scanned and main.link is not None and main.link.status == "connected")

        results["first complete frame (s)"] = await on_screen(app, complete) - t0
        # the start-up checks (audit and doctor: docker exec in 20 containers) finish before the flood
        await on_screen(app, lambda: main.audits and not main.auditing and len(main.probes) >= len(agents))

        stop, sent = asyncio.Event(), [0, 0]
        producer = asyncio.create_task(flood(services.stream, rate, stop, sent))
        t_flood = time.perf_counter()
        await asyncio.sleep(3.0)  # the flood alone
        results["flood rate achieved, flood alone (msg/s)"] = sent[0] / (time.perf_counter() - t_flood)

        victim = kill_name.removeprefix(settings.container_prefix)
        client = services.containers.client
        t_kill = time.perf_counter()
        await asyncio.to_thread(client.containers.get(kill_name).kill)

        def row_exited() -> bool:
            row = main.containers_pane.table.get_row(victim) if victim in main.containers_pane.table.rows else None
            return row is not None and "exited" in str(row[1])

        results["docker kill to row on screen (ms)"] = (await on_screen(app, row_exited) - t_kill) * 1000

        main.containers_pane.focus()
        table = main.containers_pane.table
        latencies = []
        sent_before, t_keys = sent[0], time.perf_counter()
        for i in range(presses):
            key = "down" if (i // (len(agents) - 1)) % 2 == 0 else "up"
            before = table.cursor_row
            t_key = time.perf_counter()
            app.simulate_key(key)  # as the terminal driver would deliver it
            latencies.append((await on_screen(app, lambda: table.cursor_row != before) - t_key) * 1000)
            await asyncio.sleep(think)  # an operator's pace, not a key-repeat storm
        results["flood rate achieved, with keys (msg/s)"] = (sent[0] - sent_before) / (time.perf_counter() - t_keys)
        latencies.sort()
        results["key press to screen, median (ms)"] = statistics.median(latencies)
        results["key press to screen, p95 (ms)"] = latencies[int(0.95 * (len(latencies) - 1))]
        results["key press to screen, max (ms)"] = latencies[-1]

        stop.set()
        await producer
        t_stop, last = time.perf_counter(), f"#{sent[1]} "
        view = main.stream.view
        results["last message to screen after the flood (ms)"] = (await on_screen(
            app, lambda: any(last in ln.summary for ln in view.lines()[-3:])) - t_stop) * 1000
        results["flood messages sent"] = sent[0]
        results["stream lines held (bounded at 5,000)"] = view.total
    services.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--rate", type=int, default=1000, help="MCP messages per second")
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--think", type=float, default=0.1, help="seconds between two key presses")
    args = parser.parse_args()

    client = docker.from_env()
    image = test_image(client)
    prefix = f"qmst-bench-{uuid.uuid4().hex[:6]}-"
    labels = {TEST_LABEL: "1"}
    tmp = Path(tempfile.mkdtemp(prefix="qms-bench-"))
    root = tmp / "pipe-dream"
    init_project(root)
    server = DevServer(root, log_path=tmp / "devserver.log")
    server.start()
    agents = [f"agent-{i:02d}" for i in range(args.agents)]
    settings = Settings(project_root=root, agents=agents, image=image, mcp_url=server.url, container_prefix=prefix)
    manager = ContainerManager(settings, extra_labels=labels)
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda a: manager.launch(a, command=["sleep", "3600"]), agents))
        print(f"launched {len(agents)} containers in {time.perf_counter() - started:.1f} s")
        results = asyncio.run(measure(settings, labels, agents, settings.container_name(agents[len(agents) // 2]),
                                      args.rate, args.presses, args.think))
        for name, value in results.items():
            print(f"{name:<40} {value:,.1f}" if isinstance(value, float) else f"{name:<40} {value:,}")
    finally:
        server.stop()
        for c in client.containers.list(all=True, filters={"name": prefix}):
            c.remove(force=True, v=True)
        for v in client.volumes.list(filters={"name": prefix}):
            v.remove(force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
