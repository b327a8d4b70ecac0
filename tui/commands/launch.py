"""`qms-panel launch AGENT`: create and start the agent's container exactly as the vision says."""

from __future__ import annotations

import argparse
import shlex

from core.services import build_services
from core.settings import check_agent_id
from tui.cli_common import EXIT_OK, print_json, settings_from_args
from tui.commands._record import add_reason_argument, recorded

NAME = "launch"
HELP = "launch an agent's container (project read-only, its workspace read-write, /projects volume)"


def add_arguments(parser) -> None:
    parser.add_argument("agent", metavar="AGENT", help="agent id ([a-z0-9_-]+)")
    parser.add_argument("--command", dest="agent_command", metavar="CMD", type=_split,
                        help="run CMD instead of the image's command (one shell-quoted string)")
    parser.add_argument("--json", action="store_true", help="print the container row as JSON")
    add_reason_argument(parser)


def _split(text: str) -> list[str]:
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    if not argv:
        raise argparse.ArgumentTypeError("empty command")
    return argv


def run(args) -> int:
    check_agent_id(args.agent)
    settings = settings_from_args(args)
    row = recorded(args, settings, "launch",
                   lambda: build_services(settings).containers.launch(args.agent, args.agent_command), agent=args.agent,
                   container=settings.container_name(args.agent), result=lambda row: ("ok", row.summary()))
    if args.json:
        print_json(row)
    else:
        print(f"launched {row.summary()}")
    return EXIT_OK
