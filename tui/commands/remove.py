"""`qms-panel remove AGENT [--volume]`: remove an agent's container; its /projects volume only when asked.

No container, nothing removed: the command exits 1 with one line (``--volume`` goes with the
container; a volume an earlier ``remove`` kept is removed with ``docker volume rm``)."""

from __future__ import annotations

from core import layout
from core.errors import ContainerNotFound
from core.services import build_services
from core.settings import check_agent_id
from tui.cli_common import EXIT_OK, print_json, settings_from_args
from tui.commands._record import add_reason_argument, recorded

NAME = "remove"
HELP = "remove an agent's container (its /projects volume is kept unless --volume)"


def add_arguments(parser) -> None:
    parser.add_argument("agent", metavar="AGENT", help="agent id")
    parser.add_argument("--volume", action="store_true", help="also remove the agent's /projects volume")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_reason_argument(parser)


def run(args) -> int:
    check_agent_id(args.agent)
    settings = settings_from_args(args)
    volume = layout.projects_volume(settings.container_prefix, args.agent)

    def remove() -> None:
        containers = build_services(settings).containers
        if containers.get(args.agent) is None:
            kept = f" (a volume an earlier remove kept goes with `docker volume rm {volume}`)" if args.volume else ""
            raise ContainerNotFound(f"no container {settings.container_name(args.agent)} for agent {args.agent!r} "
                                    f"on {containers.endpoint}: nothing removed{kept}")
        containers.remove(args.agent, remove_volume=args.volume)

    recorded(args, settings, "remove", remove, agent=args.agent,
             container=settings.container_name(args.agent),
             result=lambda _: ("ok", f"volume {volume} {'removed' if args.volume else 'kept'}"))
    if args.json:
        print_json({"ok": True, "agent": args.agent, "container": settings.container_name(args.agent),
                    "volume": volume, "volume_removed": args.volume})
    else:
        kept = "removed" if args.volume else "kept"
        print(f"removed {settings.container_name(args.agent)}; volume {volume} {kept}")
    return EXIT_OK
