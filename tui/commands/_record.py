"""What every command that acts shares: ``--reason``, and the action log around the action.

:func:`recorded` writes the intent record, runs the action, writes its result. An intent that
cannot be written stops the command before it acts (one line, exit 1); a result that cannot be
written is said in one line naming what happened, exit 1 (the action is done but not on record).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from core.action_log import for_settings
from core.errors import ActionLogError
from core.settings import Settings
from tui.cli import fail

T = TypeVar("T")


def add_reason_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", metavar="TEXT", help="why: kept with the action in the action log "
                                                         "(qms-panel history)")


def _done(_value: object) -> tuple[str, str]:
    return "ok", ""


def recorded(args: argparse.Namespace, settings: Settings, action: str, work: Callable[[], T], *,
             agent: str | None = None, doc_id: str | None = None, container: str | None = None,
             result: Callable[[T], tuple[str, str]] = _done) -> T:
    """Run ``work`` as ``action`` on record: intent first, then ``result(value)`` (default: ok),
    or the error it raised (which is raised on after it is recorded)."""
    ticket = for_settings(settings).begin(action, agent=agent, doc_id=doc_id, container=container,
                                          reason=args.reason)
    try:
        value = work()
    except BaseException as err:
        try:
            ticket.fail(err)
        except ActionLogError as log_err:
            fail(str(log_err))  # said first, then the action's own error
        raise
    ticket.finish(*result(value))
    return value
