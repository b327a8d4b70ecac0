"""``qms-panel gateway`` as a child process (the demo's): started like the dev server, it returns
once the gateway listens, and stops with SIGTERM then SIGKILL. Its settings are flags."""

from __future__ import annotations

import sys
from pathlib import Path

from core.devserver.server import DevServerProcess


class GatewayProcess(DevServerProcess):
    """The gateway for ``project_root`` in front of ``upstream_url``; ``flags`` are settings flags
    (``--gateway-listen``, ``--feed-listen``, ``--state-dir``...). ``start()`` waits for its first
    line (``--json``: the ``listening`` object)."""

    def __init__(self, project_root: Path, upstream_url: str, flags: list[str], log_path: Path | None = None) -> None:
        super().__init__(project_root, log_path=log_path)
        self.upstream_url = upstream_url
        self.flags = flags

    @property
    def url(self) -> str:
        return self.upstream_url

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tui.cli", "gateway", "--json", "--quiet", "--project-root",
                str(self.project_root.resolve()), "--upstream-url", self.upstream_url, *self.flags]
