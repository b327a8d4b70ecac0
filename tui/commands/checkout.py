"""``qms-panel checkout DOC --agent A``: check a document out on an agent's behalf.

The operation commands (checkout, checkin, repair) share :func:`add_operation_arguments` and
:func:`run_operation`: validate the ids (exit 2), open a short-lived MCP link, run one
:class:`~core.qms_ops.QmsOps` call, print the outcome (exit 0 ok, 1 refused or failed).
"""

from __future__ import annotations

import argparse
import sys

from tui.cli_common import EXIT_FAILED, EXIT_OK, fail, print_json, settings_from_args

NAME = "checkout"
HELP = "check a document out on behalf of an agent (through the MCP server)"


def add_operation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("doc", metavar="DOC", help="document id, e.g. CR-001")
    parser.add_argument("--agent", required=True, metavar="AGENT", help="the agent to act for, e.g. claude")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="how long to wait for the MCP server (default: 10)")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")


def run_operation(args: argparse.Namespace, operation: str) -> int:
    import anyio  # the MCP SDK loads in seconds: only for the commands that need it

    from core.qms_ops import check_agent, check_doc_id, run_once

    doc, agent = check_doc_id(args.doc), check_agent(args.agent)
    settings = settings_from_args(args)

    async def work(ops):
        return await getattr(ops, operation)(doc, agent)

    outcome = anyio.run(lambda: run_once(settings.mcp_url, settings.transport_for(settings.mcp_url),
                                         settings.project_root, work, timeout=args.timeout))
    if args.json:
        print_json(outcome)
    elif outcome.actions:
        for action in outcome.actions:
            print(f"- {action}")
    elif outcome.ok and outcome.text:
        print(outcome.text)
    if not outcome.ok:
        fail(outcome.one_line())
        if outcome.retry_after_s is not None:
            print(f"qms-panel: retry in at most {outcome.retry_after_s:g} s", file=sys.stderr)
    return EXIT_OK if outcome.ok else EXIT_FAILED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_operation_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_operation(args, "checkout")
