"""The operations the operator asks for: run one, word its outcome once.

Docker operations (launch, restart, start, stop) are blocking SDK calls: they run in a thread
(``asyncio.to_thread``) from an async worker, so the UI loop never waits on the engine. MCP
operations (checkin, checkout, repair) are coroutines of :class:`core.qms_ops.QmsOps`; their
blocking file work (hashing the copy, reading ``.meta``) is the core's to keep off the loop.

Every operation passes through :meth:`Operations.conduct`, the one place an operator action
begins and ends: its outcome becomes one :class:`core.notice.Notice` and is shown. The action
log (``core.action_log``: ``begin`` before the work, ``ticket.finish`` after it) hooks in there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from core.containers import ContainerRow
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

    def describe(self) -> str:
        """``restarting claude``, ``checkin CR-001 for claude``: the worker's name and a failure's subject."""
        if self.doc_id is None:
            return f"{DOING[self.verb]} {self.agent}"  # type: ignore[index]
        return f"{self.verb} {self.doc_id} for {self.agent}"


def container_notice(action: Action, row: ContainerRow) -> Notice:
    """What a Docker operation did, from the row it returned."""
    return Notice(title=DONE[action.verb], message=f"{action.agent}: {row.status_text or row.state}")


def notice_of(outcome: OpOutcome) -> Notice:
    """What a checkin, checkout or repair did (the lead switches this to ``outcome.notice()``)."""
    subject = f"{outcome.doc_id} for {outcome.agent}"
    operation = outcome.operation
    if outcome.status == "ok":
        first = next((line for line in outcome.text.splitlines() if line.strip()), "")
        steps = "\n".join(outcome.actions) if operation == "repair" else first
        return Notice(title=DONE.get(operation, operation.capitalize()), message=f"{subject}\n{steps}".strip())
    intact = "\nThe workspace copy is unchanged." if outcome.workspace_intact else ""
    if outcome.status == "identity-locked":
        retry = f" Retry in {outcome.retry_after_s:.0f} s." if outcome.retry_after_s else ""
        return Notice(title=f"{operation.capitalize()} refused: identity in use", severity="warning",
                      message=f"{subject}: {outcome.agent} is active in a container, so the server refuses calls "
                              f"made for it.{retry}{intact}")
    if outcome.status == "refused":
        return Notice(title=f"{operation.capitalize()} refused", severity="warning",
                      message=f"{subject}: {outcome.reason}{intact}")
    return Notice(title=f"{operation.capitalize()} failed", severity="error",
                  message=f"{subject}: {outcome.reason}{intact}")


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

    def container(self, verb: ContainerVerb, agent: str) -> None:
        """Launch, restart, start or stop ``agent``'s container; the board lists again afterwards."""
        action = Action(verb, agent)
        call: Callable[[str], ContainerRow] = getattr(self.services.containers, verb)

        async def work() -> Notice:
            try:
                return container_notice(action, await asyncio.to_thread(call, agent))
            finally:
                self.busy(agent, None)
                self.services.container_board.refresh()

        self.busy(agent, DOING[verb])
        self.spawn(self.conduct(action, work), action.describe())

    def document(self, verb: DocumentVerb, doc_id: str, agent: str) -> None:
        """Check ``doc_id`` in, out or repair it on behalf of ``agent`` over MCP."""
        action = Action(verb, agent, doc_id)
        call: Callable[[str, str], Awaitable[OpOutcome]] = getattr(self.services.ops, verb)

        async def work() -> Notice:
            return notice_of(await call(doc_id, agent))

        self.spawn(self.conduct(action, work), action.describe())

    async def conduct(self, action: Action, work: Callable[[], Awaitable[Notice]]) -> None:
        """The one path of every operator action: the work, then its outcome, worded and shown.

        (The action log's ``begin`` goes before the work, its ``finish`` with the notice after it.)"""
        try:
            notice = await work()
        except Exception as err:  # noqa: BLE001 - every outcome, failures included, ends here
            notice = failure_notice(action, err)
        self.show(notice)
