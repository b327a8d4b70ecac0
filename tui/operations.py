"""The operations the operator asks for: run one, word its outcome once.

Docker operations (launch, restart, start, stop) are blocking SDK calls: they run in a thread
(``asyncio.to_thread``) from an async worker, so the UI loop never waits on the engine. MCP
operations (checkin, checkout, repair) are coroutines of :class:`core.qms_ops.QmsOps`; their
blocking file work (hashing the copy, reading ``.meta``) is the core's to keep off the loop.

Every operation passes through :meth:`Operations.conduct`, the one place an operator action
begins and ends: its intent goes on the action log (``core.action_log``) before the work — when
that write fails the action does not run — its result after; its outcome becomes one
:class:`core.notice.Notice` (for QMS operations the core's own ``OpOutcome.notice()``) and is shown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from core.containers import ContainerRow
from core.action_log import ActionTicket, result_of_error, result_of_outcome
from core.errors import QmsPanelError
from core.notice import Notice
from core.qms_ops import OpOutcome
from tui.seams import PanelServices

ContainerVerb = Literal["launch", "restart", "start", "stop"]
DocumentVerb = Literal["checkin", "checkout", "repair"]

DOING: dict[ContainerVerb, str] = {"launch": "launching", "restart": "restarting", "start": "starting",
                                   "stop": "stopping"}
DONE: dict[str, str] = {"launch": "Launched", "restart": "Restarted", "start": "Started", "stop": "Stopped",
                        "checkin": "Checked in", "checkout": "Checked out", "repair": "Repaired"}


@dataclass(frozen=True)
class Action:
    """One operator action: what, for which agent, on which document (MCP) or container (Docker)."""

    verb: ContainerVerb | DocumentVerb
    agent: str
    doc_id: str | None = None
    reason: str | None = None  # the operator's, from the confirmation dialog (for the action log)

    def describe(self) -> str:
        """``restarting claude``, ``checkin CR-001 for claude``: the worker's name and a failure's subject."""
        if self.doc_id is None:
            return f"{DOING[self.verb]} {self.agent}"  # type: ignore[index]
        return f"{self.verb} {self.doc_id} for {self.agent}"


def container_notice(action: Action, row: ContainerRow) -> Notice:
    """What a Docker operation did, from the row it returned."""
    return Notice(title=DONE[action.verb], message=f"{action.agent}: {row.status_text or row.state}")


def failure_notice(action: Action, err: Exception) -> Notice:
    """An operation that raised: the error's own title, and what was being done."""
    if isinstance(err, QmsPanelError):
        return Notice(title=err.title, message=f"{action.describe()}: {err.detail or err.title}", severity="error")
    return Notice(title="Unexpected error", message=f"{action.describe()}: {type(err).__name__}: {err}",
                  severity="error")


class Operations:
    """Runs operations for the app: ``spawn`` starts a coroutine in an async worker (named),
    ``show`` shows a notice, ``busy`` marks an agent's row while its container operation runs."""

    def __init__(self, services: PanelServices, *, spawn: Callable[[Coroutine[Any, Any, None], str], None],
                 show: Callable[[Notice], None], busy: Callable[[str, str | None], None]) -> None:
        self.services = services
        self.spawn = spawn
        self.show = show
        self.busy = busy

    def container(self, verb: ContainerVerb, agent: str, reason: str | None = None) -> None:
        """Launch, restart, start or stop ``agent``'s container; the board lists again afterwards."""
        action = Action(verb, agent, reason=reason)
        call: Callable[[str], ContainerRow] = getattr(self.services.containers, verb)

        async def work() -> tuple[Notice, tuple[str, str]]:
            try:
                row = await asyncio.to_thread(call, agent)
                return container_notice(action, row), ("ok", row.summary())
            finally:
                self.busy(agent, None)
                self.services.container_board.refresh()

        self.busy(agent, DOING[verb])
        self.spawn(self.conduct(action, work), action.describe())

    def document(self, verb: DocumentVerb, doc_id: str, agent: str, reason: str | None = None) -> None:
        """Check ``doc_id`` in, out or repair it on behalf of ``agent`` over MCP."""
        action = Action(verb, agent, doc_id, reason)
        call: Callable[[str, str], Awaitable[OpOutcome]] = getattr(self.services.ops, verb)

        async def work() -> tuple[Notice, tuple[str, str]]:
            outcome = await call(doc_id, agent)
            return outcome.notice(), result_of_outcome(outcome)

        self.spawn(self.conduct(action, work), action.describe())

    async def conduct(self, action: Action, work: Callable[[], Awaitable[tuple[Notice, tuple[str, str]]]]) -> None:
        """The one path of every operator action: its intent on record, the work, its result on
        record, and its outcome worded and shown. No intent on record: the work does not run."""
        log = self.services.actions
        container = None if action.doc_id else self.services.settings.container_name(action.agent)
        try:
            ticket: ActionTicket = await asyncio.to_thread(
                log.begin, action.verb, agent=action.agent, doc_id=action.doc_id, container=container,
                reason=action.reason)
        except QmsPanelError as err:  # the log is unwritable: the action does not run unrecorded
            self.busy(action.agent, None)
            self.show(Notice(title=err.title, message=f"{action.describe()}: {err.detail}", severity="error"))
            return
        try:
            notice, result = await work()
        except Exception as err:  # noqa: BLE001 - every outcome, failures included, ends here
            notice, result = failure_notice(action, err), result_of_error(err)
        except BaseException as err:  # cancelled (the panel closing): still on record, as unknown
            await asyncio.shield(asyncio.to_thread(ticket.finish, *result_of_error(err)))
            raise
        try:
            await asyncio.to_thread(ticket.finish, *result)
        except QmsPanelError as err:
            self.show(Notice(title=err.title, message=err.detail, severity="error"))
        self.show(notice)
