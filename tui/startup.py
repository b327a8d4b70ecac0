"""How the panel starts: the first frame at once, then the services, filled in as they arrive.

``qms-panel`` draws its layout from Textual and the core's light models only; the Docker SDK,
the MCP SDK and httpx are imported, and the engine client, the MCP link and the boards are
built, in a daemon thread that starts after the first frame (:class:`Startup`). Until they
arrive the panes show their "connecting…" states, the app's services are a :class:`Starting`
stand-in (the settings, the clock and the declared matrix are known at once) and an operation
asked for meanwhile is answered with one line (:class:`NotYet`).

Around the services a caller may run its own slow steps (``tui.launch.run_app``):
``prepare(say)`` before them (the demo starts its dev server and gateway there) and
``after(say)`` once the panel is live (the demo builds its image and launches its agents).
``say(text)`` puts one progress line into the live stream, from any thread. A ``prepare`` that
fails is shown as its one line; the services are built all the same (the panel shows what it
can reach) and ``after`` is skipped. The threads are daemons: quitting never waits for them.

``QMS_PANEL_READY_FILE=PATH`` makes the panel append ``first-frame <epoch>`` and ``complete
<epoch>`` (containers listed and the QMS scanned, on screen) to PATH, once each: what
``tests/benchmarks/bench_startup.py`` measures.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import layout
from core.errors import QmsPanelError
from core.notice import Notice
from core.settings import Settings
from tui.feeds import failure_of

if TYPE_CHECKING:
    from tui.seams import PanelServices

Say = Callable[[str], None]
Step = Callable[[Say], object]
READY_ENV = "QMS_PANEL_READY_FILE"
NOT_YET = Notice(title="Not connected yet", message="the panel is still starting (the Docker engine and the MCP "
                 "server); try again in a moment", severity="warning")


class Starting:
    """The app's services until the real bundle arrives: what is known without any I/O."""

    def __init__(self, settings: Settings, now: Callable[[], datetime]) -> None:
        self.settings = settings
        self.now = now

    def layout(self, agent: str) -> layout.AgentLayout:
        return layout.for_settings(self.settings, agent)

    def close(self) -> None:
        pass


class NotYet:
    """Stands in for the app's operations and checks until the services arrive: every call says so."""

    def __init__(self, show: Callable[[Notice], None]) -> None:
        self._show = show

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._show(NOT_YET)


class ReadyMarks:
    """``QMS_PANEL_READY_FILE``: one line per startup milestone, ``<name> <epoch seconds>``, once each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[str] = set()

    @classmethod
    def from_env(cls) -> ReadyMarks | None:
        path = os.environ.get(READY_ENV)
        return cls(Path(path)) if path else None

    def mark(self, name: str) -> None:
        if name in self.done:
            return
        self.done.add(name)
        try:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(f"{name} {time.time():.6f}\n")
        except OSError:  # a benchmark's file, not the operator's: the panel carries on
            pass


class Startup:
    """Builds the services after the first frame, with the caller's ``prepare`` before and ``after`` once live.

    The app calls :meth:`begin` once its first frame is drawn and :meth:`went_live` once it has
    attached the services; the caller calls :meth:`close` after the app has ended (the services
    are closed, also when they arrive later)."""

    def __init__(self, connect: Callable[[], PanelServices], *, prepare: Step | None = None,
                 after: Step | None = None) -> None:
        self.connect = connect
        self.prepare = prepare
        self.after = after
        self.services: PanelServices | None = None
        self.prepared = False
        self._lock = threading.Lock()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._app: Any = None
        self._context: contextvars.Context | None = None

    # --- on the app's loop ---

    def begin(self, app: Any) -> None:
        """Start the thread (called on the app's loop, after the first frame)."""
        self._app, self._loop = app, asyncio.get_running_loop()
        self._context = contextvars.copy_context()  # the app's (active_app...): what its methods need
        self._thread(self._build, "qms-panel startup")

    def went_live(self) -> None:
        """The app attached the services: run ``after`` (only when ``prepare`` did not fail)."""
        if self.after is not None and self.prepared:
            self._thread(self._after, "qms-panel after startup")

    # --- in the threads ---

    def say(self, text: str) -> None:
        """One progress line in the panel's stream (thread-safe; nothing once the app has gone)."""
        self._post("say", str(text))

    def _build(self) -> None:
        self.prepared = self._step(self.prepare, "Startup failed", "error") if self.prepare else True
        try:
            services = self.connect()
        except Exception as err:  # noqa: BLE001 - shown as one line; the panel stays open
            self._failed("Cannot connect", err, "error")
            return
        with self._lock:
            if self._closed:  # the operator quit meanwhile
                services.close()
                return
            self.services = services
        self._post("attach_services", services)

    def _after(self) -> None:
        self._step(self.after, "After startup", "warning")

    def _step(self, step: Step, title: str, severity: str) -> bool:
        try:
            step(self.say)
        except Exception as err:  # noqa: BLE001 - one line, the panel carries on
            self._failed(title, err, severity)
            return False
        return True

    def _failed(self, title: str, err: BaseException, severity: str) -> None:
        if isinstance(err, QmsPanelError):
            notice = Notice(title=err.title, message=err.detail or err.title, severity=severity)  # type: ignore[arg-type]
        else:
            what, reason = failure_of(err)
            notice = Notice(title=title, message=f"{what}: {reason}", severity=severity)  # type: ignore[arg-type]
        self._post("startup_failed", notice)

    def _post(self, method: str, arg: object) -> None:
        loop, app = self._loop, self._app
        if loop is None or app is None:
            return
        try:
            loop.call_soon_threadsafe(self._deliver, app, method, arg, context=self._context)
        except RuntimeError:  # the loop has closed: the operator quit
            pass

    @staticmethod
    def _deliver(app: Any, method: str, arg: object) -> None:
        """On the app's loop: hand ``arg`` to the app, unless it is ending (the operator quit)."""
        if getattr(app, "is_running", True):
            getattr(app, method)(arg)

    @staticmethod
    def _thread(target: Callable[[], None], name: str) -> None:
        threading.Thread(target=target, name=name, daemon=True).start()

    # --- after the app ---

    def close(self) -> None:
        """Close the services, now or (when they are still being built) as soon as they are."""
        with self._lock:
            self._closed = True
            services, self.services = self.services, None
        if services is not None:
            services.close()
