"""The gateway's event hub: every event of one gateway run, numbered, in a bounded buffer, and
readers that follow it without ever holding the publisher up.

``publish`` stamps ``seq`` (1, 2, ... in this run) and ``run`` and appends to a ring buffer of
``capacity`` events. A reader (:meth:`Hub.reader`) keeps its own queue of at most ``reader_bound``
events; when it falls behind, its oldest events are dropped and counted, and the next thing it
reads is one :class:`FeedGap` saying how many. An agent's call never waits for a reader.
Use on one event loop (the gateway's).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from core.gateway.events import FeedGap, GatewayState, _Event

READER_BOUND = 2000


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Reader:
    def __init__(self, bound: int) -> None:
        self.queue: deque[_Event] = deque(maxlen=bound)
        self.dropped = 0
        self.wake = asyncio.Event()

    def push(self, event: _Event) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(event)
        self.wake.set()


class Hub:
    """See the module docstring."""

    def __init__(self, *, capacity: int = 10_000, run: str | None = None, reader_bound: int = READER_BOUND,
                 now: Callable[[], datetime] = utc_now) -> None:
        self.run = run or secrets.token_hex(4)
        self.now = now
        self._buffer: deque[_Event] = deque(maxlen=capacity)
        self._seq = 0
        self._readers: set[_Reader] = set()
        self._reader_bound = reader_bound
        self._state: GatewayState | None = None

    @property
    def seq(self) -> int:
        """The seq of the last event published (0 before the first)."""
        return self._seq

    @property
    def state(self) -> GatewayState | None:
        return self._state

    def publish(self, event: _Event) -> _Event:
        """Number ``event``, keep it, hand it to every reader. Never blocks, never raises for a reader."""
        self._seq += 1
        event.seq = self._seq
        event.run = self.run
        self._buffer.append(event)
        for reader in self._readers:
            reader.push(event)
        return event

    def set_state(self, state: GatewayState) -> None:
        """The gateway's current state; published as an event too."""
        self._state = state
        self.publish(state)

    def oldest_seq(self) -> int:
        """The seq of the oldest event still buffered (``seq + 1`` when the buffer is empty)."""
        return self._buffer[0].seq if self._buffer else self._seq + 1

    def backlog(self, since: int, run: str | None = None) -> tuple[list[_Event], FeedGap | None]:
        """The buffered events after ``since`` of run ``run`` (None: this run), and the gap before
        them when some are gone (the buffer moved on, or the gateway restarted)."""
        if run is not None and run != self.run:
            gap = FeedGap(time=self.now(), missed=None,
                          reason=f"the gateway restarted (run {run} ended; this is run {self.run})")
            return list(self._buffer), gap
        events = [e for e in self._buffer if e.seq > since]
        first = events[0].seq if events else self._seq + 1
        missed = first - since - 1
        gap = None
        if missed > 0 and since > 0:
            gap = FeedGap(time=self.now(), missed=missed, reason="older than the gateway's buffer")
        return events, gap

    async def reader(self, since: int | None = None, run: str | None = None,
                     keepalive: float | None = None) -> AsyncIterator[_Event | None]:
        """Events as they come: with ``since``, the buffered ones after it first (see :meth:`backlog`).
        A reader that falls behind gets a FeedGap(missed=n) before its next event. With
        ``keepalive``, None comes after that many quiet seconds (a feed sends a comment then)."""
        reader = _Reader(self._reader_bound)
        self._readers.add(reader)
        try:
            if since is not None:
                events, gap = self.backlog(since, run)
                if gap is not None:
                    yield gap
                for event in events:  # published meanwhile: queued in ``reader``, all newer
                    yield event
            while True:
                if not reader.queue:
                    reader.wake.clear()
                    try:
                        await asyncio.wait_for(reader.wake.wait(), keepalive)
                    except TimeoutError:
                        yield None
                        continue
                if reader.dropped:
                    missed, reader.dropped = reader.dropped, 0
                    yield FeedGap(time=self.now(), missed=missed,
                                  reason="this reader fell behind; the oldest events were dropped")
                while reader.queue:
                    yield reader.queue.popleft()
                    if reader.dropped:
                        break
        finally:
            self._readers.discard(reader)
