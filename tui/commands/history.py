"""``qms-panel history [--json] [--agent A] [--since 1h]``: what the operator did through qms-panel.

Reads this project's records from the action log (``<state_dir>/actions.jsonl``) and pairs each
action's intent with its result: one line per action (time, operator, action, target, result,
reason), or one JSON array of the paired actions. An action whose result is not in the log
shows as "no result recorded" (``"result": null``). Lines of the log that are not records are
skipped and counted in one warning on stderr. Exit 0.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

from core.action_log import ActionEntry, ActionHistory, for_settings
from core.errors import UsageError
from core.safe_text import safe_line
from core.settings import check_agent_id, parse_duration
from tui.cli_common import EXIT_OK, print_json, settings_from_args
from tui.formats import short

NAME = "history"
HELP = "the operator's actions on this project (checkin, checkout, repair, launch, ...): who, what, result, why"

NO_RESULT = "no result recorded"
DETAIL_WIDTH = 60
_COLUMNS = ("TIME (UTC)", "OPERATOR", "ACTION", "TARGET", "RESULT", "REASON")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", metavar="A", help="only the actions for this agent")
    parser.add_argument("--since", metavar="WHEN",
                        help="only actions since a duration ago (1h, 90m, 2d) or a time (2026-12-01T09:00, UTC)")
    parser.add_argument("--json", action="store_true", help="print the actions as one JSON array")


def parse_since(text: str, now: datetime) -> datetime:
    """``1h`` -> an hour before ``now``; an ISO time as it is (UTC when it names no zone)."""
    duration = parse_duration(text)
    if isinstance(duration, timedelta):
        if duration.total_seconds() <= 0:
            raise UsageError(f"--since: {text!r} must be a positive duration such as 1h or 90m")
        return now - duration
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since: {text!r} is not a duration (1h, 90m, 2d) or a time (2026-12-01T09:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    agent = check_agent_id(args.agent) if args.agent is not None else None
    since = parse_since(args.since, datetime.now(UTC)) if args.since is not None else None
    history = for_settings(settings).read(since=since, agent=agent)
    warn_skipped(history)
    entries = history.entries()
    if args.json:
        print_json(entries)
    elif not entries:
        print(f"no actions on record for {safe_line(settings.project_root)} (in {safe_line(history.path)})")
    else:
        print_entries(entries)
    return EXIT_OK


def warn_skipped(history: ActionHistory) -> None:
    if history.skipped:
        first = history.skipped[0]
        print(f"qms-panel: warning: {len(history.skipped)} line(s) of {safe_line(history.path)} are not records "
              f"and were skipped (line {first.line}: {safe_line(first.reason)})", file=sys.stderr)


def result_text(entry: ActionEntry) -> str:
    if entry.result is None:
        return NO_RESULT
    if entry.result == "ok" or not entry.detail:
        return entry.result
    return f"{entry.result} ({short(entry.detail, DETAIL_WIDTH)})"


def entry_cells(entry: ActionEntry) -> tuple[str, ...]:
    """The cells of one action's line, every string made safe to print."""
    return tuple(safe_line(cell) for cell in (
        entry.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), entry.operator.label(), entry.action,
        entry.target(), result_text(entry), entry.reason or "-"))


def print_entries(entries: list[ActionEntry]) -> None:
    rows = [entry_cells(e) for e in entries]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
    for line in (_COLUMNS, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
