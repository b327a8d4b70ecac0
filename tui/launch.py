"""`qms-panel` with no subcommand: the app at once, its services built after the first frame.

Only Textual and the core's light models are imported before the first frame; the services
(Docker SDK, MCP SDK, the boards) are built in a thread once it is drawn (:mod:`tui.startup`).
"""

from __future__ import annotations

from core.settings import Settings
from tui.library_logs import quiet_library_logs
from tui.startup import Step, Startup


def run_app(settings: Settings, *, prepare: Step | None = None, after: Step | None = None) -> int:
    """Run the panel until the operator quits; the exit code is 0 unless the app says otherwise.

    ``prepare(say)`` runs in a thread after the first frame and before the services are built;
    ``after(say)`` in a thread once they are live; ``say(text)`` shows a progress line in the panel.
    A failing ``prepare`` is shown as its one line and the panel stays open (``after`` is skipped);
    a failing ``after`` is one notification. Either may still run when the operator quits: this
    returns anyway (daemon threads) and the caller cleans up what they made.
    """
    from tui.app import make_app

    quiet_library_logs()
    startup = Startup(lambda: _build(settings), prepare=prepare, after=after)
    try:
        code = make_app(settings, startup=startup).run()
    finally:
        startup.close()
    return code or 0


def _build(settings: Settings):  # noqa: ANN202 - the bundle (core.services.Services)
    from core.services import build_services  # its parts import the Docker and MCP SDKs: in the thread

    return build_services(settings)
