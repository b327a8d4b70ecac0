"""The gateway as the operator runs it: ``qms-panel gateway --json`` as a real subprocess.

``gateway_factory(project_root, upstream_url, listen=None, allow_host=False, call_timeout="10s")``
starts one (agents on ``listen``, default the Docker bridge address on a free port; its feed on a
free loopback port, its token in the test's state folder), waits for its ``listening`` line and
stops every one it made at teardown. ``container_post`` runs busybox wget inside a container: a
bare streamable-HTTP ``tools/call`` as the real server accepts it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from core.devserver.server import free_port

ROOT = Path(__file__).resolve().parents[2]
@functools.lru_cache(maxsize=1)
def bridge_address() -> str:
    """The host's address on the default bridge, as the engine says."""
    import docker

    from core.containers import ContainerManager
    from core.settings import Settings

    client = docker.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "QMS").mkdir()
        try:
            return ContainerManager(Settings(project_root=tmp), client=client).bridge_gateway()
        finally:
            client.close()


class GatewayProcess:
    def __init__(self, project_root: Path, upstream_url: str, state_dir: Path, *, listen: str,
                 allow_host: bool = False, call_timeout: str = "10s", extra: list[str] | None = None) -> None:
        self.project_root, self.upstream_url, self.state_dir = project_root, upstream_url, state_dir
        self.listen = listen
        self.feed_listen = f"127.0.0.1:{free_port()}"
        self.telemetry_listen = f"{listen.rsplit(':', 1)[0]}:{free_port()}"  # never 4318: tests run side by side
        self.allow_host, self.call_timeout, self.extra = allow_host, call_timeout, extra or []
        self.proc: subprocess.Popen | None = None
        self.output = Path(tempfile.mkstemp(prefix="qms-gateway-", suffix=".out")[1])

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def flags(self) -> list[str]:
        return ["--project-root", str(self.project_root), "--upstream-url", self.upstream_url,
                "--gateway-listen", self.listen, "--feed-listen", self.feed_listen, "--state-dir", str(self.state_dir),
                "--telemetry-listen", self.telemetry_listen,
                "--gateway-allow-host", "true" if self.allow_host else "false", "--call-timeout", self.call_timeout,
                *self.extra]

    def start(self, timeout: float = 20) -> None:
        out = self.output.open("w")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "gateway", "--json", *self.flags()],
                                     stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if '"kind": "listening"' in self.output.read_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited {self.proc.returncode}: {self.output.read_text()}")
            time.sleep(0.05)
        raise RuntimeError(f"the gateway did not listen within {timeout} s: {self.output.read_text()}")

    def events(self) -> list[dict]:
        rows = []
        for line in self.output.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
        return rows

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None


@pytest.fixture
def gateway_factory(tmp_path):
    made: list[GatewayProcess] = []

    def make(project_root: Path, upstream_url: str, *, listen: str | None = None, allow_host: bool = False,
             call_timeout: str = "10s", extra: list[str] | None = None, start: bool = True) -> GatewayProcess:
        gw = GatewayProcess(project_root, upstream_url, tmp_path / f"state{len(made)}",
                            listen=listen or f"{bridge_address()}:{free_port()}", allow_host=allow_host,
                            call_timeout=call_timeout, extra=extra)
        made.append(gw)
        if start:
            gw.start()
        return gw

    yield make
    for gw in made:
        gw.stop()
        gw.output.unlink(missing_ok=True)


@dataclasses.dataclass
class Strangers:
    """Two containers the gateway must refuse: one of another qms-panel project (``manager``'s,
    its root ``root``), one qms-panel never made. ``names`` are theirs; ``manager`` can exec in both."""
    manager: object
    root: Path
    names: list[str]


@pytest.fixture
def strangers(tmp_path, test_image, unique_prefix, docker_client):
    from core.containers import ContainerManager
    from core.settings import Settings
    from support.docker_env import TEST_LABEL

    other_root = tmp_path / "other" / "pipe-dream"
    (other_root / "QMS").mkdir(parents=True)
    other = ContainerManager(Settings(project_root=other_root, image=test_image, container_prefix=unique_prefix + "o-"),
                             client=docker_client, extra_labels={TEST_LABEL: "1"})
    other_row = other.launch("claude", command=["sleep", "3600"])
    plain = docker_client.containers.run(test_image, ["sleep", "3600"], name=unique_prefix + "plain", detach=True,
                                         labels={TEST_LABEL: "1"},
                                         extra_hosts={"host.docker.internal": "host-gateway"})
    try:
        yield Strangers(manager=other, root=other_root, names=[other_row.name, plain.name])
    finally:
        other.remove("claude", remove_volume=True)
        plain.remove(force=True)


def call_body(tool: str, request_id: int = 1, **arguments) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                       "params": {"name": tool, "arguments": arguments}})


def container_post(manager, container: str, port: int, body: str, path: str = "/mcp", timeout: float = 30):
    """busybox wget inside ``container``: POST ``body`` to the gateway as host.docker.internal."""
    argv = ["wget", "-q", "-O", "-", "--header", "Content-Type: application/json",
            "--header", "Accept: application/json, text/event-stream", "--post-data", body,
            f"http://host.docker.internal:{port}{path}"]
    return manager.exec(container, argv, timeout=timeout)


def tool_text(output: str) -> str:
    """The tool result's text in an SSE-framed or JSON reply body."""
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("data:"):
            line = line[5:].strip()
        if line.startswith("{"):
            data = json.loads(line)
            if "result" in data:
                return "\n".join(c.get("text", "") for c in data["result"].get("content", []))
            if "error" in data:
                return "ERROR " + data["error"]["message"]
    return ""
