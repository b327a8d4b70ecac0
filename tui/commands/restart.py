"""`qms-panel restart AGENT`: restart an agent's container in one call (mounts and the /projects volume kept)."""

from __future__ import annotations

from tui.commands._lifecycle import add_agent_arguments, run_lifecycle

NAME = "restart"
HELP = "restart an agent's container in one call (mounts and the /projects volume kept)"


def add_arguments(parser) -> None:
    add_agent_arguments(parser)


def run(args) -> int:
    return run_lifecycle(args, "restart", "restarted")
