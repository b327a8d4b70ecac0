"""`qms-panel` with no subcommand: build the services for the settings and run the app."""

from __future__ import annotations

import logging
import os

from core.services import build_services
from core.settings import Settings


def quiet_library_logs() -> None:
    """Library log records (the MCP SDK logs a traceback whenever a server goes away) must not
    reach the terminal the panel draws on: the panel shows those failures as states already.
    ``QMS_PANEL_LOG=FILE`` keeps them in a file instead."""
    path = os.environ.get("QMS_PANEL_LOG")
    if path:
        logging.basicConfig(filename=path, level=logging.INFO,
                            format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    else:
        logging.getLogger().addHandler(logging.NullHandler())


def run_app(settings: Settings) -> int:
    """Run the panel until the operator quits; the exit code is 0 unless the app says otherwise."""
    from tui.app import make_app

    quiet_library_logs()
    services = build_services(settings)
    try:
        app = make_app(settings, services)
        code = app.run()
    finally:
        services.close()
    return code or 0
