"""How the panes write times, ages, sizes and long text.

Times show in the time zone of the app's clock (so a frozen clock in UTC makes every
snapshot the same on every machine).
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo


def clock_time(when: datetime | None, tz: tzinfo | None) -> str:
    """``14:03:07`` in ``tz``; empty for None."""
    if when is None:
        return ""
    if when.tzinfo is None:
        return when.strftime("%H:%M:%S")
    return when.astimezone(tz).strftime("%H:%M:%S")


def stamp(when: datetime | None, tz: tzinfo | None) -> str:
    """``2026-11-27 14:03`` in ``tz``; ``—`` for None."""
    if when is None:
        return "—"
    if when.tzinfo is not None:
        when = when.astimezone(tz)
    return when.strftime("%Y-%m-%d %H:%M")


def age(delta: timedelta | float | None) -> str:
    """``42s``, ``7m``, ``3h12m``, ``2d4h``; ``—`` for None."""
    if delta is None:
        return "—"
    seconds = int(delta.total_seconds() if isinstance(delta, timedelta) else delta)
    if seconds < 0:
        seconds = 0
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes}m"
    if hours < 24:
        rest = minutes % 60
        return f"{hours}h{rest:02d}m" if rest else f"{hours}h"
    rest = hours % 24
    return f"{days}d{rest}h" if rest else f"{days}d"


def since(when: datetime | None, now: datetime) -> str:
    """The age of ``when`` at ``now``, e.g. ``3h12m ago``; ``—`` for None."""
    if when is None:
        return "—"
    if when.tzinfo is None and now.tzinfo is not None:
        when = when.replace(tzinfo=now.tzinfo)
    return f"{age(now - when)} ago"


def size(n: int | None) -> str:
    """``812 B``, ``4.2 KiB``, ``1.3 MiB``."""
    if n is None:
        return "—"
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def short(text: object, width: int) -> str:
    """``text`` on one line, cut to ``width`` cells with an ellipsis."""
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"
