"""How the command line speaks: text made safe for the terminal, and failures said once.

While a subcommand runs, ``sys.stdout`` and ``sys.stderr`` are :class:`SafeOutput` streams
(:func:`safe_output`): every text line a command prints passes through
:func:`core.safe_text.safe_text`, so an agent's file name or a server's reply cannot clear the
screen or retitle the terminal, whichever command prints it. JSON passes unchanged: the encoder
has escaped every control character already.

A failure is one line on stderr, with credentials redacted (no ``user:pass@`` or ``?token=`` of
a URL), and with ``--json`` one object on stdout (:func:`report_failure`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from core.errors import InvalidAgentId, InvalidDocumentId, QmsPanelError, SettingsError, UsageError
from core.mcp_stream import redact_text
from core.safe_text import safe_line, safe_text

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
USAGE_ERRORS = (SettingsError, InvalidAgentId, InvalidDocumentId, UsageError)


class SafeOutput:
    """A text stream whose every write is shown visibly (:func:`~core.safe_text.safe_text`).

    Newlines pass; every other control or format character is written as ``\\x1b``, ``\\u202e``...
    The rest (``flush``, ``isatty``, ``fileno``...) is the wrapped stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(safe_text(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def safe_output() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` as :class:`SafeOutput` while a subcommand runs."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeOutput(saved[0]), SafeOutput(saved[1])  # type: ignore[assignment]
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved


def fail(message: str) -> None:
    """``qms-panel: message`` on stderr, as one visible line with credentials redacted."""
    print(f"qms-panel: {safe_line(redact_text(message))}", file=sys.stderr)


def report_failure(title: str, detail: str, code: int, *, as_json: bool, line: str | None = None) -> int:
    """Say a failure and return its exit code.

    stderr gets one line (``line``, default ``title: detail``); with ``--json`` stdout gets one
    object, ``{"error": detail, "title": title, "exit": code}``, where ``error`` says what and why
    and ``title`` names the kind of failure."""
    detail = redact_text(detail)
    if as_json:
        json.dump({"error": detail or title, "title": title, "exit": code}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    fail(line if line is not None else (f"{title}: {detail}" if detail else title))
    return code


def report_error(err: QmsPanelError, *, as_json: bool, code: int | None = None) -> int:
    """:func:`report_failure` for one of the family (exit 2 for usage and configuration errors)."""
    if code is None:
        code = EXIT_USAGE if isinstance(err, USAGE_ERRORS) else EXIT_FAILED
    return report_failure(err.title, err.detail, code, as_json=as_json, line=str(err))
