"""The hub and the feed's token on their own: numbering, slow readers, resuming, restarts."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import pytest

from core.errors import FeedDown, GatewayError
from core.gateway.events import FeedGap, PeerEvent, Who
from core.gateway.feed import ensure_token, read_token
from core.gateway.hub import Hub


def peer(n: int) -> PeerEvent:
    return PeerEvent(time=datetime.now(UTC), who=Who(peer=f"10.0.0.{n}"), state="connected")


async def test_publish_numbers_events_and_never_waits_for_a_reader():
    hub = Hub(capacity=5, reader_bound=3, run="r1")
    reader = hub.reader()
    first = asyncio.ensure_future(reader.__anext__())
    await asyncio.sleep(0)
    for n in range(1, 11):
        hub.publish(peer(n))
    assert hub.seq == 10 and [e.seq for e in hub.backlog(0)[0]] == [6, 7, 8, 9, 10]
    got = [await first] + [await reader.__anext__() for _ in range(3)]
    assert isinstance(got[0], FeedGap) and got[0].missed == 7  # it kept the newest 3 of 10
    assert [e.seq for e in got[1:]] == [8, 9, 10]
    await reader.aclose()


async def test_resume_after_since_and_the_gaps_a_reader_is_told():
    hub = Hub(capacity=4, run="r1")
    for n in range(1, 7):
        hub.publish(peer(n))
    events, gap = hub.backlog(4, "r1")
    assert [e.seq for e in events] == [5, 6] and gap is None
    events, gap = hub.backlog(1, "r1")
    assert [e.seq for e in events] == [3, 4, 5, 6] and gap.missed == 1
    events, gap = hub.backlog(3, "old-run")
    assert len(events) == 4 and "restarted" in gap.reason and gap.missed is None


def test_the_token_is_private_and_refused_when_it_is_not(tmp_path):
    path = tmp_path / "state" / "feed.token"
    token = ensure_token(path)
    assert len(token) >= 32 and oct(path.stat().st_mode)[-3:] == "600" and ensure_token(path) == token
    path.chmod(0o644)
    with pytest.raises(FeedDown, match="readable by others"):
        read_token(path)
    with pytest.raises(GatewayError, match="readable by others"):
        ensure_token(path)
    with pytest.raises(FeedDown, match="qms-panel gateway. creates it"):
        read_token(tmp_path / "missing")
    os.symlink(path, tmp_path / "link")
    with pytest.raises(FeedDown, match="not a regular file"):
        read_token(tmp_path / "link")
