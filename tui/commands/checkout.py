"""``qms-panel checkout DOC --agent A [--force]``: check a document out on an agent's behalf.

A workspace copy already at the target while the document is checked in is never overwritten:
the checkout is refused with what is there, or (``--force``) the copy is first moved aside to
``.qms-panel/displaced/<agent>/`` and the line says where.

The operation commands (checkout, checkin, repair) share :func:`add_operation_arguments` and
:func:`run_operation`: validate the ids (exit 2), open a short-lived MCP link (``--timeout``
bounds the connect, the ``call_timeout`` setting each call), run one
:class:`~core.qms_ops.QmsOps` call, print its details (``- ...`` lines: what was done and checked)
and its one line (on stderr unless ok); exit 0 only for ok, else 1.
"""

from __future__ import annotations

import argparse

from core.safe_text import safe_line
from tui.cli_common import EXIT_FAILED, EXIT_OK, fail, print_json, settings_from_args
from tui.commands._record import add_reason_argument, recorded
from tui.commands._timeout import add_timeout_argument

NAME = "checkout"
HELP = "check a document out on behalf of an agent (through the MCP server)"


def add_operation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("doc", metavar="DOC", help="document id, e.g. CR-001")
    parser.add_argument("--agent", required=True, metavar="AGENT", help="the agent to act for, e.g. claude")
    add_timeout_argument(parser, 10.0, "how long to wait for the MCP server to connect")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_reason_argument(parser)


def run_operation(args: argparse.Namespace, operation: str, **options: object) -> int:
    import anyio  # the MCP SDK loads in seconds: only for the commands that need it

    from core.action_log import result_of_outcome
    from core.qms_ops import check_agent, check_doc_id, run_once

    doc, agent = check_doc_id(args.doc), check_agent(args.agent)
    settings = settings_from_args(args)

    async def work(ops):
        return await getattr(ops, operation)(doc, agent, **options)

    outcome = recorded(args, settings, operation, lambda: anyio.run(
        lambda: run_once(settings.mcp_url, settings.transport_for(settings.mcp_url), settings.project_root, work,
                         timeout=args.timeout, call_timeout=settings.call_timeout.total_seconds())),
        agent=agent, doc_id=doc, result=result_of_outcome)
    if args.json:
        print_json(outcome)
    else:
        for detail in outcome.details():
            print(f"- {safe_line(detail)}")
    line = safe_line(outcome.one_line())
    if outcome.ok:
        if not args.json:
            print(line)
        return EXIT_OK
    fail(line)
    return EXIT_FAILED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_operation_arguments(parser)
    parser.add_argument("--force", action="store_true",
                        help="move a workspace copy that is in the way aside (to .qms-panel/displaced/) first")


def run(args: argparse.Namespace) -> int:
    return run_operation(args, "checkout", force=args.force)
