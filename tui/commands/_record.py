"""What every command that acts shares: ``--reason``, and the action log around the action.

:func:`recorded` runs the action through :meth:`core.action_log.ActionLog.run`: an intent that
cannot be written stops the command before it acts (one line, exit 1); a result that cannot be
written is one line naming what happened, exit 1 (the action is done but not on record).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from core.action_log import for_settings, ok_result
from core.settings import Settings

T = TypeVar("T")


def add_reason_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", metavar="TEXT", help="why: kept with the action in the action log "
                                                         "(qms-panel history)")


def recorded(args: argparse.Namespace, settings: Settings, action: str, work: Callable[[], T], *,
             agent: str | None = None, doc_id: str | None = None, container: str | None = None,
             result: Callable[[T], tuple[str, str]] = ok_result) -> T:
    """Run ``work`` as ``action`` on record, with the command's ``--reason`` (see
    :meth:`core.action_log.ActionLog.run`)."""
    return for_settings(settings).run(action, work, result=result, agent=agent, doc_id=doc_id,
                                      container=container, reason=args.reason)
