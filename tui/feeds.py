"""The feed runner: every live source of the panel kept running, and its health in view.

A :class:`Feed` is made by a factory each time it starts (a fresh watcher, stream or loop per
run), so a restart never reuses a spent object. A feed is meant to run for as long as the panel
does: one that ends is a failure like one that raises (:class:`core.errors.FeedEnded`). After a
failure the feed starts again after the shared backoff (:func:`core.engine_events.backoff_delay`);
the attempt count goes back to one once the feed delivers again. Each failure is said once per
cause (the same reason again, before the feed recovered, is only a health change), and the
health of every feed is a plain model the status bar shows.

The runner knows nothing of Textual: the app runs :meth:`FeedRunner.keep` of each feed in an
async worker and hands the runner two callbacks (health changed, failure to say).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from core.engine_events import backoff_delay
from core.errors import FeedEnded, QmsPanelError
from core.notice import Notice

T = TypeVar("T")

FIRST_RETRY = 1.0  # seconds before the first restart of a failed feed
LAST_RETRY = 30.0  # the backoff's cap


class FeedHealth(BaseModel):
    """One feed as the operator sees it: running, or down since its last failure."""

    name: str
    up: bool = True
    reason: str = ""
    attempt: int = 0  # failures in a row
    retry_in: float | None = None


@dataclass(frozen=True)
class Feed(Generic[T]):
    """A live source: ``items()`` makes a fresh iterator per run; ``apply`` takes each item.

    A feed of nothing but a long-running task (the link's own loop, a board's ``run``) is made
    with :meth:`task`."""

    name: str
    items: Callable[[], AsyncIterator[T]]
    apply: Callable[[T], None]
    up_at_start: bool = False  # healthy as soon as it runs (a task never delivers anything to show it)

    @classmethod
    def task(cls, name: str, run: Callable[[], Awaitable[None]]) -> Feed[None]:
        async def items() -> AsyncIterator[None]:
            await run()
            return
            yield  # an async generator that yields nothing

        return Feed(name, items, lambda _: None, up_at_start=True)


def failure_of(err: BaseException) -> tuple[str, str]:
    """The title and reason an operator reads for a feed's failure."""
    if isinstance(err, QmsPanelError):
        return err.title, err.detail or err.title
    return "Unexpected error", f"{type(err).__name__}: {err}"


class FeedRunner:
    """Keeps feeds running; reports their health (``on_health``) and their failures (``on_failure``)."""

    def __init__(self, on_health: Callable[[dict[str, FeedHealth]], None], on_failure: Callable[[Notice], None], *,
                 first_retry: float = FIRST_RETRY, last_retry: float = LAST_RETRY,
                 quiet: Callable[[BaseException], bool] = lambda err: False) -> None:
        self.on_health = on_health
        self.on_failure = on_failure
        self.first_retry = first_retry
        self.last_retry = last_retry
        self.quiet = quiet  # failures shown as a state elsewhere (e.g. the engine down): not said again
        self.health: dict[str, FeedHealth] = {}
        self._said: dict[str, str] = {}  # feed -> the cause said last, until the feed delivers again

    async def keep(self, feed: Feed) -> None:
        """Run ``feed`` for ever: restart it after every end or failure (cancel the task to stop)."""
        self._set(FeedHealth(name=feed.name))
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            started = loop.time()
            if feed.up_at_start:
                self._set(FeedHealth(name=feed.name, attempt=attempt))
            try:
                async for item in feed.items():
                    if attempt:
                        attempt = self._recovered(feed.name)
                    feed.apply(item)
                raise FeedEnded(f"{feed.name} stopped delivering")
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - every failure of a feed is reported, then retried
                if loop.time() - started > self.last_retry:  # it ran well for a while: a new outage
                    attempt = self._recovered(feed.name)
                attempt += 1
                delay = backoff_delay(attempt, initial=self.first_retry, cap=self.last_retry)
                title, reason = failure_of(err)
                self._set(FeedHealth(name=feed.name, up=False, reason=reason, attempt=attempt, retry_in=delay))
                if self._said.get(feed.name) != reason and not self.quiet(err):
                    self._said[feed.name] = reason
                    self.on_failure(Notice(title=title, severity="error",
                                           message=f"{feed.name}: {reason} (retrying in {delay:.0f} s)"))
            await asyncio.sleep(delay)

    def _recovered(self, name: str) -> int:
        self._said.pop(name, None)
        self._set(FeedHealth(name=name))
        return 0

    def down(self) -> list[FeedHealth]:
        return [h for h in self.health.values() if not h.up]

    def _set(self, health: FeedHealth) -> None:
        if self.health.get(health.name) != health:
            self.health = {**self.health, health.name: health}
            self.on_health(self.health)
