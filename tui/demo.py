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


def run_demo(overrides: dict[str, Any], config: Path | None = None) -> int:
    """Open the panel on a fresh sample project and its own dev server; remove both on exit.

    ``overrides`` are the settings flags given (``--agents``, ``--image``...); they still apply,
    except the project root and the MCP URL, which are the demo's own.
    """
    from core.settings import load_settings
    from tui.launch import run_app

    with demo_environment() as env:
        overrides = overrides | {"project_root": env.project_root, "mcp_url": env.mcp_url,
                                 "mcp_transport": env.transport, "agents": overrides.get("agents") or "claude,lead,qa"}
        settings = load_settings(overrides, config)
        code = run_app(settings)
    print(f"qms-panel demo: stopped; removed {env.project_root.parent}", file=sys.stderr)
    return code
