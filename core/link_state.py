"""What the MCP link is doing, as the panel shows it: :class:`LinkState`.

Kept apart from :mod:`core.mcp_link` (which subclasses the MCP SDK's and httpx's classes, so it
loads both, about a third of a second) so that the panes can be drawn before the SDK is loaded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

LinkStatus = Literal["connecting", "connected", "down"]
TransportName = Literal["sse", "streamable-http"]


class LinkState(BaseModel):
    """What the link is doing now; a new value is published on every change."""

    status: LinkStatus
    transport: TransportName
    url: str  # credentials redacted
    reason: str | None = None
    attempt: int = 0  # connection attempt since the link was last connected (1 = first try)
    latency_ms: float | None = None  # last ping round trip
    since: datetime  # when ``status`` last changed
    server_name: str | None = None
    tools: list[str] = []
