"""`qms-panel --demo`: the sample project in a temporary folder and a dev server of its own.

:func:`demo_environment` makes both and removes both on exit; :func:`run_demo` opens the panel
on them.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.devserver.sample import init_project
from core.devserver.server import DevServerProcess, Transport


DEMO_IDENTITY_TTL = 10.0  # seconds the demo's server keeps an agent's identity after its last call
DEMO_STUCK_AFTER = "15s"  # a demo checkout idle this long is stale


@dataclass(frozen=True)
class DemoEnv:
    project_root: Path  # the sample project (it has QMS/)
    mcp_url: str  # the dev server, e.g. http://127.0.0.1:40123/sse
    transport: Transport
    log_path: Path  # the dev server's stderr
    gateway: dict[str, Any]  # the settings that point at the demo's gateway (listen, feed, state, container URL)
    engine: bool  # an engine answered: the agents run in containers (else on the host, simulated)
    folder: Path  # the temporary folder that holds it all

    @property
    def host_mcp_url(self) -> str:
        """The gateway's MCP URL for a client on the host (the simulated agents)."""
        return f"http://{self.gateway['gateway_listen']}/mcp"


def _gateway_listen(root: Path) -> tuple[str, bool]:
    """Where the demo's gateway listens: the engine's bridge address when an engine answers (where
    containers reach host.docker.internal), on port 8000 as the vision has it when that is free
    (the agents' baked ``/.mcp.json`` is then true), else on a free port; without an engine,
    loopback with host clients let in."""
    import socket

    from core.devserver.server import free_port

    try:
        from core.containers import ContainerManager
        from core.settings import Settings

        manager = ContainerManager(Settings(project_root=root))
        manager.ping(timeout=2.0)
        host = manager.bridge_gateway()
        manager.reset()
    except Exception:  # noqa: BLE001 - no engine: the demo still runs, on loopback
        return f"127.0.0.1:{free_port()}", True
    try:
        with socket.create_server((host, 8000)):
            port = 8000
    except OSError:  # taken (the operator's gateway, another demo): any free port
        port = free_port(host)
    return f"{host}:{port}", False


@contextmanager
def demo_environment(transport: Transport = "sse") -> Iterator[DemoEnv]:
    """Sample project, dev server on a free loopback port, and a gateway in front of it; all gone
    when the block ends."""
    from core.devserver.server import free_port
    from core.gateway.process import GatewayProcess

    with tempfile.TemporaryDirectory(prefix="qms-panel-demo-") as tmp:
        root = Path(tmp) / "pipe-dream"
        init_project(root)
        # a short identity lock: a demo agent that went quiet lets the operator check its document in soon
        server = DevServerProcess(root, transport=transport, identity_ttl=DEMO_IDENTITY_TTL,
                                  log_path=Path(tmp) / "devserver.log")
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
                          gateway=gateway_settings, engine=not allow_host, folder=Path(tmp))
        finally:
            gateway.stop()
            server.stop()


def run_demo(overrides: dict[str, Any], config: Path | None = None) -> int:
    """Open the panel on a fresh sample project, its own dev server and gateway, and demo agents
    doing QMS work through that gateway; remove all of it on exit (``q``, ctrl+c, SIGTERM, SIGHUP).

    ``overrides`` are the settings flags given (``--agents``...); they still apply, except what
    makes the demo its own: the project root, the MCP URLs, the container prefix and the image.
    """
    import signal

    from core.demo.agents import DemoAgents, demo_prefix
    from core.demo.image import demo_image_recipe
    from core.errors import QmsPanelError
    from core.settings import load_settings
    from tui.launch import run_app

    def leave(signum: int, _frame: object) -> None:  # a closed terminal or a kill: still clean up
        hold_signals()  # a second signal (a closing terminal sends more than one) must not cut the cleanup short
        raise SystemExit(128 + signum)

    def hold_signals() -> None:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)
    try:
        image = demo_image_recipe()[0]
    except QmsPanelError as exc:  # no static busybox: the demo runs, its agents on the host
        image, no_image = "qms-panel-demo-agent:unbuilt", exc
    else:
        no_image = None
    with demo_environment() as env:
        overrides = overrides | env.gateway | {
            "project_root": env.project_root, "mcp_url": env.mcp_url, "mcp_transport": env.transport,
            "agents": overrides.get("agents") or "claude,lead,qa", "container_prefix": demo_prefix(),
            "image": image, "stuck_after": overrides.get("stuck_after") or DEMO_STUCK_AFTER}
        settings = load_settings(overrides, config)
        agents = DemoAgents(settings, log_dir=env.folder)

        def after(say: Callable[[str], None]) -> None:  # the panel is live: start the agents
            if env.engine and no_image is None:
                agents.launch_containers(say)
            else:
                if no_image is not None:
                    say(f"{no_image}; the demo agents run on the host instead")
                agents.start_host_routines(env.host_mcp_url, say)

        try:
            code = run_app(settings, after=after)
        except SystemExit as stop:  # SIGTERM/SIGHUP (leave): clean up, then exit as the caller does
            code = stop.code if isinstance(stop.code, int) else 1
        finally:
            hold_signals()
            removed = agents.remove_all()
    print(f"qms-panel demo: stopped; removed {removed.line()} and {env.folder}", file=sys.stderr)
    return code
