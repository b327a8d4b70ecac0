"""What `start`, `stop` and `restart` share: one agent argument, one manager call, one row out."""

from __future__ import annotations

from tui.cli_common import EXIT_OK, print_json, settings_from_args
from tui.commands._record import add_reason_argument, recorded


def add_agent_arguments(parser) -> None:
    parser.add_argument("agent", metavar="AGENT", help="agent id")
    parser.add_argument("--json", action="store_true", help="print the container row as JSON")
    add_reason_argument(parser)


def run_lifecycle(args, method: str, done: str) -> int:
    """Call the bundle's ``containers.<method>(agent)`` and print the row (``done`` is the past tense)."""
    from core.services import build_services
    from core.settings import check_agent_id

    check_agent_id(args.agent)
    settings = settings_from_args(args)
    row = recorded(args, settings, method, lambda: getattr(build_services(settings).containers, method)(args.agent),
                   agent=args.agent, container=settings.container_name(args.agent),
                   result=lambda row: ("ok", row.summary()))
    if args.json:
        print_json(row)
    else:
        print(f"{done} {row.summary()}")
    return EXIT_OK
