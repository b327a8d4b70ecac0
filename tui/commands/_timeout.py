"""``--timeout SECONDS``, shared by the commands that connect somewhere: a positive, finite number.

``nan``, ``inf``, ``0`` and negative values are usage errors (exit 2), refused by the parser
before anything connects. It bounds the connect only; each call's wait is the ``call_timeout``
setting.
"""

from __future__ import annotations

import argparse
import math


def seconds(text: str) -> float:
    """``text`` as a positive, finite number of seconds (an argparse ``type``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def add_timeout_argument(parser: argparse.ArgumentParser, default: float, what: str) -> None:
    parser.add_argument("--timeout", type=seconds, default=default, metavar="SECONDS",
                        help=f"{what} (default: {default:g})")
