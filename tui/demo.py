"""`qms-panel --demo`: the sample project in a temporary folder and a dev server of its own.

:func:`demo_environment` makes both and removes both on exit; the app will open on it. Until the
app lands, :func:`run_demo` prints what it started and waits for Ctrl-C.
"""

from __future__ import annotations

import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.devserver.sample import init_project
from core.devserver.server import DevServerProcess, Transport


@dataclass(frozen=True)
class DemoEnv:
    project_root: Path  # the sample project (it has QMS/)
    mcp_url: str  # the dev server, e.g. http://127.0.0.1:40123/sse
    transport: Transport
    log_path: Path  # the dev server's stderr


@contextmanager
def demo_environment(transport: Transport = "sse") -> Iterator[DemoEnv]:
    """Sample project + dev server on a free loopback port; both gone when the block ends."""
    with tempfile.TemporaryDirectory(prefix="qms-panel-demo-") as tmp:
        root = Path(tmp) / "pipe-dream"
        init_project(root)
        server = DevServerProcess(root, transport=transport, log_path=Path(tmp) / "devserver.log")
        server.start()
        try:
            yield DemoEnv(project_root=root, mcp_url=server.url, transport=transport, log_path=server.log_path)
        finally:
            server.stop()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_demo(args) -> int:
    # Ctrl-C and SIGTERM both end the wait and clean up (even if SIGINT came in ignored).
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with demo_environment() as env:
            print(f"qms-panel demo: sample project {env.project_root}")
            print(f"qms-panel demo: MCP server {env.mcp_url} ({env.transport}; log {env.log_path})")
            print("qms-panel demo: the panel is not built yet; press Ctrl-C to stop and clean up", flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
        print("qms-panel demo: stopped, temporary files removed")
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
