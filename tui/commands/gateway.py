"""``qms-panel gateway``: serve agent containers where they reach the QMS MCP server, bind each to
its own agent, forward to the real server (``upstream_url``) and publish every call on the live
feed. Runs in the foreground until SIGTERM, SIGINT or SIGHUP (exit 0); prints where it listens and
one line per agent call (``--json``: one object per event). A bad setting: one line, exit 2; an
address that cannot be bound: one line, exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from core.gateway.events import McpEvent, PeerEvent, event_line
from tui.cli_common import EXIT_OK, settings_from_args

NAME = "gateway"
HELP = "serve agents' MCP through qms-panel: identity per container, every call on the live feed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object per event")
    parser.add_argument("--quiet", action="store_true", help="print only where it listens")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    from core.containers import ContainerManager
    from core.gateway.service import Gateway

    gateway = Gateway(settings, containers=ContainerManager(settings))
    if settings.telemetry:  # Claude Code's OTLP and hooks, on their own port (the agents' address, 4318 by default)
        from core.telemetry.agent_env import DEFAULT_PORT
        from core.telemetry.receiver import Receiver

        gateway.add_app("telemetry", settings.telemetry_listen or f":{DEFAULT_PORT}", Receiver(gateway))
    asyncio.run(_serve(gateway, as_json=args.json, quiet=args.quiet))
    return EXIT_OK


def _announce(gateway, as_json: bool) -> None:
    where = {"listen": gateway.listen, "feed": gateway.feed_listen, "upstream": gateway.hub.state.upstream
             if gateway.hub.state else "", **{f"{name}_listen": v for name, v in gateway.extra_listen.items()}}
    if as_json:
        print(json.dumps({"kind": "listening", **where}), flush=True)
    else:
        print(f"qms-panel gateway: agents on {gateway.listen} (/sse, /mcp) -> {where['upstream']}; "
              f"feed on {gateway.feed_listen}", flush=True)


async def _print_events(gateway, as_json: bool) -> None:
    async for event in gateway.hub.reader():
        if event is None:
            continue
        if as_json:
            print(event.model_dump_json(), flush=True)
        elif (isinstance(event, McpEvent) and event.direction == "out" and event.outcome) or \
                isinstance(event, PeerEvent):
            print(f"{event.time:%H:%M:%S} {event_line(event)}", flush=True)


async def _serve(gateway, *, as_json: bool, quiet: bool) -> None:
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, main.cancel)
    printer = None

    def ready(gw) -> None:
        nonlocal printer
        _announce(gw, as_json)
        if not quiet:
            printer = asyncio.ensure_future(_print_events(gw, as_json))

    try:
        await gateway.run(on_ready=ready)
    except asyncio.CancelledError:
        pass
    finally:
        if printer is not None:
            printer.cancel()
        sys.stdout.flush()
