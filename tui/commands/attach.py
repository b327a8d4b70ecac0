"""`qms-panel attach AGENT`: join the agent's tmux session (`docker exec -it C tmux attach`).

The docker CLI does the attaching, with this process replaced by it (``os.execvp``), so the
terminal belongs to tmux; detach with the tmux prefix then ``d`` (Ctrl-b d by default).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from core.errors import ContainerNotFound, ContainerNotRunning, EngineError, EnginePermissionDenied, EngineUnreachable
from core.image import attach_argv
from core.settings import check_agent_id
from tui.cli_common import settings_from_args

NAME = "attach"
HELP = "attach this terminal to an agent's tmux session (detach: Ctrl-b d)"


def add_arguments(parser) -> None:
    parser.add_argument("agent", metavar="AGENT", help="agent id, e.g. claude")
    parser.add_argument("--json", action="store_true", help="report errors as JSON (success attaches)")


def run(args) -> int:
    from core.containers import ContainerManager

    settings = settings_from_args(args)
    container = settings.container_name(check_agent_id(args.agent))
    ContainerManager(settings).check_ours(args.agent, "attaches to")  # never another project's container
    docker = shutil.which("docker")
    if docker is None:
        raise EngineError("the docker CLI is not on PATH (attach runs `docker exec -it`)")
    state = container_state(docker, container)
    if state != "running":
        raise ContainerNotRunning(f"{container} is {state}; start the agent first")
    if not sys.stdin.isatty():
        raise EngineError("attach needs a terminal (stdin is not a TTY)", title="Cannot attach")
    sys.stdout.flush()
    os.execvp(docker, attach_argv(container, docker))
    return 1  # pragma: no cover - execvp does not return


def container_state(docker: str, container: str) -> str:
    """The container's state ("running", "exited", ...) as the engine reports it."""
    try:
        proc = subprocess.run([docker, "container", "inspect", "--format", "{{.State.Status}}", container],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineUnreachable(f"docker container inspect {container}: {exc}") from None
    if proc.returncode == 0:
        return proc.stdout.strip()
    error = " ".join(proc.stderr.split())
    if "No such container" in error or "No such object" in error:
        raise ContainerNotFound(f"no container named {container} (is the agent launched?)")
    if "permission denied" in error.lower():
        raise EnginePermissionDenied(error)
    if "Cannot connect" in error or "Is the docker daemon running" in error:
        raise EngineUnreachable(error)
    raise EngineError(f"docker container inspect {container}: {error}")
