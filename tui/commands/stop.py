"""`qms-panel stop AGENT`: stop an agent's container."""

from __future__ import annotations

from core.containers import ContainerManager
from core.settings import check_agent_id
from tui.cli import EXIT_OK, print_json, settings_from_args

NAME = "stop"
HELP = "stop an agent's container"


def add_arguments(parser) -> None:
    parser.add_argument("agent", metavar="AGENT", help="agent id")
    parser.add_argument("--json", action="store_true", help="print the container row as JSON")


def run(args) -> int:
    check_agent_id(args.agent)
    row = ContainerManager(settings_from_args(args)).stop(args.agent)
    if args.json:
        print_json(row)
    else:
        print(f"stopped {row.summary()}")
    return EXIT_OK
