"""How the panes write times, ages, sizes and long text, and how they keep hostile text harmless.

Times show in the time zone of the app's clock (so a frozen clock in UTC makes every
snapshot the same on every machine).

Text from agents, files, containers and servers is shown with every control character visible
(:mod:`core.safe_text`) and never read as Rich markup: :func:`plain` makes such a string a
``Text``, :func:`safe_rich` cleans a ``Text`` that was built from one (styles kept), and
:func:`short` cuts a line to width after making it safe.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from rich.text import Text

from core.safe_text import is_safe, safe_line, safe_text


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
    """``text`` on one safe line (whitespace folded, controls shown), cut to ``width`` with an ellipsis."""
    line = safe_line(" ".join(str(text).split()))
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"


def plain(value: object, style: str = "") -> Text:
    """``value`` as a one-line ``Text``: controls shown visibly, ``[markup]`` shown as written."""
    return Text(safe_line(value), style=style)


def safe_rich(content: str | Text, style: str = "") -> Text:
    """``content`` as a ``Text`` whose every control character is visible (newlines kept).

    A ``str`` is never read as markup. A ``Text`` keeps its styles: it is cut at every span
    boundary and each piece is cleaned on its own, so an escape grows in place, in its style."""
    if isinstance(content, str):
        return Text(safe_text(content), style=style)
    if all(is_safe(part) for part in content.plain.split("\n")):
        return content
    cuts = sorted({edge for span in content.spans for edge in (span.start, span.end)})
    pieces = content.divide(cuts) if cuts else [content]
    clean = Text(style=content.style, justify=content.justify, no_wrap=content.no_wrap, end=content.end)
    for piece in pieces:
        part = Text(safe_text(piece.plain))
        for span in piece.spans:  # each span covers the whole piece: the cuts are at every edge
            part.stylize(span.style)
        clean.append_text(part)
    return clean


def count(n: int | None) -> str:
    """``812``, ``4.2k``, ``41k``, ``1.3M``; ``—`` for None."""
    if n is None:
        return "—"
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return str(n)


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int], width: int | None = None) -> str:
    """``values`` (oldest first) as block characters, ``width`` wide (neighbours summed; default one
    each). Zero is the lowest block, anything above it at least the second, the largest the full one."""
    if width and values and width < len(values):
        step = len(values) / width
        values = [sum(values[int(i * step):int((i + 1) * step)]) for i in range(width)]
    top = max(values, default=0)
    if top <= 0:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[0] if v <= 0 else SPARKS[max(1, round(v / top * (len(SPARKS) - 1)))] for v in values)
