"""``qms-panel checkin DOC --agent A``: check a document in on an agent's behalf.

The workspace copy is hashed first and verified byte-identical after a refusal; a missing copy
of a document checked out to the agent is refused without calling the server (see ``repair``).
"""

from __future__ import annotations

import argparse

from tui.commands.checkout import add_operation_arguments, run_operation

NAME = "checkin"
HELP = "check a document in on behalf of an agent (its workspace copy is never lost)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_operation_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_operation(args, "checkin")
