"""`qms-panel stop AGENT`: stop an agent's container."""

from __future__ import annotations

from tui.commands._lifecycle import add_agent_arguments, run_lifecycle

NAME = "stop"
HELP = "stop an agent's container"


def add_arguments(parser) -> None:
    add_agent_arguments(parser)


def run(args) -> int:
    return run_lifecycle(args, "stop", "stopped")
