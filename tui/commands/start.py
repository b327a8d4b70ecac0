"""`qms-panel start AGENT`: start an agent's stopped container."""

from __future__ import annotations

from tui.commands._lifecycle import add_agent_arguments, run_lifecycle

NAME = "start"
HELP = "start an agent's stopped container"


def add_arguments(parser) -> None:
    add_agent_arguments(parser)


def run(args) -> int:
    return run_lifecycle(args, "start", "started")
