"""Where library log records go: never to the terminal, and never with a credential in them.

The MCP SDK logs full tracebacks whenever a server goes away, and httpx logs every request's URL
at INFO (``user:pass@`` and ``?token=`` included). The panel shows those failures as states and
the command line says them in one line, so the records belong in a file the operator asked for
(``QMS_PANEL_LOG=FILE``) or nowhere; every record written there is redacted first.
"""

from __future__ import annotations

import logging
import os

from core.errors import SettingsError
from core.mcp_stream import redact_text

LOG_ENV = "QMS_PANEL_LOG"
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


class RedactSecrets(logging.Filter):
    """Replace a record's message, arguments and traceback by their redacted text.

    Installed on the handlers qms-panel configures, so it sees the records of every library
    (a logger's own filters would not see its children's records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a library's bad format string: keep what it said
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def quiet_library_logs() -> None:
    """Library records go to ``QMS_PANEL_LOG`` (redacted) when it is set, else nowhere.

    Without any handler Python's last resort prints WARNING records and their tracebacks on
    stderr; a handler on the root logger takes its place. Warnings (``warnings.warn``) become
    records too, so they follow the same way."""
    root = logging.getLogger()
    if any(getattr(h, "qms_panel", False) for h in root.handlers):
        return  # installed already (the command line does it before the app starts)
    path = os.environ.get(LOG_ENV)
    if path:
        try:
            handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"{LOG_ENV}: cannot write {path} ({exc.strerror or exc})") from None
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(RedactSecrets())
        root.setLevel(logging.INFO)
    else:
        handler = logging.NullHandler()
    handler.qms_panel = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    logging.captureWarnings(True)
