"""`qms-panel --demo`: the sample project in a temporary folder and a dev server of its own.

:func:`demo_environment` makes both and removes both on exit; :func:`run_demo` opens the panel
on them.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.devserver.sample import init_project
from core.devserver.server import DevServerProcess, Transport


@dataclass(frozen=True)
class DemoEnv:
    project_root: Path  # the sample project (it has QMS/)
    mcp_url: str  # the dev server, e.g. http://127.0.0.1:40123/sse
    transport: Transport
    log_path: Path  # the dev server's stderr
    gateway: dict[str, Any]  # the settings that point at the demo's gateway (listen, feed, state, container URL)


def _gateway_listen(root: Path) -> tuple[str, bool]:
    """Where the demo's gateway listens: the engine's bridge address when an engine answers (where
    containers reach host.docker.internal), else loopback with host clients let in."""
    from core.devserver.server import free_port

    try:
        from core.containers import ContainerManager
        from core.settings import Settings

        manager = ContainerManager(Settings(project_root=root))
        manager.ping(timeout=2.0)
        host = manager.bridge_gateway()
        manager.reset()
        return f"{host}:{free_port()}", False
    except Exception:  # noqa: BLE001 - no engine: the demo still runs, on loopback
        return f"127.0.0.1:{free_port()}", True


@contextmanager
def demo_environment(transport: Transport = "sse") -> Iterator[DemoEnv]:
    """Sample project, dev server on a free loopback port, and a gateway in front of it; all gone
    when the block ends."""
    from core.devserver.server import free_port
    from core.gateway.process import GatewayProcess

    with tempfile.TemporaryDirectory(prefix="qms-panel-demo-") as tmp:
        root = Path(tmp) / "pipe-dream"
        init_project(root)
        server = DevServerProcess(root, transport=transport, log_path=Path(tmp) / "devserver.log")
        server.start()
        listen, allow_host = _gateway_listen(root)
        host, port = listen.rsplit(":", 1)
        gateway_settings = {"gateway_listen": listen, "gateway_allow_host": allow_host,
                            "telemetry_listen": f"{host}:{free_port()}",  # 4318 may be another gateway's
                            "feed_listen": f"127.0.0.1:{free_port()}", "state_dir": Path(tmp) / "state",
                            "upstream_url": server.url,
                            "container_mcp_url": f"http://host.docker.internal:{port}/mcp"}
        flags = [f"--{k.replace('_', '-')}={str(v).lower() if isinstance(v, bool) else v}"
                 for k, v in gateway_settings.items() if k not in ("upstream_url", "container_mcp_url")]
        gateway = GatewayProcess(root, server.url, flags, log_path=Path(tmp) / "gateway.log")
        try:
            gateway.start()
            yield DemoEnv(project_root=root, mcp_url=server.url, transport=transport, log_path=server.log_path,
                          gateway=gateway_settings)
        finally:
            gateway.stop()
            server.stop()


def run_demo(overrides: dict[str, Any], config: Path | None = None) -> int:
    """Open the panel on a fresh sample project and its own dev server; remove both on exit.

    ``overrides`` are the settings flags given (``--agents``, ``--image``...); they still apply,
    except the project root and the MCP URL, which are the demo's own.
    """
    import signal

    from core.settings import load_settings
    from tui.launch import run_app

    def leave(signum: int, _frame: object) -> None:  # a closed terminal or a kill: still clean up
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)
    with demo_environment() as env:
        overrides = overrides | env.gateway | {"project_root": env.project_root, "mcp_url": env.mcp_url,
                                 "mcp_transport": env.transport, "agents": overrides.get("agents") or "claude,lead,qa"}
        settings = load_settings(overrides, config)
        code = run_app(settings)
    print(f"qms-panel demo: stopped; removed {env.project_root.parent}", file=sys.stderr)
    return code
