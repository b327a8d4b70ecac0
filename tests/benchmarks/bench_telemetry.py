"""The telemetry receiver under the agent-activity issue's load: N agent containers of this project
(the busybox test image) each export a batch of Claude Code log records every second (OTLP/HTTP
protobuf, encoded by the OpenTelemetry SDK) and post hooks at ``--hooks`` a second, for
``--seconds`` after a warm-up. Each sender's socket is made inside its container's network
namespace (``setns``), so the receiver sees the container's own address, as it does for Claude Code.

The board is the panel's: a :class:`core.gateway.calls_board.CallsBoard` following the gateway's
feed in this process. Prints receive-to-board (the gateway's receive stamp to the board applying the
event) and send-to-board p50/p95, the gateway process's CPU over the window (% of one core: the
receiver, the feed and the gateway together, an upper bound for the receiver), and its RSS after
the warm-up and at the end. Targets: receive-to-board p95 < 50 ms, CPU < 10%, RSS flat.

    python tests/benchmarks/bench_telemetry.py [--containers 20 --hooks 5 --seconds 300 --warmup 45]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from core.devserver.sample import init_project  # noqa: E402
from core.devserver.server import free_port  # noqa: E402
from core.gateway.calls_board import CallsBoard  # noqa: E402
from core.gateway.events import ActivityEvent  # noqa: E402
from core.gateway.feed_client import FeedClient  # noqa: E402
from support.gateway import GatewayProcess, bridge_address  # noqa: E402

CLONE_NEWNET = 0x40000000
DEAD_UPSTREAM = "http://127.0.0.1:9/mcp"
LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def log_batch():
    """A batch of five Claude Code log records as the OpenTelemetry SDK encodes it (the message, to
    re-stamp each send's session.id)."""
    from opentelemetry._logs import LogRecord
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    class Keep:
        def __init__(self):
            self.records = []

        def export(self, batch):
            self.records += list(batch)
            return 0

        def shutdown(self):
            pass

        def force_flush(self, timeout_millis=0):
            return True

    keep = Keep()
    provider = LoggerProvider(resource=Resource.create({"service.name": "claude-code"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(keep))
    logger = provider.get_logger("com.anthropic.claude_code")
    records = [
        ("claude_code.api_request", {"model": "claude-sonnet-4", "input_tokens": 1200, "output_tokens": 300,
                                     "cost_usd": 0.01, "duration_ms": 1800}),
        ("claude_code.tool_decision", {"tool_name": "Bash", "decision": "accept", "source": "config"}),
        ("claude_code.tool_result", {"tool_name": "Bash", "success": "true", "duration_ms": 420}),
        ("claude_code.api_request", {"model": "claude-sonnet-4", "input_tokens": 900, "output_tokens": 120,
                                     "cost_usd": 0.005, "duration_ms": 900}),
        ("claude_code.tool_result", {"tool_name": "Edit", "success": "true", "duration_ms": 12}),
    ]
    for body, attributes in records:
        logger.emit(LogRecord(body=body, attributes={"event.name": body.split(".", 1)[1], "session.id": "x",
                                                     **attributes}))
    return encode_logs(keep.records)


def stamp_session(message, marker: str) -> bytes:
    for resource_logs in message.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                for kv in record.attributes:
                    if kv.key == "session.id":
                        kv.value.string_value = marker
    return message.SerializeToString()


def socket_in(pid: int, address: tuple[str, int]) -> socket.socket:
    """A TCP connection to ``address`` made from inside the network namespace of process ``pid``."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    theirs = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if LIBC.setns(theirs, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the container's network namespace")
        try:
            sock = socket.create_connection(address, timeout=5)
        finally:
            if LIBC.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(theirs)
    sock.setblocking(False)
    return sock


class Sender:
    """One agent's keep-alive HTTP/1.1 connection to the receiver, from its container."""

    def __init__(self, pid: int, address: tuple[str, int]) -> None:
        self.pid, self.address = pid, address
        self.reader = self.writer = None
        self.failures = 0

    async def post(self, path: str, kind: str, body: bytes) -> None:
        for attempt in (1, 2):
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(sock=socket_in(self.pid, self.address))
                head = (f"POST {path} HTTP/1.1\r\nHost: receiver\r\nContent-Type: {kind}\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode()
                self.writer.write(head + body)
                status = await self.reader.readline()
                length = 0
                while (line := await self.reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await self.reader.readexactly(length)
                if b" 200 " not in status:
                    self.failures += 1
                return
            except (OSError, asyncio.IncompleteReadError):
                self.writer = None
                if attempt == 2:
                    self.failures += 1


async def agent_loop(i: int, sender: Sender, batch, hooks: float, sent: dict[str, float], stop: float) -> None:
    n = 0
    next_log = time.monotonic()
    gap = 1 / hooks
    while time.monotonic() < stop:
        n += 1
        marker = f"a{i}-h{n}"
        hook = {"hook_event_name": "PostToolUse", "session_id": marker, "tool_name": "Bash",
                "tool_input": {"command": f"npm test -- {n}"}, "tool_response": {"stdout": "ok"}}
        sent[marker] = time.time()
        await sender.post("/hooks", "application/json", json.dumps(hook).encode())
        if time.monotonic() >= next_log:
            marker = f"a{i}-l{n}"
            body = stamp_session(batch, marker)
            sent[marker] = time.time()
            await sender.post("/v1/logs", "application/x-protobuf", body)
            next_log += 1
        await asyncio.sleep(gap)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values[0] if values else float("nan"))


async def follow(board: CallsBoard, sent: dict[str, float], window: list[float], receive: list[float],
                 send: list[float]) -> None:
    async for update in board.follow():
        event = update.event
        if not isinstance(event, ActivityEvent):
            continue
        now = time.time()
        if not window[0] <= now < window[1]:
            continue
        receive.append((now - event.time.timestamp()) * 1000)
        marker = event.attributes.get("session_id") or event.attributes.get("session.id")
        if marker in sent:
            send.append((now - sent[marker]) * 1000)


async def main() -> None:
    import docker

    from core.containers import ContainerManager
    from core.settings import Settings
    from support.docker_env import TEST_LABEL, ensure_test_image

    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--hooks", type=float, default=5, help="hooks a second per agent")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--warmup", type=float, default=45)
    args = parser.parse_args()

    client = docker.from_env()
    image = ensure_test_image(client)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pipe-dream"
        init_project(root)
        gw = GatewayProcess(root, DEAD_UPSTREAM, Path(tmp) / "state", listen=f"{bridge_address()}:{free_port()}",
                            extra=["--quiet"])
        gw.start()
        prefix = f"qmsbench-{os.getpid()}-"
        agents = [f"a{i}" for i in range(args.containers)]
        manager = ContainerManager(Settings(project_root=root, image=image, container_prefix=prefix, agents=agents),
                                   client=client, extra_labels={TEST_LABEL: "1"})
        host, port = gw.telemetry_listen.rsplit(":", 1)
        try:
            rows = [manager.launch(a, command=["sleep", "3600"]) for a in agents]
            pids = [client.api.inspect_container(r.id)["State"]["Pid"] for r in rows]
            senders = [Sender(pid, (host, int(port))) for pid in pids]
            batch = log_batch()
            board = CallsBoard(lambda: FeedClient(gw.feed_listen, Path(tmp) / "state" / "gateway-feed.token"))
            sent: dict[str, float] = {}
            receive: list[float] = []
            send: list[float] = []
            start = time.monotonic()
            window = [time.time() + args.warmup, time.time() + args.warmup + args.seconds]
            follower = asyncio.create_task(follow(board, sent, window, receive, send))
            loops = [asyncio.create_task(agent_loop(i, s, batch, args.hooks, sent, start + args.warmup + args.seconds))
                     for i, s in enumerate(senders)]
            await asyncio.sleep(args.warmup)
            cpu0, rss_warm, t0 = cpu_seconds(gw.proc.pid), rss_kb(gw.proc.pid), time.monotonic()
            await asyncio.gather(*loops)
            cpu1, rss_end, t1 = cpu_seconds(gw.proc.pid), rss_kb(gw.proc.pid), time.monotonic()
            await asyncio.sleep(1)
            follower.cancel()
            failures = sum(s.failures for s in senders)
            rate = len(receive) / args.seconds
            print(f"telemetry: {args.containers} agents x (1 log batch of 5 records + {args.hooks:g} hooks)/s for "
                  f"{args.seconds:.0f} s after {args.warmup:.0f} s: {len(receive)} events on the board "
                  f"({rate:.0f}/s), failed posts {failures}, board ignored {board.activity.view(datetime.now(UTC)).ignored}")
            print(f"      receive-to-board p50 {pct(receive, 50):.1f} ms p95 {pct(receive, 95):.1f} ms; "
                  f"send-to-board p50 {pct(send, 50):.1f} ms p95 {pct(send, 95):.1f} ms")
            print(f"      gateway CPU {(cpu1 - cpu0) / (t1 - t0) * 100:.1f}% of one core; RSS after warm-up "
                  f"{rss_warm / 1024:.1f} MiB, at the end {rss_end / 1024:.1f} MiB "
                  f"({(rss_end - rss_warm) / max(rss_warm, 1) * 100:+.1f}%)")
        finally:
            for agent in agents:
                try:
                    manager.remove(agent, remove_volume=True)
                except Exception:  # noqa: BLE001 - best effort
                    pass
            gw.stop()
            client.close()


if __name__ == "__main__":
    asyncio.run(main())
