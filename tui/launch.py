"""`qms-panel` with no subcommand: build the services for the settings and run the app."""

from __future__ import annotations

from collections.abc import Callable

from core.services import build_services
from core.settings import Settings
from tui.library_logs import quiet_library_logs


def run_app(settings: Settings, *, after: Callable[[Callable[[str], None]], None] | None = None) -> int:
    """Run the panel until the operator quits; the exit code is 0 unless the app says otherwise.

    ``after(say)``, if given, runs in a thread worker once the panel is live (the demo starts its
    agents there); ``say(text)`` shows a line in the panel; an error it raises is shown as one line.
    """
    from tui.app import make_app

    quiet_library_logs()
    services = build_services(settings)
    try:
        app = make_app(settings, services, after=after)
        code = app.run()
    finally:
        services.close()
    return code or 0
