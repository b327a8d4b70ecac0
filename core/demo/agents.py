"""The demo's agents, launched, run and removed.

With an engine, each demo agent is a container launched exactly as the panel launches a real agent
(:meth:`core.containers.ContainerManager.launch`: our labels, the matrix's mounts, ``HOME=/``, the
telemetry environment), from the demo image, its routine (``routine.sh``) as the command, with one
more label (:data:`DEMO_LABEL`). Without one, the same routine runs as host processes through the
gateway's loopback allowance, on the host's workspace folders, marked ``simulated`` in their log
and their process arguments.

:meth:`DemoAgents.remove_all` removes what the demo made for its project root: every container and
volume with our managed label and that root's label (so also those the operator launched from the
demo with ``s``), never chosen by name, and the host routines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core import layout
from core.containers import LABEL_MANAGED, LABEL_PROJECT_ROOT, ContainerManager
from core.demo.image import ROUTINE_PATH, ensure_demo_image
from core.settings import Settings
from core.telemetry.agent_env import receiver_port

DEMO_LABEL = "qms-panel.demo"
ROLES = {"claude": "worker", "lead": "drifter", "qa": "rogue"}  # the sample project's users (routine.sh says the roles)
Say = Callable[[str], None]


def demo_prefix() -> str:
    """A container-name prefix of this demo's own: it never meets the operator's ``qms-agent-*``
    containers or another demo's."""
    return f"qms-demo-{uuid.uuid4().hex[:6]}-"


def role_of(agent: str) -> str:
    return ROLES.get(agent, "worker")


@dataclass
class Removed:
    containers: int = 0
    volumes: int = 0
    routines: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        said = f"{self.containers} container(s), {self.volumes} volume(s), {self.routines} host routine(s)"
        return said + (f"; could not remove: {'; '.join(self.errors)}" if self.errors else "")


class DemoAgents:
    """The demo's agents for ``settings`` (the demo's own: its project root, prefix and gateway)."""

    def __init__(self, settings: Settings, *, log_dir: Path) -> None:
        self.settings = settings
        self.root = Path(settings.project_root).resolve()
        self.log_dir = log_dir
        self.manager = ContainerManager(settings, extra_labels={DEMO_LABEL: "true"})
        self.routines: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self._stopping = False

    def scripted(self) -> list[str]:
        """The agents the demo starts itself (the sample project's users); any other agent declared is
        the operator's to launch with ``s``."""
        return [agent for agent in self.settings.agents if agent in ROLES]

    # --- with an engine ---

    def engine_answers(self) -> bool:
        try:
            self.manager.ping(timeout=2.0)
            return True
        except Exception:  # noqa: BLE001 - any failure: no engine for the demo
            return False

    def launch_containers(self, say: Say) -> list[str]:
        """Build (or find) the demo image, then launch one container per demo agent; their names."""
        image = ensure_demo_image(self.manager.client, say)
        if image != self.settings.image:  # the settings name the tag the recipe gives; they must agree
            raise RuntimeError(f"the demo image is {image}, the settings say {self.settings.image}")
        names = []
        for agent in self.scripted():
            if self._stopping:
                break
            row = self.manager.launch(agent, command=["/bin/sh", ROUTINE_PATH, role_of(agent)])
            names.append(row.name)
            say(f"demo agent {agent} ({role_of(agent)}) running in {row.name}")
        return names

    # --- without one ---

    def start_host_routines(self, mcp_url: str, say: Say) -> None:
        """The routines as host processes (simulated agents), one per demo agent."""
        script = Path(__file__).with_name("routine.sh")
        poster = f"{sys.executable} {Path(__file__).with_name('post.py')}"
        base = f"http://127.0.0.1:{receiver_port(self.settings)}"
        for agent in self.scripted():
            ws = layout.workspace_dir(self.root, agent)
            ws.mkdir(parents=True, exist_ok=True)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "QMS_USER": agent, "QMS_PANEL_MCP_URL": mcp_url,
                   "QMS_PANEL_HOOKS_URL": f"{base}/hooks", "OTEL_EXPORTER_OTLP_ENDPOINT": base,
                   "QMS_DEMO_WORKSPACE": str(ws), "QMS_DEMO_MODE": "simulated", "QMS_DEMO_POSTER": poster,
                   "QMS_DEMO_PARENT": str(os.getpid()),
                   "QMS_DEMO_ROLE": role_of(agent) if role_of(agent) != "rogue" else "reviewer"}
            log = (self.log_dir / f"simulated-{agent}.log").open("ab")
            with self._lock:
                if self._stopping:
                    log.close()
                    return
                proc = subprocess.Popen(["/bin/sh", str(script), f"simulated-{agent}", str(self.root)], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
                self.routines.append(proc)
            log.close()
            say(f"simulated agent {agent} running on the host (pid {proc.pid}; no engine)")

    # --- the end ---

    def remove_all(self) -> Removed:
        """Stop the host routines; remove every container and volume of this demo's project root."""
        removed = Removed()
        with self._lock:
            self._stopping = True
            routines, self.routines = self.routines, []
        for proc in routines:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            proc.wait()
            removed.routines += 1
        try:
            self.manager.ping(timeout=2.0)
        except Exception:  # noqa: BLE001 - no engine: nothing of ours can be on it
            return removed
        api = self.manager.client.api
        ours = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_PROJECT_ROOT}={self.root}"]}
        for c in api.containers(all=True, filters=ours):
            try:
                api.remove_container(c["Id"], force=True)
                removed.containers += 1
            except Exception as exc:  # noqa: BLE001 - said in the summary line
                removed.errors.append(f"container {c['Names'][0].lstrip('/')}: {exc}")
        for v in api.volumes(filters=ours).get("Volumes") or []:
            try:
                api.remove_volume(v["Name"], force=True)
                removed.volumes += 1
            except Exception as exc:  # noqa: BLE001
                removed.errors.append(f"volume {v['Name']}: {exc}")
        self.manager.reset()
        return removed
