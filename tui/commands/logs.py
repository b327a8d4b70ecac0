"""``qms-panel logs AGENT [--follow] [--tail N] [--json]``: an agent container's log.

What the container wrote is the agent's, so it is shown as every other output is, made safe
for the terminal (:class:`tui.cli_output.SafeOutput`); ``--json`` gives one JSON object per
line. Only this project's containers are read, like every other command. ``--follow`` keeps
reading until the container stops or ctrl+c (exit 0); no such container is one line, exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from core.settings import check_agent_id
from tui.cli_common import EXIT_OK, settings_from_args

NAME = "logs"
HELP = "show an agent container's log (--follow: until ctrl+c)"


def tail_count(text: str) -> int | str:
    """``--tail``: a number of lines (0 or more), or ``all``."""
    if text == "all":
        return text
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of lines (or 'all')")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("agent", metavar="AGENT", help="agent id, e.g. claude")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until ctrl+c")
    parser.add_argument("--tail", type=tail_count, default="all", metavar="N",
                        help="only the last N lines, or all (default: all)")
    parser.add_argument("--json", action="store_true", help='one {"agent": ..., "line": ...} object per line')


def run(args: argparse.Namespace) -> int:
    agent = check_agent_id(args.agent)
    settings = settings_from_args(args)
    from core.containers import ContainerManager

    manager = ContainerManager(settings)
    try:
        asyncio.run(show(manager, agent, tail=args.tail, follow=args.follow, as_json=args.json))
    except KeyboardInterrupt:  # ctrl+c ends --follow: what was asked for, so not a failure
        pass
    finally:
        manager.reset()  # closes the client it made
    return EXIT_OK


async def show(manager, agent: str, *, tail: int | str, follow: bool, as_json: bool) -> None:
    async for line in manager.logs(agent, tail=tail, follow=follow):
        print(json.dumps({"agent": agent, "line": line}) if as_json else line, flush=True)
