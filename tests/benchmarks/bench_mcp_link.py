"""The link's overhead on a tool call: McpLink.call_tool vs a bare SDK ClientSession call.

Both call ``qms_status`` on the same dev server (a sample project, a real subprocess on a free
loopback port), in alternating blocks so that drift in the machine's load hits both alike.
Prints the median and p90 of each and the ratio of the medians, per transport.

    python tests/benchmarks/bench_mcp_link.py [--calls 200] [--blocks 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mcp import ClientSession  # noqa: E402
from mcp.client.sse import sse_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from core.devserver.sample import init_project  # noqa: E402
from core.devserver.server import DevServerProcess  # noqa: E402
from core.mcp_link import McpLink  # noqa: E402

ARGS = {"doc_id": "CR-001", "user": "lead"}


async def bare_session(stack: AsyncExitStack, url: str, transport: str) -> ClientSession:
    if transport == "sse":
        read, write = await stack.enter_async_context(sse_client(url))
    else:
        read, write, _ = await stack.enter_async_context(streamable_http_client(url))
    session = await stack.enter_async_context(ClientSession(read, write))
    await session.initialize()
    return session


async def timed(call, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


async def bench(url: str, transport: str, calls: int, blocks: int) -> None:
    link = McpLink(url, ping_interval=3600)
    bare_times: list[float] = []
    link_times: list[float] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(link.run)
        await link.wait_connected(30)
        async with AsyncExitStack() as stack:
            session = await bare_session(stack, url, transport)

            async def bare() -> None:
                await session.call_tool("qms_status", ARGS)

            async def linked() -> None:
                await link.call_tool("qms_status", ARGS)

            await timed(bare, 20)  # warm-up
            await timed(linked, 20)
            per_block = max(1, calls // blocks)
            for _ in range(blocks):
                bare_times += await timed(bare, per_block)
                link_times += await timed(linked, per_block)
        tg.cancel_scope.cancel()
    b, lk = statistics.median(bare_times), statistics.median(link_times)
    print(f"{transport:<16} calls {len(bare_times):>4} each | bare SDK median {b:6.2f} ms p90 {p90(bare_times):6.2f} ms"
          f" | McpLink median {lk:6.2f} ms p90 {p90(link_times):6.2f} ms | ratio {lk / b:5.3f}"
          f" | stream events {link.stream.total}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per side (default: 200)")
    parser.add_argument("--blocks", type=int, default=4, help="alternating blocks (default: 4)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pipe-dream"
        init_project(root)
        for transport in ("sse", "streamable-http"):
            server = DevServerProcess(root, transport=transport)
            server.start()
            try:
                anyio.run(bench, server.url, transport, args.calls, args.blocks)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
