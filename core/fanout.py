"""Readers of a board's changes: each is woken on a change and keeps what happened since it last read.

A board publishes items (engine events, audit lines) with :meth:`Fanout.publish`; each reader of
:meth:`Fanout.follow` gets, per wake-up, one step made of the items since its previous one (the
board makes its update from them and its view then). A slow reader never
holds the board up: wake-ups coalesce (it reads the board's latest view when it gets round to
it), and it keeps at most ``bound`` items, counting the ones it lost. Use on one event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")
BOUND = 1000  # items a reader keeps before the oldest are dropped (and counted)


class _Reader(Generic[T]):
    def __init__(self, bound: int) -> None:
        self.items: deque[T] = deque(maxlen=bound)
        self.dropped = 0
        self.wake = asyncio.Event()

    def push(self, items: list[T]) -> None:
        self.dropped += max(0, len(self.items) + len(items) - (self.items.maxlen or 0))
        self.items.extend(items)
        self.wake.set()

    def take(self) -> tuple[list[T], int]:
        items, dropped = list(self.items), self.dropped
        self.items.clear()
        self.dropped = 0
        return items, dropped


class Fanout(Generic[T]):
    """The readers of one board; see the module docstring."""

    def __init__(self, bound: int = BOUND) -> None:
        self.bound = bound
        self._readers: set[_Reader[T]] = set()

    def publish(self, items: Iterable[T] = ()) -> None:
        """Something changed (with these items, maybe none): wake every reader."""
        items = list(items)
        for reader in self._readers:
            reader.push(items)

    async def follow(self, step: Callable[[list[T], int], U]) -> AsyncIterator[U]:
        """``step([], 0)`` at once, then per change ``step(items since the previous step, items
        dropped)``. The reader counts from its first step on."""
        reader: _Reader[T] = _Reader(self.bound)
        self._readers.add(reader)
        try:
            yield step([], 0)
            while True:
                await reader.wake.wait()
                reader.wake.clear()
                yield step(*reader.take())
        finally:
            self._readers.discard(reader)
