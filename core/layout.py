"""The container filesystem of the vision, as data: the single source of truth.

``../shared/vision/container-architecture-vision.md`` draws the tree and the access matrix.
This module holds them, resolved for one agent and one project root. Three readers:
the launcher (what to mount), the access audit (what to expect) and the matrix pane (what to
show). Nobody else spells these paths.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict

from core.settings import check_agent_id

CONTAINER_ROOT = PurePosixPath("/pipe-dream")
MCP_CONFIG_PATH = PurePosixPath("/.mcp.json")
DEPLOY_KEY_PATH = PurePosixPath("/.ssh/id_ed25519")
PROJECTS_PATH = PurePosixPath("/projects")
HOME = "/"
MCP_SERVER_NAME = "qms"


class Access(StrEnum):
    READ_WRITE = "read-write"
    READ_ONLY = "read-only"
    BAKED = "baked into the image"
    LAUNCH = "set at launch"  # a fact of the container itself (its capabilities), not a path


class MountKind(StrEnum):
    BIND = "bind"
    VOLUME = "volume"
    NONE = "none"  # the image's own filesystem (the container's writable layer or a baked file)


class PathRule(BaseModel):
    """One row of the access matrix, resolved for an agent."""

    model_config = ConfigDict(frozen=True)

    container_path: str
    access: Access
    purpose: str
    mount: MountKind
    source: str | None = None  # host path (bind) or volume name (volume)
    is_file: bool = False

    @property
    def writable(self) -> bool:
        return self.access is Access.READ_WRITE

    @property
    def read_only(self) -> bool:
        return self.access is Access.READ_ONLY


class MountSpec(BaseModel):
    """A mount the launcher makes, derived from the rules."""

    model_config = ConfigDict(frozen=True)

    kind: MountKind
    source: str
    target: str
    read_only: bool


# The capabilities an agent keeps: launch drops every other one (``cap_drop ALL`` then these), so an
# agent cannot forge packets on the bridge (NET_RAW), make devices (MKNOD), chroot, or change file
# capabilities. What is kept is what root needs to code and build in the agent image: apt-get
# and dpkg, npm, git, tar. Docker >= 20.10 lets any user bind ports below 1024 in a container
# (``net.ipv4.ip_unprivileged_port_start=0``), so NET_BIND_SERVICE is not needed either.
AGENT_CAPABILITIES: dict[str, str] = {
    "CHOWN": "apt/dpkg, npm and tar give unpacked files their owners",
    "DAC_OVERRIDE": "root writes files it does not own (apt's caches, npm's global folder, clones in /projects)",
    "FOWNER": "chmod and utime on files of other owners (dpkg, tar, git checkout)",
    "FSETID": "dpkg and tar keep setuid/setgid bits on the files they unpack",
    "SETGID": "apt-get drops to its _apt user to download; npm runs scripts as the package owner",
    "SETUID": "apt-get drops to its _apt user to download; npm runs scripts as the package owner",
    "KILL": "stop build and server processes that run as another user (apt's _apt, npm scripts)",
}
# Launch also forbids gaining privileges through setuid binaries or file capabilities. The agent
# runs as root and needs neither sudo nor su, so nothing it does to build is refused by this.
SECURITY_OPTIONS = ("no-new-privileges",)


def users_dir(project_root: Path, agent: str) -> Path:
    return Path(project_root) / ".claude" / "users" / check_agent_id(agent)


def workspace_dir(project_root: Path, agent: str) -> Path:
    """Host folder holding ``agent``'s checked-out copies."""
    return users_dir(project_root, agent) / "workspace"


def inbox_dir(project_root: Path, agent: str) -> Path:
    """Host folder holding ``agent``'s inbox task files."""
    return users_dir(project_root, agent) / "inbox"


def projects_volume(container_prefix: str, agent: str) -> str:
    """Name of the per-agent named volume mounted at /projects (survives re-launch)."""
    return f"{container_prefix}{check_agent_id(agent)}-projects"


def container_path(*parts: str) -> str:
    return str(CONTAINER_ROOT.joinpath(*parts))


class AgentLayout(BaseModel):
    """The matrix for one agent and project root."""

    model_config = ConfigDict(frozen=True)

    agent: str
    project_root: Path
    rules: tuple[PathRule, ...]

    @property
    def mounts(self) -> list[MountSpec]:
        return [
            MountSpec(kind=r.mount, source=r.source or "", target=r.container_path, read_only=not r.writable)
            for r in self.rules
            if r.mount is not MountKind.NONE
        ]

    @property
    def workspace_host(self) -> Path:
        return workspace_dir(self.project_root, self.agent)

    @property
    def inbox_host(self) -> Path:
        return inbox_dir(self.project_root, self.agent)

    @property
    def workspace_rule(self) -> PathRule:
        return self.rule(container_path(f".claude/users/{self.agent}", "workspace"))

    @property
    def inbox_rule(self) -> PathRule:
        return self.rule(container_path(f".claude/users/{self.agent}", "inbox"))

    def rule(self, container_path: str) -> PathRule:
        for r in self.rules:
            if r.container_path == container_path:
                return r
        raise KeyError(container_path)


def _shared_rules(root: Path, projects_source: str | None) -> list[PathRule]:
    return [
        PathRule(container_path="/", access=Access.READ_WRITE, purpose="Agent's home directory (HOME=/)",
                 mount=MountKind.NONE),
        PathRule(container_path=str(MCP_CONFIG_PATH), access=Access.BAKED,
                 purpose="MCP connection configuration", mount=MountKind.NONE, is_file=True),
        PathRule(container_path=str(PROJECTS_PATH), access=Access.READ_WRITE,
                 purpose="Clone repos, develop, build, test", mount=MountKind.VOLUME, source=projects_source),
        PathRule(container_path=str(CONTAINER_ROOT), access=Access.READ_ONLY,
                 purpose="Production QMS reference", mount=MountKind.BIND, source=str(root)),
    ]


def shared_rules(project_root: Path) -> tuple[PathRule, ...]:
    """The rows of the matrix that hold whatever agent a container runs (``/projects``: any volume).

    The audit judges a container whose agent it cannot tell by these."""
    return tuple(_shared_rules(Path(project_root), None))


def resolve(
    agent: str,
    project_root: Path,
    *,
    container_prefix: str = "qms-agent-",
    deploy_key: Path | None = None,
) -> AgentLayout:
    """The vision's access matrix for ``agent`` with ``project_root`` mounted at /pipe-dream."""
    check_agent_id(agent)
    root = Path(project_root)
    user = f".claude/users/{agent}"
    rules = [
        *_shared_rules(root, projects_volume(container_prefix, agent)),
        PathRule(container_path=container_path(user, "inbox"), access=Access.READ_ONLY,
                 purpose="Task notifications", mount=MountKind.NONE, source=str(inbox_dir(root, agent))),
        PathRule(container_path=container_path(user, "workspace"), access=Access.READ_WRITE,
                 purpose="QMS document checkout", mount=MountKind.BIND, source=str(workspace_dir(root, agent))),
    ]
    if deploy_key is not None:
        rules.append(
            PathRule(container_path=str(DEPLOY_KEY_PATH), access=Access.READ_ONLY,
                     purpose="Deploy key for GitHub (mounted, never baked)", mount=MountKind.BIND,
                     source=str(Path(deploy_key)), is_file=True)
        )
    return AgentLayout(agent=agent, project_root=root, rules=tuple(rules))


_WORKSPACE_TARGET_RE = re.compile(r"^/pipe-dream/\.claude/users/([a-z0-9_-]+)/workspace/?$")


def agent_from_workspace_path(target: str) -> str | None:
    """The agent whose workspace is mounted at ``target`` inside a container, if it is one."""
    m = _WORKSPACE_TARGET_RE.match(target)
    return m.group(1) if m else None


def for_settings(settings, agent: str) -> AgentLayout:
    """:func:`resolve` with the project root, prefix and deploy key from ``settings``."""
    return resolve(agent, settings.project_root, container_prefix=settings.container_prefix,
                   deploy_key=settings.deploy_key)


def mcp_config(container_mcp_url: str) -> dict:
    """The ``/.mcp.json`` the vision bakes into the image."""
    from core.settings import transport_from_url

    kind = "sse" if transport_from_url(container_mcp_url) == "sse" else "http"
    return {"mcpServers": {MCP_SERVER_NAME: {"type": kind, "url": container_mcp_url}}}
