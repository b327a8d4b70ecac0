"""Agent containers on the Docker engine: launch as the vision says, restart, stop, start, remove, list.

The only module that talks to Docker (with :mod:`core.engine_events`, which reads the events
API through a :class:`ContainerManager`). Methods are blocking (the TUI runs them in thread
workers) except :meth:`ContainerManager.logs`, an async iterator. They return plain pydantic
models and raise only :class:`~core.errors.QmsPanelError` subclasses.

A container is *ours* when it carries ``qms-panel.managed=true`` **and** ``qms-panel.project-root``
equal to this manager's resolved project root; qms-panel never replaces, restarts, stops, starts,
removes or reads the logs of any other container (another project's refusal names that project).
A row's ``managed`` says "ours". Every path, and the capability set a launch keeps, comes from
:mod:`core.layout`.

Cost of :meth:`ContainerManager.list`: one ``GET /containers/json?all=1``. The start time and
the engine's restart count are not in that answer; they come from an inspect of each listed
container (:class:`ContainerFacts`). A caller that knows facts still true passes them
(``list(facts=...)``): :class:`core.container_board.ContainerBoard` keeps them while it follows
the engine's events, which decide their freshness, so the panel pays one call per refresh; a
one-shot command pays one inspect per listed container.

Restart count: Docker's ``RestartCount`` counts only restarts made by a restart policy (agents
have none), so a row's ``restart_count`` is that number plus the restarts this manager made
(:meth:`ContainerManager.restarts_made`). The board adds the ``docker restart`` from outside
that it sees on the event stream.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from core import layout
from core.engine import (
    ContainerNotRunning,
    EngineTarget,
    ThreadedStream,
    close_quietly,
    endpoint_of,
    engine_errors,
    target_from_env,
)
from core.errors import (
    ContainerNotFound,
    EngineError,
    ImageMissing,
    MountSourceMissing,
    NameConflict,
    NotManaged,
    OtherProject,
    ProjectError,
)
from core.lazy_import import lazy_module
from core.safe_text import safe_line
from core.settings import AGENT_ID_RE, Settings, check_agent_id
from core.telemetry.agent_env import agent_environment

docker = lazy_module("docker")  # imported on first use: the panel draws its rows before it loads

__all__ = [
    "LABEL_MANAGED", "LABEL_AGENT", "LABEL_PROJECT_ROOT", "ContainerManager", "ContainerRow", "ContainerDetail",
    "MountInfo", "ExecResult", "EngineInfo", "PeerContainer", "ContainerFacts", "ContainerNotRunning", "status_line",
]

LABEL_MANAGED = "qms-panel.managed"
LABEL_AGENT = "qms-panel.agent"
LABEL_PROJECT_ROOT = "qms-panel.project-root"
MCP_URL_VAR = "QMS_PANEL_MCP_URL"  # the container's MCP URL (container_mcp_url), for scripts in the agent
HOST_GATEWAY = {"host.docker.internal": "host-gateway"}
IMAGE_HINT = "build it with `qms-panel image build`, or choose another with --image / QMS_PANEL_IMAGE"

State = Literal["created", "running", "paused", "restarting", "exited", "dead", "removing"]
_STATUS_WORD = {"created": "Created", "running": "Up", "paused": "Up (Paused)", "restarting": "Restarting",
                "exited": "Exited", "dead": "Dead", "removing": "Removal In Progress"}


class ContainerRow(BaseModel):
    """One agent container as the containers pane shows it."""

    agent: str
    id: str
    name: str
    state: State
    health: str | None = None
    started_at: datetime | None = None
    restart_count: int = 0
    image: str
    exit_code: int | None = None  # only when exited or dead
    managed: bool = True  # ours: made by qms-panel for this project root
    owner_root: str | None = None  # made by qms-panel for another project root (that root)
    status_text: str = ""

    def summary(self) -> str:
        """One line for the command line: name, short id, state, image."""
        if self.managed:
            flag = ""
        elif self.owner_root is not None:
            flag = f", belongs to the qms-panel project at {safe_line(self.owner_root)}"
        else:
            flag = ", NOT made by qms-panel"
        return f"{self.name} ({self.id[:12]}): {self.status_text or self.state}, image {self.image}{flag}"


class MountInfo(BaseModel):
    type: str
    source: str
    destination: str
    rw: bool
    volume_name: str | None = None


class ContainerDetail(BaseModel):
    """What inspect says about a container, as plain data (the access audit reads this)."""

    id: str
    name: str
    agent: str
    managed: bool  # ours (see ContainerRow.managed)
    owner_root: str | None = None
    state: State
    image: str
    hostname: str
    env: dict[str, str]
    labels: dict[str, str]
    mounts: list[MountInfo]
    extra_hosts: list[str]
    command: list[str]
    tty: bool
    open_stdin: bool
    cap_add: list[str] = []  # as the engine reports them (``CAP_NET_RAW`` or ``NET_RAW``)
    cap_drop: list[str] = []
    privileged: bool = False
    security_opt: list[str] = []
    started_at: datetime | None = None
    exit_code: int | None = None
    health: str | None = None


class ExecResult(BaseModel):
    exit_code: int | None
    output: str
    timed_out: bool = False


class PeerContainer(BaseModel):
    """A running container as the gateway sees a peer: its addresses on the engine's networks and
    whose it is. ``ours``: made by qms-panel for this project root (then ``agent`` is its label)."""

    id: str
    name: str
    ours: bool
    agent: str | None = None  # the agent label of one of ours
    owner_root: str | None = None  # another qms-panel project's root; "" managed with no root
    created: int = 0  # the engine's creation time (seconds), to tell which of two came first
    addresses: list[str] = []


class EngineInfo(BaseModel):
    endpoint: str
    version: str
    api_version: str


class ContainerFacts(BaseModel):
    """The parts of a row only inspect knows (the board caches them per container id)."""

    state: str
    started_at: datetime | None
    engine_restarts: int


def parse_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 time (nanoseconds allowed); its zero time is None."""
    if not value or value.startswith("0001-01-01"):
        return None
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", value)
    if not m:
        return None
    frac = (m.group(2) or "")[:7]
    return datetime.fromisoformat(m.group(1) + frac + ("+00:00" if m.group(3) == "Z" else m.group(3)))


def status_line(state: str, exit_code: int | None, health: str | None) -> str:
    """``Up (healthy)``, ``Exited (1)``: a row's status as inspect (or an event) tells it."""
    word = _STATUS_WORD.get(state, state)
    status = f"{word} ({exit_code})" if exit_code is not None else word
    return status + (f" ({health})" if health else "")


def _health_from_status(status: str) -> str | None:
    m = re.search(r"\((healthy|unhealthy|health: starting)\)", status)
    if not m:
        return None
    return "starting" if m.group(1) == "health: starting" else m.group(1)


def _exit_from_status(status: str) -> int | None:
    m = re.match(r"^(?:Exited|Restarting) \((-?\d+)\)", status)
    return int(m.group(1)) if m else None


class ContainerManager:
    """Agent containers of one project on one engine (blocking calls; see the module docstring).

    ``client`` is used as given (tests point one at a relay); without it the manager connects
    lazily to the engine of the standard Docker environment and reconnects after :meth:`reset`.
    ``extra_labels`` are added to every container and volume it makes. ``stop_timeout`` is the
    grace period, in seconds, between SIGTERM and SIGKILL on stop and restart.
    """

    def __init__(self, settings: Settings, *, client: docker.DockerClient | None = None,
                 extra_labels: dict[str, str] | None = None, stop_timeout: int = 10,
                 target: EngineTarget | None = None) -> None:
        self.settings = settings
        self.project_root = Path(settings.project_root).expanduser().resolve()
        self.extra_labels = dict(extra_labels or {})
        self.stop_timeout = stop_timeout
        self._client = client
        self._owns_client = client is None
        self._target = target
        self._client_lock = threading.Lock()  # held while connecting, which can take long
        self._lock = threading.Lock()  # the count below; never held across an engine call
        self._restarts: dict[str, int] = {}  # container id -> restarts this manager made

    # --- the engine ----------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client is None:
                if self._target is None:
                    self._target = target_from_env()
                self._client = self._target.client()
            return self._client

    @property
    def endpoint(self) -> str:
        """The engine, as an operator would write it (for messages)."""
        if self._client is not None:
            return endpoint_of(self._client)
        try:
            return (self._target or target_from_env()).base_url
        except Exception:  # noqa: BLE001 - a description must never fail
            return "the Docker engine"

    def reset(self) -> None:
        """Forget an owned client, so the next call reconnects (after the engine was lost).

        Never blocks (the event stream calls it on the event loop).
        """
        if self._owns_client:
            client, self._client, self._target = self._client, None, None
            if client is not None:
                close_quietly(client)

    def engine(self) -> EngineInfo:
        with engine_errors(self.endpoint):
            v = self.client.version()
        return EngineInfo(endpoint=self.endpoint, version=str(v.get("Version", "?")),
                          api_version=str(v.get("ApiVersion", "?")))

    def ping(self, timeout: float = 3.0) -> None:
        """Raise EngineUnreachable unless the engine answers ``/_ping`` within ``timeout`` seconds."""
        with engine_errors(self.endpoint):
            api = self.client.api
            api.get(f"{api.base_url}/_ping", timeout=timeout).raise_for_status()

    def image_exists(self, image: str) -> bool:
        with engine_errors(self.endpoint):
            try:
                self.client.api.inspect_image(image)
            except docker.errors.NotFound:
                return False
        return True

    # --- names and ownership -------------------------------------------------------------

    def container_name(self, agent: str) -> str:
        return self.settings.container_name(check_agent_id(agent))

    def _layout(self, agent: str) -> layout.AgentLayout:
        return layout.resolve(agent, self.project_root, container_prefix=self.settings.container_prefix,
                              deploy_key=self.settings.deploy_key)

    def _labels(self, agent: str) -> dict[str, str]:
        return {**self.extra_labels, LABEL_MANAGED: "true", LABEL_AGENT: agent,
                LABEL_PROJECT_ROOT: str(self.project_root)}

    def is_ours(self, labels: dict | None) -> bool:
        """Made by qms-panel (the managed label) for this project root (the project-root label)."""
        return _is_managed(labels) and (labels or {}).get(LABEL_PROJECT_ROOT) == str(self.project_root)

    def _owner_root(self, labels: dict | None) -> str | None:
        """The project root of a container (or volume) qms-panel made for another project, else None."""
        if not _is_managed(labels) or self.is_ours(labels):
            return None
        return (labels or {}).get(LABEL_PROJECT_ROOT) or ""

    def _whose(self, labels: dict | None) -> str | None:
        """Why a container or volume is not ours, as a clause ("qms-panel did not make it"); None if ours."""
        if self.is_ours(labels):
            return None
        root = self._owner_root(labels)
        if root is None:
            return f"qms-panel did not make it (no {LABEL_MANAGED} label)"
        if not root:
            return f"it has no {LABEL_PROJECT_ROOT} label, so it belongs to no known project"
        return f"it belongs to the qms-panel project at {safe_line(root)}"

    def _inspect_name(self, name: str) -> dict | None:
        """Inspect data of the container called exactly ``name``, or None."""
        try:
            attrs = self.client.api.inspect_container(name)
        except docker.errors.NotFound:
            return None
        return attrs if attrs.get("Name", "").lstrip("/") == name else None

    def _own(self, agent: str, doing: str) -> dict:
        """Inspect data of ``agent``'s container; refuse when absent or not ours (see the module docstring)."""
        name = self.container_name(agent)
        attrs = self._inspect_name(name)
        if attrs is None:
            raise ContainerNotFound(f"no container {name} for agent {agent!r} on {self.endpoint} "
                                    f"(launch it: qms-panel launch {agent})")
        labels = attrs["Config"].get("Labels")
        root = self._owner_root(labels)
        if root:
            raise OtherProject(f"{name} belongs to the qms-panel project at {safe_line(root)}; qms-panel never "
                               f"{doing} another project's containers (run it from that project, or give this "
                               f"one another --container-prefix)")
        if not self.is_ours(labels):
            raise NotManaged(f"{name} exists but {self._whose(labels)}; qms-panel never {doing} "
                             f"containers it did not make for this project")
        return attrs

    def check_ours(self, agent: str, doing: str) -> ContainerRow:
        """The row of ``agent``'s container if it is ours; else the refusal ``restart`` would give.

        ``doing`` words the refused action ("attaches to"). For callers that act on the container
        through other means (``attach`` runs the docker CLI).
        """
        with engine_errors(self.endpoint):
            return self._row(self._own(agent, doing))

    def agent_of(self, name: str, labels: dict | None) -> str:
        """The agent a container serves: its label, else its name minus the prefix, else its name."""
        labels = labels or {}
        if self.is_ours(labels) and labels.get(LABEL_AGENT):
            return labels[LABEL_AGENT]
        prefix = self.settings.container_prefix
        rest = name[len(prefix):] if name.startswith(prefix) else ""
        return rest if rest and AGENT_ID_RE.match(rest) else name

    # --- launch and lifecycle ------------------------------------------------------------

    def launch(self, agent: str, command: list[str] | None = None) -> ContainerRow:
        """Create and start ``agent``'s container exactly as the vision says.

        Refuses, changing nothing: a bad agent id, a project root without QMS/, a missing deploy
        key, any existing container of that name, a ``/projects`` volume qms-panel did not make,
        the image missing. Only then is the workspace folder created (if missing), then the
        volume, then the container; a failure past that point undoes what this call made.
        """
        plan = self._layout(agent)
        name = self.container_name(agent)
        self._check_project(plan)
        volume = layout.projects_volume(self.settings.container_prefix, agent)
        image = self.settings.image
        with engine_errors(self.endpoint):
            existing = self._inspect_name(name)
            if existing is not None:
                raise NameConflict(self._conflict_detail(name, existing))
            volume_ours, volume_whose = self._volume_owner(volume)
            if volume_ours is False:
                raise NameConflict(f"a volume named {volume} exists and {volume_whose}; "
                                   "qms-panel will not mount it at /projects (remove or rename it yourself)")
            if not self.image_exists(image):
                raise ImageMissing(f"image {image!r} is not on the engine at {self.endpoint}; {IMAGE_HINT}")

        made_dirs = _make_dirs(plan.workspace_host)
        made_volume = False
        container_id = None
        try:
            with engine_errors(self.endpoint):
                api = self.client.api
                if volume_ours is None:
                    api.create_volume(volume, labels=self._labels(agent))
                    made_volume = True
                host_config = api.create_host_config(
                    mounts=_mounts(plan), extra_hosts=HOST_GATEWAY, cap_drop=["ALL"],
                    cap_add=sorted(layout.AGENT_CAPABILITIES), security_opt=list(layout.SECURITY_OPTIONS))
                created = api.create_container(
                    image, command=command, name=name, hostname=agent, labels=self._labels(agent),
                    environment={"HOME": layout.HOME, "QMS_USER": agent, MCP_URL_VAR: self.settings.container_mcp_url,
                                 **agent_environment(self.settings)},
                    stdin_open=True, tty=True,
                    host_config=host_config)
                container_id = created["Id"]
                api.start(container_id)
                return self._row(api.inspect_container(container_id))
        except BaseException:
            self._undo_launch(container_id, volume if made_volume else None, made_dirs)
            raise

    def _check_project(self, plan: layout.AgentLayout) -> None:
        root = self.project_root
        if not (root / "QMS").is_dir():
            raise ProjectError(f"{root} has no QMS/ folder (is it the pipe-dream root?)")
        ws = plan.workspace_host
        for spec in plan.mounts:
            if spec.kind is layout.MountKind.BIND and Path(spec.source) != ws and not Path(spec.source).exists():
                raise MountSourceMissing(f"{spec.source} (for {spec.target}) does not exist")
        if ws.exists() and not ws.is_dir():
            raise MountSourceMissing(f"{ws} (for the workspace) exists but is not a folder")

    def _conflict_detail(self, name: str, attrs: dict) -> str:
        labels = attrs["Config"].get("Labels") or {}
        state = attrs["State"].get("Status", "?")
        if not self.is_ours(labels):
            return (f"a container named {name} ({state}) exists and {self._whose(labels)}; "
                    "qms-panel never replaces it: rename or remove it yourself, or use another --container-prefix")
        agent = labels.get(LABEL_AGENT, "?")
        return (f"{name} already exists ({state}); use `qms-panel start {agent}` or `restart {agent}`, "
                f"or `remove {agent}` then launch again (the /projects volume is kept)")

    def _volume_owner(self, volume: str) -> tuple[bool | None, str | None]:
        """(None, None) if ``volume`` does not exist, else whether it is ours and, if not, why not."""
        try:
            attrs = self.client.api.inspect_volume(volume)
        except docker.errors.NotFound:
            return None, None
        whose = self._whose(attrs.get("Labels"))
        return whose is None, whose

    def _undo_launch(self, container_id: str | None, volume: str | None, made_dirs: list[Path]) -> None:
        api = self.client.api if self._client is not None else None
        if api is not None and container_id is not None:
            try:
                api.remove_container(container_id, force=True)
            except Exception:  # noqa: BLE001 - best effort; the original error is what the operator reads
                pass
        if api is not None and volume is not None:
            try:
                api.remove_volume(volume, force=True)
            except Exception:  # noqa: BLE001
                pass
        for d in reversed(made_dirs):
            try:
                d.rmdir()
            except OSError:
                break

    def restart(self, agent: str) -> ContainerRow:
        """Restart in one call; mounts and the /projects volume are kept."""
        with engine_errors(self.endpoint):
            cid = self._own(agent, "restarts")["Id"]
            self.client.api.restart(cid, timeout=self.stop_timeout)
            with self._lock:
                self._restarts[cid] = self._restarts.get(cid, 0) + 1
            return self._row(self.client.api.inspect_container(cid))

    def stop(self, agent: str) -> ContainerRow:
        with engine_errors(self.endpoint):
            cid = self._own(agent, "stops")["Id"]
            self.client.api.stop(cid, timeout=self.stop_timeout)
            return self._row(self.client.api.inspect_container(cid))

    def start(self, agent: str) -> ContainerRow:
        with engine_errors(self.endpoint):
            cid = self._own(agent, "starts")["Id"]
            self.client.api.start(cid)
            return self._row(self.client.api.inspect_container(cid))

    def remove(self, agent: str, *, remove_volume: bool = False) -> None:
        """Remove the container (forced); its /projects volume too only when asked."""
        volume = layout.projects_volume(self.settings.container_prefix, agent)
        with engine_errors(self.endpoint):
            name = self.container_name(agent)
            attrs = self._inspect_name(name)
            if attrs is not None:
                self._own(agent, "removes")
            volume_ours, volume_whose = self._volume_owner(volume) if remove_volume else (None, None)
            if volume_ours is False:
                raise NotManaged(f"volume {volume} exists but {volume_whose}; it is left alone")
            has_volume = bool(volume_ours)
            if attrs is None and not has_volume:
                raise ContainerNotFound(f"no container {name} for agent {agent!r} on {self.endpoint}"
                                        + (f" and no volume {volume}" if remove_volume else ""))
            if attrs is not None:
                self.client.api.remove_container(attrs["Id"], force=True)
            if has_volume:
                self.client.api.remove_volume(volume)

    # --- reading state -------------------------------------------------------------------

    def list(self, *, facts: dict[str, ContainerFacts] | None = None) -> list[ContainerRow]:
        """Our containers, plus (not ours) any that bind-mount the project root or a path under it and
        another project's that carry this project's container prefix (they hold our names).

        ``facts``: inspect results the caller knows to be true, by container id; an entry is used
        while its state is the list's, else the container is inspected and the entry replaced.
        """
        facts = {} if facts is None else facts
        with engine_errors(self.endpoint):
            summaries = self.client.api.containers(all=True)
            rows = []
            for s in summaries:
                labels = s.get("Labels") or {}
                ours = self.is_ours(labels)
                if not ours and not self.mounts_project(s.get("Mounts") or []):
                    names = [n.lstrip("/") for n in s.get("Names") or []]
                    if not (_is_managed(labels) and any(n.startswith(self.settings.container_prefix) for n in names)):
                        continue
                row = self._row_from_summary(s, ours, facts)
                if row is not None:
                    row.owner_root = self._owner_root(labels)
                    rows.append(row)
        return sorted(rows, key=lambda r: (not r.managed, r.name))

    def peers(self) -> list[PeerContainer]:
        """Every running container on the engine with its IP addresses (one list call): the
        gateway's view of who a peer address is."""
        with engine_errors(self.endpoint):
            summaries = self.client.api.containers(filters={"status": "running"})
        peers = []
        for s in summaries:
            labels = s.get("Labels") or {}
            networks = ((s.get("NetworkSettings") or {}).get("Networks") or {}).values()
            addresses = [a for n in networks for a in (n.get("IPAddress"), n.get("GlobalIPv6Address")) if a]
            name = ((s.get("Names") or ["?"])[0]).lstrip("/")
            ours = self.is_ours(labels)
            peers.append(PeerContainer(id=s["Id"], name=name, ours=ours, agent=labels.get(LABEL_AGENT) if ours else None,
                                       owner_root=self._owner_root(labels), created=int(s.get("Created") or 0),
                                       addresses=addresses))
        return peers

    def bridge_gateway(self) -> str:
        """The host's address on the engine's default bridge network (where containers reach
        ``host.docker.internal``): the network's IPAM gateway, else the first host of its subnet
        (what the engine assigns to the bridge when no gateway is configured)."""
        import ipaddress

        with engine_errors(self.endpoint):
            attrs = self.client.api.inspect_network("bridge")
        for config in (attrs.get("IPAM") or {}).get("Config") or []:
            if config.get("Gateway"):
                return str(config["Gateway"]).split("/")[0]
            if config.get("Subnet") and ":" not in config["Subnet"]:
                return str(next(ipaddress.ip_network(config["Subnet"], strict=False).hosts()))
        raise EngineError("the engine's bridge network has no IPv4 subnet; set gateway_listen")

    def mounts_project(self, mounts: Iterable[dict]) -> bool:
        """True if any bind mount's source is the project root or inside it."""
        for m in mounts:
            if m.get("Type") == "bind" and m.get("Source"):
                src = Path(m["Source"])
                if src == self.project_root or self.project_root in src.parents:
                    return True
        return False

    def get(self, agent: str) -> ContainerRow | None:
        """The row of ``agent``'s container (managed or not), or None when there is none."""
        name = self.container_name(agent)
        with engine_errors(self.endpoint):
            attrs = self._inspect_name(name)
        return None if attrs is None else self._row(attrs)

    def inspect(self, name_or_id: str) -> ContainerDetail:
        with engine_errors(self.endpoint):
            try:
                a = self.client.api.inspect_container(name_or_id)
            except docker.errors.NotFound:
                raise ContainerNotFound(f"no container {name_or_id!r} on {self.endpoint}") from None
        cfg, host, st = a["Config"], a.get("HostConfig") or {}, a["State"]
        name = a["Name"].lstrip("/")
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in cfg.get("Env") or [])
        mounts = [MountInfo(type=m.get("Type", ""), source=m.get("Source", ""), destination=m.get("Destination", ""),
                            rw=bool(m.get("RW")), volume_name=m.get("Name")) for m in a.get("Mounts") or []]
        return ContainerDetail(
            id=a["Id"], name=name, agent=self.agent_of(name, cfg.get("Labels")),
            managed=self.is_ours(cfg.get("Labels")), owner_root=self._owner_root(cfg.get("Labels")),
            state=st["Status"], image=cfg.get("Image", ""),
            hostname=cfg.get("Hostname", ""), env=env, labels=cfg.get("Labels") or {}, mounts=mounts,
            extra_hosts=list(host.get("ExtraHosts") or []),
            command=list(cfg.get("Cmd") or []), tty=bool(cfg.get("Tty")), open_stdin=bool(cfg.get("OpenStdin")),
            cap_add=list(host.get("CapAdd") or []), cap_drop=list(host.get("CapDrop") or []),
            privileged=bool(host.get("Privileged")), security_opt=list(host.get("SecurityOpt") or []),
            started_at=parse_time(st.get("StartedAt")), exit_code=_exit_of(st), health=_health_of(st))

    def _row(self, attrs: dict) -> ContainerRow:
        """A row from inspect data (exact)."""
        cfg, st = attrs["Config"], attrs["State"]
        name = attrs["Name"].lstrip("/")
        labels = cfg.get("Labels") or {}
        facts = _facts(attrs)
        exit_code = _exit_of(st)
        health = _health_of(st)
        return ContainerRow(
            agent=self.agent_of(name, labels), id=attrs["Id"], name=name, state=st["Status"], health=health,
            started_at=facts.started_at, restart_count=self._restart_count(attrs["Id"], facts),
            image=cfg.get("Image", ""), exit_code=exit_code, managed=self.is_ours(labels),
            owner_root=self._owner_root(labels), status_text=status_line(st["Status"], exit_code, health))

    def _row_from_summary(self, s: dict, managed: bool, known: dict[str, ContainerFacts]) -> ContainerRow | None:
        """A row from list data; inspect only when ``known`` cannot answer (None if it vanished)."""
        cid, state = s["Id"], s["State"]
        facts = known.get(cid)
        if facts is None or facts.state != state:
            try:
                attrs = self.client.api.inspect_container(cid)
            except docker.errors.NotFound:
                return None
            facts = known[cid] = _facts(attrs)
        name = (s.get("Names") or ["/" + cid[:12]])[0].lstrip("/")
        status = s.get("Status") or ""
        exit_code = _exit_from_status(status) if state in ("exited", "dead", "restarting") else None
        return ContainerRow(
            agent=self.agent_of(name, s.get("Labels")), id=cid, name=name, state=state,
            health=_health_from_status(status), started_at=facts.started_at,
            restart_count=self._restart_count(cid, facts), image=s.get("Image", ""), exit_code=exit_code,
            managed=managed, status_text=status)

    def _restart_count(self, cid: str, facts: ContainerFacts) -> int:
        return facts.engine_restarts + self.restarts_made(cid)

    def restarts_made(self, container_id: str) -> int:
        """How many times this manager restarted that container (the board adds those it saw)."""
        with self._lock:
            return self._restarts.get(container_id, 0)

    # --- the event stream ----------------------------------------------------------------

    def open_events(self, filters: dict) -> Any:
        """The engine's event stream (a blocking, closable iterator of dicts); for EngineEvents."""
        with engine_errors(self.endpoint):
            return self.client.api.events(filters=filters, decode=True)

    # --- exec and logs -------------------------------------------------------------------

    def exec(self, name_or_id: str, argv: list[str], *, timeout: float = 10, user: str | None = None,
             stdin: bytes | None = None, started: Callable[[], None] | None = None) -> ExecResult:
        """Run ``argv`` in a running container; stdout and stderr together.

        ``stdin``, when given, is written to the process's standard input, which is then closed.
        It is the way to hand a process a secret: the engine records an exec's argv (in
        ``docker events`` and the exec's inspect) and its environment (inspect), never its input.

        ``started`` is called once the engine runs the process (its create and start calls are
        done; what is left is waiting for the output), so a caller can bound the engine calls of
        many execs without bounding their waits.

        After ``timeout`` seconds the output stream is closed and ``timed_out`` set; Docker cannot
        kill an exec'd process, so it runs on until it ends by itself.
        """
        with engine_errors(self.endpoint):
            api = self.client.api
            try:
                exec_id = api.exec_create(name_or_id, argv, stdout=True, stderr=True, stdin=stdin is not None,
                                          user=user or "")["Id"]
            except docker.errors.NotFound:
                raise ContainerNotFound(f"no container {name_or_id!r} on {self.endpoint}") from None
            if stdin is None:
                stream = api.exec_start(exec_id, stream=True)
            else:
                stream = _ExecSocket(api.exec_start(exec_id, socket=True))
                stream.send(stdin)
        if started is not None:
            started()
        chunks: list[bytes] = []
        failure: list[BaseException] = []
        done = threading.Event()

        def read() -> None:
            try:
                for chunk in stream:
                    chunks.append(chunk)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=read, name="docker-exec", daemon=True).start()
        finished = done.wait(timeout)
        if not finished:
            close_quietly(stream)
            done.wait(1)
        output = b"".join(chunks).decode("utf-8", "replace")
        if not finished:
            return ExecResult(exit_code=None, output=output, timed_out=True)
        if failure:
            with engine_errors(self.endpoint):
                raise failure[0]
        return ExecResult(exit_code=self._exec_exit_code(exec_id), output=output)

    def _exec_exit_code(self, exec_id: str) -> int | None:
        with engine_errors(self.endpoint):
            for _ in range(50):  # the stream can end a moment before the engine records the exit
                info = self.client.api.exec_inspect(exec_id)
                if not info.get("Running"):
                    return info.get("ExitCode")
                time.sleep(0.02)
        return None

    async def logs(self, agent: str, tail: int = 200, follow: bool = False) -> AsyncIterator[str]:
        """Lines of ``agent``'s container log (the last ``tail``; then new ones if ``follow``).

        The blocking SDK stream is read in a thread; cancelling the consumer (or closing this
        generator) closes the stream. Only our containers' logs are read (see the module docstring).
        """
        check_agent_id(agent)

        def open_stream() -> Any:
            with engine_errors(self.endpoint):
                attrs = self._own(agent, "reads the logs of")
                return self.client.api.logs(attrs["Id"], stream=True, follow=follow, tail=tail)

        async with ThreadedStream(open_stream, transform=_lines, name=f"docker-logs-{agent}") as lines:
            async for line in lines:
                yield line


class _ExecSocket:
    """The hijacked connection of an exec with stdin: write the input, half-close, read the output."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        raw = getattr(sock, "_sock", sock)  # a unix socket's SocketIO wraps the socket
        self._raw = raw

    def send(self, data: bytes) -> None:
        self._raw.sendall(data)
        if hasattr(self._raw, "shutdown_write"):  # an ssh channel
            self._raw.shutdown_write()
        else:
            self._raw.shutdown(socket.SHUT_WR)

    def __iter__(self) -> Iterator[bytes]:
        for _stream, data in docker.utils.socket.frames_iter(self.sock, tty=False):
            yield data

    def close(self) -> None:
        close_quietly(self.sock)


def _is_managed(labels: dict | None) -> bool:
    return (labels or {}).get(LABEL_MANAGED) == "true"


def _facts(attrs: dict) -> ContainerFacts:
    return ContainerFacts(state=attrs["State"]["Status"], started_at=parse_time(attrs["State"].get("StartedAt")),
                  engine_restarts=int(attrs.get("RestartCount") or 0))


def _exit_of(state: dict) -> int | None:
    return int(state.get("ExitCode", 0)) if state.get("Status") in ("exited", "dead") else None


def _health_of(state: dict) -> str | None:
    return (state.get("Health") or {}).get("Status") or None


def _mounts(plan: layout.AgentLayout) -> list[docker.types.Mount]:
    return [docker.types.Mount(target=m.target, source=m.source, type=m.kind.value, read_only=m.read_only) for m in plan.mounts]


def _make_dirs(path: Path) -> list[Path]:
    """``mkdir -p path``; returns the folders it made, outermost first (so a failure can undo them)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    made = []
    try:
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                if not d.is_dir():
                    raise
                continue  # made meanwhile by someone else (another launch): not ours to undo
            made.append(d)
    except OSError as exc:
        for d in reversed(made):
            try:
                d.rmdir()
            except OSError:
                pass  # no longer empty: someone else uses it now
        raise ProjectError(f"cannot create {path}: {exc.strerror or exc}") from None
    return made


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Bytes chunks (TTY logs arrive a byte at a time) to text lines, without line ends."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while (i := buf.find(b"\n")) >= 0:
            yield buf[:i].decode("utf-8", "replace").rstrip("\r")
            del buf[: i + 1]
    if buf:
        yield buf.decode("utf-8", "replace").rstrip("\r")
