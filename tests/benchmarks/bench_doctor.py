"""Benchmark: one doctor run over N agent containers, with the MCP server down, stalled and up.

Launches N busybox agent containers (the tests' image: the probe is busybox wget), then times
``run_doctor`` (host check and every container check) against: a closed port (server down: each
probe is refused at once), a socket that accepts and never answers (server stalled: each probe
waits its timeout) and the real dev server on all interfaces (server up). Each case runs with
the doctor's bound (``CONCURRENCY`` execs being started at once; every check waits at the same
time) and with one start at a time. ``--serial`` also times checks one after another, as the
doctor did before it ran them together. Everything it makes is named ``qmsbench-*`` and removed
at the end, even on Ctrl-C.

    python tests/benchmarks/bench_doctor.py [--containers 20] [--timeout 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import docker  # noqa: E402

from core.containers import ContainerManager  # noqa: E402
from core.devserver.sample import init_project  # noqa: E402
from core.devserver.server import DevServerProcess, free_port  # noqa: E402
from core.doctor import CONCURRENCY, run_doctor  # noqa: E402
from core.settings import Settings  # noqa: E402
from support.docker_env import TEST_LABEL, ensure_test_image, remove_by_prefix  # noqa: E402


def run_once(settings: Settings, manager: ContainerManager, rows, timeout: float, concurrency: int,
             why: bool = False) -> tuple[float, int]:
    """Seconds one doctor run took, and how many container checks passed (``why``: print each failure).

    ``concurrency`` 0 runs the checks one after another."""
    t0 = time.perf_counter()
    if concurrency == 0:
        async def serial():
            reports = [await run_doctor(settings, manager, [row], timeout=timeout) for row in rows]
            return reports[0].model_copy(update={"containers": [c for r in reports for c in r.containers]})
        report = anyio.run(serial)
    else:
        report = anyio.run(lambda: run_doctor(settings, manager, rows, timeout=timeout, concurrency=concurrency))
    took = time.perf_counter() - t0
    if why:
        for r in report.containers:
            if not r.ok:
                print("   ", r.where, r.failure, r.detail, file=sys.stderr)
    return took, sum(r.ok for r in report.containers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=2.0, help="the doctor's per-check timeout (seconds)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bound", type=int, action="append",
                        help=f"execs started at once (repeatable; default: {CONCURRENCY}, the doctor's, and 1)")
    parser.add_argument("--serial", action="store_true", help="also time the checks one after another")
    parser.add_argument("--why", action="store_true", help="print why each failed check failed")
    opts = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # cleanup on kill too, not only Ctrl-C

    client = docker.from_env(timeout=120)
    prefix = f"qmsbench-{uuid.uuid4().hex[:6]}-"  # not qmst-: test sessions sweep those
    workdir = Path(tempfile.mkdtemp(prefix="qms-bench-"))
    root = workdir / "pipe-dream"
    init_project(root)
    base = Settings.model_construct(project_root=root, image=ensure_test_image(client), container_prefix=prefix)
    manager = ContainerManager(base, extra_labels={TEST_LABEL: "1"})
    server = DevServerProcess(root, "sse", "0.0.0.0")
    stalled = socket.socket()
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda a: manager.launch(a, ["sleep", "3600"]), [f"a{n:02d}" for n in range(opts.containers)]))
        rows = manager.list()
        server.start()
        stalled.bind(("0.0.0.0", 0))
        stalled.listen(512)
        down = free_port()
        cases = {
            "down (refused)": down,
            "stalled (never answers)": stalled.getsockname()[1],
            "up (dev server, SSE)": server.port,
        }
        bounds = (opts.bound or [CONCURRENCY, 1]) + ([0] if opts.serial else [])
        print(f"{len(rows)} containers, per-check timeout {opts.timeout:g} s, median of {opts.rounds} runs")
        for case, port in cases.items():
            settings = base.model_copy(update={"mcp_url": f"http://127.0.0.1:{port}/sse",
                                               "container_mcp_url": f"http://host.docker.internal:{port}/sse"})
            for bound in bounds:
                runs = [run_once(settings, manager, rows, opts.timeout, bound, opts.why) for _ in range(opts.rounds)]
                took = [t for t, _ in runs]
                how = "one check after another" if bound == 0 else f"{bound} exec start(s) at once"
                print(f"  server {case:<24} {how:<24} {statistics.median(took):6.2f} s "
                      f"(min {min(took):.2f}, max {max(took):.2f}); {runs[-1][1]}/{len(rows)} passed")
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        stalled.close()
        server.stop()
        remove_by_prefix(client, prefix)
        shutil.rmtree(workdir, ignore_errors=True)
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
