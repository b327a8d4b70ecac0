"""Who a peer is: the gateway decides from where a connection comes, never from what it says.

A peer address is looked up among the engine's running containers (their addresses on every
network, one list call). It is let in only when that container carries qms-panel's managed label
and this project root's label; its agent is then the container's agent label. Two running
containers of this project for one agent: the one created first keeps the agent, the other is
refused. A loopback peer is a client on the host: let in (``who.host``) only with
``gateway_allow_host``. Everything else is refused with a line naming the peer.

The list is cached and dropped on every engine event the gateway follows (start, die, destroy of
any container it watches) and after ``ttl`` seconds; a peer not in the cache re-lists at once
(concurrent misses share one list), so a container that has just started is never refused by a
race with its start event. Engine calls run in a thread.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable

from pydantic import BaseModel

from core.containers import ContainerManager, PeerContainer
from core.gateway.events import Who
from core.safe_text import safe_line


class Resolution(BaseModel):
    who: Who
    refused: str = ""  # empty: let in; else the one line the peer is told


def is_loopback(peer: str) -> bool:
    try:
        address = ipaddress.ip_address(peer.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


class PeerResolver:
    """See the module docstring."""

    def __init__(self, containers: ContainerManager, *, allow_host: bool = False, ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.containers = containers
        self.allow_host = allow_host
        self.ttl = ttl
        self.clock = clock
        self._peers: list[PeerContainer] | None = None
        self._listed_at = 0.0
        self._listing: asyncio.Task[list[PeerContainer]] | None = None

    def invalidate(self) -> None:
        """The engine changed (an event): the next lookup lists again."""
        self._peers = None

    async def _list(self, fresh: bool) -> list[PeerContainer]:
        if not fresh and self._peers is not None and self.clock() - self._listed_at < self.ttl:
            return self._peers
        if self._listing is None or self._listing.done():
            self._listing = asyncio.ensure_future(asyncio.to_thread(self.containers.peers))
        listing = self._listing
        peers = await asyncio.shield(listing)
        if self._listing is listing:
            self._peers, self._listed_at = peers, self.clock()
        return peers

    async def resolve(self, peer_ip: str) -> Resolution:
        """The decision for one peer address (see the module docstring). An engine that cannot be
        asked refuses every container peer, with the reason."""
        peer = peer_ip or "?"
        if is_loopback(peer):
            if self.allow_host:
                return Resolution(who=Who(peer=peer, host=True))
            return Resolution(who=Who(peer=peer, host=True),
                              refused=f"{peer} is a client on the gateway's host; host clients are let in only "
                                      "with gateway_allow_host")
        try:
            peers = await self._list(fresh=False)
            found = self._find(peers, peer)
            if found is None:
                peers = await self._list(fresh=True)
                found = self._find(peers, peer)
        except Exception as err:  # noqa: BLE001 - the engine's failure is the reason, never a crash
            return Resolution(who=Who(peer=peer), refused=f"cannot tell who {peer} is: {safe_line(err)}")
        if found is None:
            return Resolution(who=Who(peer=peer), refused=f"{peer} is not a running container on this engine")
        who = Who(peer=peer, container=found.name, container_id=found.id)
        if not found.ours:
            if found.owner_root:
                whose = f"belongs to the qms-panel project at {safe_line(found.owner_root)}"
            else:
                whose = "was not made by qms-panel for this project"
            return Resolution(who=who, refused=f"{peer} is container {safe_line(found.name)}, which {whose}")
        if not found.agent:
            return Resolution(who=who, refused=f"{peer} is container {safe_line(found.name)}, which has no agent label")
        first = min((p for p in peers if p.ours and p.agent == found.agent), key=lambda p: (p.created, p.name))
        who.agent = found.agent
        if first.id != found.id:
            return Resolution(who=who, refused=f"agent {found.agent} is already bound to container "
                                               f"{safe_line(first.name)}; {safe_line(found.name)} is a second "
                                               "container for the same agent")
        return Resolution(who=who)

    @staticmethod
    def _find(peers: list[PeerContainer], peer: str) -> PeerContainer | None:
        return next((p for p in peers if peer in p.addresses), None)
