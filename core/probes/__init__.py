"""The programs qms-panel runs inside agent containers, kept as files (read them, lint them, run them).

Each is handed to an interpreter the container has, as an argument (``sh -c``, ``python3 -c``,
``node -e``): nothing is copied into the container. What a program needs to keep secret (the
doctor's MCP URL) arrives on its standard input, never in its argv, so it is in no
``docker events`` record and no exec inspect.

- ``access.sh`` (POSIX sh): the access audit's probe of paths (read, create-and-remove a file).
- ``detect.sh``: which of python3, node, curl, wget the doctor can probe with.
- ``fetch.py``, ``fetch.js``, ``fetch.sh`` (curl or wget): the doctor's handshake with the MCP server.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["program"]


@cache
def program(name: str) -> str:
    """The text of the probe program ``name`` (a file of this package, e.g. ``"access.sh"``)."""
    return files(__package__).joinpath(name).read_text(encoding="utf-8")
