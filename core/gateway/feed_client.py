"""Reading the gateway's live feed (:mod:`core.gateway.feed`) with httpx and httpx-sse.

``FeedClient.events()`` yields the feed's typed events until the stream ends or breaks, and
remembers the run and seq it got to: the next ``events()`` resumes after them, so a reader that
reconnects gets what it missed from the gateway's buffer, or a gap event saying what is gone.
Failing to connect, a missing token, a refused token, or something that is not a feed raise
:class:`FeedDown` with one line; the stream ending raises :class:`FeedEnded` (a live feed ends only
by failure). An event that does not parse is counted in :attr:`bad_events` and skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import httpx
from httpx_sse import EventSource

from core.errors import FeedDown, FeedEnded
from core.gateway.events import FeedEvent, GatewayState, parse_event
from core.gateway.feed import read_token

READ_TIMEOUT = 30.0  # three keepalives: a gateway silent this long is gone


class FeedClient:
    """See the module docstring."""

    def __init__(self, listen: str, token_path: Path, *, connect_timeout: float = 3.0) -> None:
        self.listen = listen
        self.token_path = Path(token_path)
        self.connect_timeout = connect_timeout
        self.run: str | None = None
        self.seq: int | None = None
        self.bad_events = 0
        self.head: tuple[str, int] | None = None  # the feed's last event as this reader came (RUN, SEQ)

    @classmethod
    def for_settings(cls, settings) -> FeedClient:
        return cls(settings.feed_listen, settings.feed_token_path())

    def _client(self) -> httpx.AsyncClient:
        if self.listen.startswith("unix:"):
            transport = httpx.AsyncHTTPTransport(uds=self.listen[5:], retries=0)
            base = "http://gateway-feed"
        else:
            transport = httpx.AsyncHTTPTransport(retries=0)
            base = f"http://{self.listen}"
        token = read_token(self.token_path)
        return httpx.AsyncClient(transport=transport, base_url=base, trust_env=False,
                                 headers={"Authorization": f"Bearer {token}"},
                                 timeout=httpx.Timeout(self.connect_timeout, read=READ_TIMEOUT))

    def _down(self, err: Exception) -> FeedDown:
        if isinstance(err, httpx.ConnectError):
            return FeedDown(f"no gateway feed answers at {self.listen} (is `qms-panel gateway` running?)")
        if isinstance(err, httpx.TimeoutException):
            return FeedDown(f"the gateway feed at {self.listen} did not answer in time")
        return FeedDown(f"the gateway feed at {self.listen} failed: {type(err).__name__}: {err}".splitlines()[0])

    @staticmethod
    def _check(response: httpx.Response, listen: str) -> None:
        if response.status_code == 401:
            raise FeedDown(f"the gateway feed at {listen} refused the token (a gateway of another state_dir?)")
        if response.status_code != 200:
            raise FeedDown(f"the gateway feed at {listen} answered HTTP {response.status_code}")

    async def state(self) -> GatewayState:
        """The gateway's state now (one request)."""
        try:
            async with self._client() as client:
                response = await client.get("/state")
                self._check(response, self.listen)
                return GatewayState.model_validate_json(response.content)
        except httpx.HTTPError as err:
            raise self._down(err) from None
        except ValueError as err:
            raise FeedDown(f"the gateway feed at {self.listen} sent a state that does not parse ({err})"
                           .splitlines()[0]) from None

    async def backlog(self) -> list[FeedEvent]:
        """The gateway's state and whole buffer as they are now (one connection, read to the head
        it names; see :mod:`core.gateway.feed`); for a report, not for following."""
        self.run = self.seq = None
        self.head = None
        got: list[FeedEvent] = []
        async with aclosing(self.events(from_start=True)) as events:
            async for event in events:
                got.append(event)
                run, seq = self.head or (None, 0)
                if not seq or (event.run == run and event.seq >= seq):
                    break
        return got

    async def events(self, *, from_start: bool = False) -> AsyncIterator[FeedEvent]:
        """The feed's events (see the module docstring). ``from_start``: the gateway's whole buffer
        first, on the first connection."""
        params = {}
        if self.seq is not None:
            params = {"since": str(self.seq), "run": self.run or ""}
        elif from_start:
            params = {"since": "0"}
        try:
            async with self._client() as client:
                async with client.stream("GET", "/events", params=params) as response:
                    self._check(response, self.listen)
                    if not response.headers.get("content-type", "").startswith("text/event-stream"):
                        raise FeedDown(f"{self.listen} is not a gateway feed (it answered "
                                       f"{response.headers.get('content-type') or 'no content type'})")
                    self.head = _head(response.headers.get("x-feed-head", ""))
                    async for sse in EventSource(response).aiter_sse():
                        try:
                            event = parse_event(sse.data)
                        except ValueError:
                            self.bad_events += 1
                            continue
                        if event is None:
                            continue
                        if event.seq and event.run:
                            if event.run != self.run:
                                self.run, self.seq = event.run, event.seq
                            elif event.seq > (self.seq or 0):  # a state sent first may be older
                                self.seq = event.seq
                        yield event
        except httpx.HTTPError as err:
            raise self._down(err) from None
        raise FeedEnded(f"the gateway feed at {self.listen} closed the stream")


def _head(text: str) -> tuple[str, int] | None:
    run, _, seq = text.partition(":")
    return (run, int(seq)) if run and seq.isdigit() else None
