"""``qms-panel repair DOC --agent A``: restore a missing workspace copy and check it in.

For a document whose meta says checked out to the agent while the workspace copy is missing
(contract section 9): copy the current draft into the workspace, check it in as the agent, and
print exactly what was done. If that checkin fails, the copy is removed again.
"""

from __future__ import annotations

import argparse

from tui.commands.checkout import add_operation_arguments, run_operation

NAME = "repair"
HELP = "restore a checked-out document's missing workspace copy from its draft and check it in"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_operation_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_operation(args, "repair")
