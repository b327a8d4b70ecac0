"""The gateway's cost: a tool call through ``qms-panel gateway`` against the same call direct to the
server, and the gateway under load from real agent containers.

Overhead: the MCP SDK's own client calls ``qms_status`` on the dev server (a real subprocess on a
loopback port), directly and through a gateway process (loopback, ``gateway_allow_host``), in
alternating blocks, same transport on both sides of the gateway. Prints median and p95 of each
and the difference (target: +2 ms median, +10% p95).

Load (``--load``): N agent containers of this project (the busybox test image) each POST a tool
call through the gateway in a loop (about ``--rate`` a second each) for ``--seconds``, while a
host client measures latency and ``qms-panel watch --json`` reads the feed. Prints the error
count, the host client's p95 loaded against unloaded, and the gateway's RSS after warm-up and at
the end (target: no error, p95 within 2x, RSS within 10%).

    python tests/benchmarks/bench_gateway.py [--calls 500] [--load --containers 20 --rate 10 --seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mcp import ClientSession  # noqa: E402
from mcp.client.sse import sse_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from core.devserver.sample import init_project  # noqa: E402
from core.devserver.server import DevServerProcess, free_port  # noqa: E402
from support.gateway import GatewayProcess, bridge_address, call_body  # noqa: E402

ARGS = {"doc_id": "CR-001", "user": "lead"}


async def session(stack: AsyncExitStack, url: str, transport: str) -> ClientSession:
    if transport == "sse":
        read, write = await stack.enter_async_context(sse_client(url))
    else:
        read, write, _ = await stack.enter_async_context(streamable_http_client(url))
    s = await stack.enter_async_context(ClientSession(read, write))
    await s.initialize()
    return s


async def timed(s: ClientSession, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = await s.call_tool("qms_status", ARGS)
        out.append((time.perf_counter() - t0) * 1000)
        assert not result.isError, result
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def overhead(transport: str, calls: int, blocks: int, tmp: Path) -> None:
    root = tmp / transport / "pipe-dream"
    init_project(root)
    server = DevServerProcess(root, transport=transport, log_path=tmp / f"{transport}.log")
    server.start()
    gw = GatewayProcess(root, server.url, tmp / f"state-{transport}", listen=f"127.0.0.1:{free_port()}",
                        allow_host=True, extra=["--quiet"])
    gw.start()
    path = "sse" if transport == "sse" else "mcp"
    try:
        direct: list[float] = []
        through: list[float] = []
        async with AsyncExitStack() as stack:
            d = await session(stack, server.url, transport)
            g = await session(stack, f"http://{gw.listen}/{path}", transport)
            await timed(d, 20)
            await timed(g, 20)
            for _ in range(blocks):
                direct += await timed(d, calls // blocks)
                through += await timed(g, calls // blocks)
        md, mg = statistics.median(direct), statistics.median(through)
        pd, pg = p95(direct), p95(through)
        print(f"{transport:16} direct median {md:6.2f} ms p95 {pd:6.2f} | gateway median {mg:6.2f} ms p95 {pg:6.2f}"
              f" | +{mg - md:5.2f} ms median, p95 x{pg / pd:4.2f}")
    finally:
        gw.stop()
        server.stop()


async def load(containers: int, rate: float, seconds: float, tmp: Path, warmup: float = 45) -> None:
    import docker

    from core.containers import ContainerManager
    from core.settings import Settings
    from support.docker_env import TEST_LABEL, ensure_test_image

    client = docker.from_env()
    image = ensure_test_image(client)
    root = tmp / "load" / "pipe-dream"
    init_project(root)
    server = DevServerProcess(root, transport="streamable-http", log_path=tmp / "load.log")
    server.start()
    gw = GatewayProcess(root, server.url, tmp / "state-load", listen=f"{bridge_address()}:{free_port()}")
    gw.start()
    prefix = f"qmsbench-{os.getpid()}-"
    settings = Settings(project_root=root, image=image, container_prefix=prefix, agents=["a0"])
    manager = ContainerManager(settings, client=client, extra_labels={TEST_LABEL: "1"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    watch = subprocess.Popen([sys.executable, "-m", "tui.cli", "watch", "--json", *gw.flags()], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # a reader of the feed
    agents = [f"a{i}" for i in range(containers)]
    sleep = max(0.0, 1 / rate - 0.02)

    def launch(agent: str) -> None:
        body = call_body("qms_inbox", user=agent)
        loop = (f"while :; do wget -q -O /dev/null --header 'Content-Type: application/json' "
                f"--header 'Accept: application/json, text/event-stream' --post-data '{body}' "
                f"http://host.docker.internal:{gw.port}/mcp || echo FAIL; sleep {sleep}; done")
        manager.launch(agent, command=["sh", "-c", loop])

    try:
        launch(agents[0])
        await anyio.sleep(15)
        alone_until = time.time()
        for agent in agents[1:]:
            await anyio.to_thread.run_sync(launch, agent)
        await anyio.sleep(warmup)  # long enough for the hub's ring (10,000 events) to be full: RSS is then flat
        rss_warm, loaded_from = rss_kb(gw.proc.pid), time.time()
        await anyio.sleep(seconds)
        rss_end, loaded_until = rss_kb(gw.proc.pid), time.time()
        watch.terminate()
        events = gw.events()  # what the gateway printed (--json), one event a line
        calls = [e for e in events if e.get("kind") == "mcp" and e.get("direction") == "out"]

        def stamp(e: dict) -> float:
            from datetime import datetime
            return datetime.fromisoformat(e["time"]).timestamp()

        alone = [e["latency_ms"] for e in calls if stamp(e) < alone_until]
        loaded = [e for e in calls if loaded_from <= stamp(e) < loaded_until]
        errors = [e for e in calls if e.get("outcome") != "ok"]
        gaps = [e for e in events if e.get("kind") == "gap"]
        failed_wgets = 0
        for agent in agents:
            logs = client.api.logs(f"{prefix}{agent}").decode(errors="replace")
            failed_wgets += logs.count("FAIL")
        lat = [e["latency_ms"] for e in loaded]
        print(f"load: {containers} containers x ~{rate}/s for {seconds:.0f} s: {len(loaded)} calls "
              f"({len(loaded) / seconds:.0f}/s); not ok on the feed: {len(errors)}; failed wgets: "
              f"{failed_wgets}; feed gaps: {len(gaps)}")
        print(f"      gateway latency (request in -> reply out): one agent p95 {p95(alone):.1f} ms (median "
              f"{statistics.median(alone):.1f}); {containers} agents p95 {p95(lat):.1f} ms (median "
              f"{statistics.median(lat):.1f}) -> x{p95(lat) / p95(alone):.2f}")
        print(f"      gateway RSS after warm-up {rss_warm / 1024:.1f} MiB, at the end {rss_end / 1024:.1f} MiB "
              f"({(rss_end - rss_warm) / max(rss_warm, 1) * 100:+.1f}%)")
    finally:
        watch.kill()
        for agent in agents:
            try:
                manager.remove(agent, remove_volume=True)
            except Exception:  # noqa: BLE001
                pass
        gw.stop()
        server.stop()
        client.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--load", action="store_true")
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=45, help="seconds of full load before RSS is first read")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.load:
            await load(args.containers, args.rate, args.seconds, Path(tmp), args.warmup)
        else:
            for transport in ("streamable-http", "sse"):
                await overhead(transport, args.calls, args.blocks, Path(tmp))


if __name__ == "__main__":
    anyio.run(main)
