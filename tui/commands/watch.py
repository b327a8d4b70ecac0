"""``qms-panel watch [--json] [--agent A] [--from-start]``: the gateway's live feed on the command
line, one line per event (the agent first), or with ``--json`` one JSON object per line (for jq).

Follows until ctrl+c (exit 130). When the feed cannot be read (no gateway yet, the gateway
restarted) it says so once on stderr, retries with backoff, and says when it is back; what was
missed meanwhile comes from the gateway's buffer, or as a ``missed N events`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from core.engine_events import backoff_delay
from core.errors import FeedDown, FeedEnded
from core.gateway.events import ActivityEvent, McpEvent, PeerEvent, event_line
from core.settings import check_agent_id
from tui.cli_common import EXIT_OK, settings_from_args

NAME = "watch"
HELP = "follow the gateway's live feed: every agent call, peer and gateway change, one line each"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.add_argument("--agent", metavar="A", help="only this agent's events (and the gateway's own)")
    parser.add_argument("--from-start", action="store_true", help="first what the gateway still holds")


def wanted(event, agent: str | None) -> bool:
    if agent is None:
        return True
    if isinstance(event, (McpEvent, PeerEvent, ActivityEvent)):
        return event.who.agent == agent
    return True


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    agent = check_agent_id(args.agent) if args.agent is not None else None
    from core.gateway.feed_client import FeedClient

    asyncio.run(follow(FeedClient.for_settings(settings), agent=agent, as_json=args.json, from_start=args.from_start))
    return EXIT_OK


async def follow(client, *, agent: str | None, as_json: bool, from_start: bool) -> None:
    attempt = 0
    said: str | None = None
    while True:
        try:
            async for event in client.events(from_start=from_start):
                if said is not None:
                    print(f"qms-panel watch: the feed is back ({client.listen})", file=sys.stderr, flush=True)
                    said = None
                attempt = 0
                if not wanted(event, agent):
                    continue
                if as_json:
                    print(event.model_dump_json(), flush=True)
                else:
                    print(f"{event.time:%H:%M:%S} {event_line(event)}", flush=True)
        except (FeedDown, FeedEnded) as err:
            if str(err) != said:
                print(f"qms-panel watch: {err}; retrying", file=sys.stderr, flush=True)
                said = str(err)
        attempt += 1
        await asyncio.sleep(backoff_delay(attempt, initial=0.5, cap=5.0))
