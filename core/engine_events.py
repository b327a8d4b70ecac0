"""Docker's event stream for our containers, surviving the engine going away.

``async for ev in EngineEvents(manager).stream()`` yields, until cancelled:

- :class:`EngineBack` each time a subscription is established (the first one too, with
  ``first=True``), carrying a fresh :meth:`ContainerManager.list` snapshot taken *after*
  subscribing, so no change falls between the snapshot and the events that follow it;
- :class:`ContainerEvent` for create, start, die, kill, oom, restart, health_status and destroy of
  the project's managed containers and of unmanaged ones that bind-mount the project root;
- :class:`EngineLost` when the stream breaks or cannot be opened (one per failed attempt), with
  the reason and the jittered, exponentially growing delay before the next attempt.

No exception escapes. The stream keeps no state of the containers:
:class:`core.container_board.ContainerBoard` applies these events and decides what is fresh. The events API call blocks, so it is read in a thread
(:class:`core.engine.ThreadedStream`); cancelling the consumer closes the HTTP stream. A
heartbeat pings the engine while the stream is quiet, so a remote engine that vanishes without
closing the connection is noticed too.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, suppress
from datetime import datetime, timezone
from typing import Literal, TypeVar, Union

from pydantic import BaseModel

from core.containers import LABEL_AGENT, LABEL_MANAGED, LABEL_PROJECT_ROOT, ContainerManager, ContainerRow
from core.engine import OPENED, ThreadedStream, translate
from core.errors import EngineUnreachable

ACTIONS = ("create", "start", "die", "kill", "oom", "restart", "health_status", "destroy")
Action = Literal["create", "start", "die", "kill", "oom", "restart", "health_status", "destroy"]


class ContainerEvent(BaseModel):
    time: datetime
    action: Action
    agent: str
    name: str
    id: str
    exit_code: int | None = None  # on die
    managed: bool = True
    health: str | None = None  # on health_status: healthy, unhealthy, starting
    signal: str | None = None  # on kill


class EngineLost(BaseModel):
    time: datetime
    endpoint: str
    reason: str
    attempt: int
    retry_in: float  # seconds


class EngineBack(BaseModel):
    time: datetime
    endpoint: str
    containers: list[ContainerRow]
    first: bool = False  # the first connection of this stream, not a recovery


EngineEvent = Union[ContainerEvent, EngineLost, EngineBack]
T = TypeVar("T")


def backoff_delay(attempt: int, *, initial: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with "equal jitter": between half and all of ``min(cap, initial * 2**(attempt-1))``."""
    ceiling = min(cap, initial * (2 ** max(0, attempt - 1)))
    return ceiling / 2 + rng() * ceiling / 2


class _Lost:
    """Why the heartbeat gave the engine up, and an event for whoever is waiting on something else."""

    def __init__(self) -> None:
        self.reason: BaseException | None = None
        self.event = asyncio.Event()

    def set(self, reason: BaseException) -> None:
        self.reason = reason
        self.event.set()


def _now() -> datetime:
    return datetime.now(timezone.utc)


class EngineEvents:
    """The live event stream of one project's containers.

    ``source`` is the :class:`ContainerManager` to use, or a zero-argument callable returning
    one (called before each connection attempt). Delays in seconds: the first retry waits about
    ``initial_backoff``, doubling up to ``max_backoff``; ``heartbeat`` is the ping interval while
    the stream is quiet, ``ping_timeout`` how long a ping may take.
    """

    def __init__(self, source: ContainerManager | Callable[[], ContainerManager], *, initial_backoff: float = 0.5,
                 max_backoff: float = 10.0, heartbeat: float = 5.0, ping_timeout: float = 3.0,
                 rng: Callable[[], float] = random.random) -> None:
        self._source = source
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.heartbeat = heartbeat
        self.ping_timeout = ping_timeout
        self._rng = rng
        self._unmanaged: set[str] = set()

    def _manager(self) -> ContainerManager:
        return self._source if isinstance(self._source, ContainerManager) else self._source()

    async def stream(self) -> AsyncIterator[EngineEvent]:
        attempt = 0
        first = True
        while True:
            endpoint = "the Docker engine"
            try:
                manager = self._manager()
                endpoint = manager.endpoint
                async with aclosing(self._session(manager, first)) as session:
                    async for item in session:
                        if isinstance(item, EngineBack):
                            attempt, first = 0, False
                        yield item
                reason = f"the engine at {endpoint} closed the event stream"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - nothing escapes the stream
                reason = str(translate(exc, endpoint))
            attempt += 1
            delay = backoff_delay(attempt, initial=self.initial_backoff, cap=self.max_backoff, rng=self._rng)
            yield EngineLost(time=_now(), endpoint=endpoint, reason=reason, attempt=attempt, retry_in=delay)
            await asyncio.sleep(delay)

    async def _session(self, manager: ContainerManager, first: bool) -> AsyncIterator[EngineEvent]:
        """One subscription: EngineBack, then events until the stream ends or the heartbeat fails."""
        filters = {"type": "container", "event": list(ACTIONS)}
        events = ThreadedStream(lambda: manager.open_events(filters), mark_open=True, name="docker-events")
        lost = _Lost()
        connected = False
        # From the start: an engine that accepts the connection and never answers is lost too.
        beat = asyncio.create_task(self._heartbeat(manager, events, lost))
        try:
            async with events:
                async for raw in events:
                    if raw is OPENED:
                        connected = True
                        rows = await self._unless_lost(asyncio.to_thread(manager.list), lost)
                        self._unmanaged = {r.id for r in rows if not r.managed}
                        yield EngineBack(time=_now(), endpoint=manager.endpoint, containers=rows, first=first)
                        continue
                    event = await self._event(manager, raw)
                    if event is not None:
                        yield event
        finally:
            beat.cancel()
            with suppress(asyncio.CancelledError):
                await beat
            if connected:
                manager.reset()
        if lost.reason is not None:
            raise lost.reason

    async def _heartbeat(self, manager: ContainerManager, events: ThreadedStream, lost: _Lost) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await asyncio.wait_for(asyncio.to_thread(manager.ping, self.ping_timeout), self.ping_timeout + 1)
            except asyncio.TimeoutError:
                lost.set(EngineUnreachable(f"the engine at {manager.endpoint} stopped answering pings"))
            except Exception as exc:  # noqa: BLE001 - handed to the session
                lost.set(exc)
            if lost.reason is not None:
                events.close()
                return

    @staticmethod
    async def _unless_lost(work: Awaitable[T], lost: _Lost) -> T:
        """Await ``work``, unless the heartbeat declares the engine lost first (then raise why)."""
        task = asyncio.ensure_future(work)
        signal = asyncio.ensure_future(lost.event.wait())
        try:
            await asyncio.wait({task, signal}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            signal.cancel()
        if not task.done():
            task.cancel()
            raise lost.reason
        return task.result()

    async def _event(self, manager: ContainerManager, raw: dict) -> ContainerEvent | None:
        """A ContainerEvent if ``raw`` concerns one of our containers, else None."""
        actor = raw.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        cid = actor.get("ID") or raw.get("id") or ""
        action, _, detail = (raw.get("Action") or raw.get("status") or "").partition(":")
        if action not in ACTIONS or not cid:
            return None
        if attrs.get(LABEL_MANAGED) == "true":
            if attrs.get(LABEL_PROJECT_ROOT) != str(manager.project_root):
                return None
            managed = True
        elif cid in self._unmanaged:
            managed = False
        elif action == "create" and await self._mounts_project(manager, cid):
            self._unmanaged.add(cid)
            managed = False
        else:
            return None
        if action == "destroy":
            self._unmanaged.discard(cid)
        name = attrs.get("name", cid[:12])
        nanos = raw.get("timeNano")
        when = datetime.fromtimestamp(nanos / 1e9 if nanos else raw.get("time", 0), timezone.utc)
        exit_code = attrs.get("exitCode")
        return ContainerEvent(
            time=when, action=action, agent=attrs.get(LABEL_AGENT) if managed else manager.agent_of(name, attrs),
            name=name, id=cid, exit_code=int(exit_code) if exit_code not in (None, "") else None, managed=managed,
            health=(detail.strip() or None) if action == "health_status" else None,
            signal=attrs.get("signal") if action == "kill" else None)

    async def _mounts_project(self, manager: ContainerManager, cid: str) -> bool:
        try:
            detail = await asyncio.to_thread(manager.inspect, cid)
        except Exception:  # noqa: BLE001 - gone already, or the engine hiccupped: not ours to report
            return False
        return manager.mounts_project({"Type": m.type, "Source": m.source} for m in detail.mounts)
