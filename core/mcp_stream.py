"""The MCP stream: every message on the link, as typed events in a bounded buffer.

The link records each JSON-RPC message in both directions (between the transport and the
SDK session) and the SSE events under it (``endpoint``, ``message``). Events go into a ring
buffer (:class:`McpStream`, default 5,000) and to live subscribers, each with its own
bounded queue: a slow subscriber loses its oldest events (counted in ``dropped``), it never
blocks the link or grows memory.

Credentials never reach an event: URLs lose ``user:pass@`` and secret query values, and no
header is ever recorded (:func:`redact_url`, :func:`redact_text`, :func:`redact_headers`).
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict, deque
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
from pydantic import BaseModel

Direction = Literal["out", "in"]
EventKind = Literal[
    "request", "response", "notification", "error",  # JSON-RPC messages
    "sse-endpoint", "sse-message",  # SSE events under them
    "http-error",  # a non-2xx HTTP answer
    "transport-error",  # the transport handed up an exception instead of a message
]

REDACTED = "***"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie"})
_SECRET_PARAM = re.compile(r"(token|secret|passw(or)?d|pwd|api[-_]?key|apikey|auth|signature|sig|credential|key)",
                           re.IGNORECASE)
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")
_QUERY_SECRET = re.compile(  # a secret-looking name=value in a query (?a=b&c=d) or a fragment (#a=b)
    r"(?P<name>[?&#](?:[^=&#\s'\"]*(?:token|secret|passw(?:or)?d|pwd|key|auth|signature|sig|credential)"
    r"[^=&#\s'\"]*))=(?P<value>[^&\s'\"#]+)",
    re.IGNORECASE,
)
_URL_FRAGMENT = re.compile(r"(?P<url>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"#]*)#[^\s'\"]+")
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_HINT = re.compile(r"@|=|#|bearer|basic", re.IGNORECASE)
_SUMMARY_MAX = 160


def redact_url(url: str) -> str:
    """``url`` without ``user:pass@``, with secret-looking query values replaced and no fragment.

    A fragment never reaches the server, so it has no use in an MCP URL; it can only hold a
    secret someone pasted (``#access_token=...``): it is replaced as a whole."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, REDACTED if parts.fragment else ""))


def redact_text(text: str) -> str:
    """``text`` with credentials in embedded URLs (user info, secret query values, fragments) and
    auth schemes replaced."""
    if not _HINT.search(text):
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m['name']}={REDACTED}", text)
    text = _URL_FRAGMENT.sub(lambda m: f"{m['url']}#{REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def redact_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """A copy of ``headers`` with credential values replaced."""
    return {k: (REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in (headers or {}).items()}


def _redact_deep(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_deep(v) for v in value]
    return value


class StreamEvent(BaseModel):
    """One recorded message or SSE event."""

    seq: int
    time: datetime
    direction: Direction
    kind: EventKind
    method: str | None = None
    id: int | str | None = None
    latency_ms: float | None = None
    size: int = 0
    summary: str
    payload: Any = None


class Subscription:
    """A live reader of new events: ``async for event in sub``; ``dropped`` counts losses."""

    def __init__(self, stream: McpStream, maxlen: int) -> None:
        self._stream = stream
        self._queue: deque[StreamEvent] = deque()
        self._maxlen = maxlen
        self._wake = anyio.Event()
        self._closed = False
        self.dropped = 0

    def _push(self, event: StreamEvent) -> None:
        if len(self._queue) >= self._maxlen:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(event)
        self._wake.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StreamEvent:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._wake = anyio.Event()
            await self._wake.wait()
        return self._queue.popleft()

    def close(self) -> None:
        self._closed = True
        self._stream._subscribers.discard(self)
        self._wake.set()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class McpStream:
    """The bounded buffer of :class:`StreamEvent` and its subscribers."""

    def __init__(self, maxlen: int = 5000, *, subscriber_maxlen: int = 1000, pending_max: int = 1000) -> None:
        self.maxlen = maxlen
        self._events: deque[StreamEvent] = deque(maxlen=maxlen)
        self._subscribers: set[Subscription] = set()
        self._subscriber_maxlen = subscriber_maxlen
        self._pending: OrderedDict[tuple[str, Any], tuple[float, str | None]] = OrderedDict()
        self._pending_max = pending_max
        self._seq = 0
        self.total = 0

    # --- reading ---------------------------------------------------------------------

    def snapshot(self) -> list[StreamEvent]:
        return list(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def subscribe(self, maxlen: int | None = None) -> Subscription:
        """New events from now on; the subscriber's queue holds at most ``maxlen``."""
        sub = Subscription(self, maxlen or self._subscriber_maxlen)
        self._subscribers.add(sub)
        return sub

    def clear(self) -> None:
        self._events.clear()

    # --- recording -------------------------------------------------------------------

    def record_message(self, direction: Direction, data: dict[str, Any]) -> StreamEvent:
        """Record a JSON-RPC message (``data`` is its JSON object)."""
        now = time.perf_counter()
        method = data.get("method")
        msg_id = data.get("id")
        latency = None
        if method is not None and msg_id is not None:
            kind: EventKind = "request"
            self._pending[(direction, msg_id)] = (now, method)
            if len(self._pending) > self._pending_max:
                self._pending.popitem(last=False)
        elif method is not None:
            kind = "notification"
        else:
            kind = "error" if "error" in data else "response"
            other = "in" if direction == "out" else "out"
            started = self._pending.pop((other, msg_id), None)
            if started is not None:
                latency = (now - started[0]) * 1000.0
                method = started[1]
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
        payload = _redact_deep(data) if _HINT.search(text) else data
        return self._publish(direction, kind, method=method, id=msg_id, latency_ms=latency, size=len(text.encode()),
                             summary=_summary(kind, method, msg_id, payload, latency), payload=payload)

    def record_sse(self, event: str, data: str) -> StreamEvent:
        """Record an SSE event read from the server."""
        data = redact_text(data)
        if event == "endpoint":
            return self._publish("in", "sse-endpoint", size=len(data.encode()), summary=f"endpoint {data}",
                                 payload=data)
        size = len(data.encode())
        return self._publish("in", "sse-message", size=size, summary=f"event: {event or 'message'} ({size} bytes)",
                             payload=data)

    def record_http_error(self, method: str, url: str, status: int, reason: str) -> StreamEvent:
        url = redact_url(url)
        return self._publish("in", "http-error", method=method, size=0,
                             summary=f"{method} {urlsplit(url).path or '/'} -> {status} {reason}".strip(),
                             payload={"method": method, "url": url, "status": status, "reason": reason})

    def record_transport_error(self, error: str) -> StreamEvent:
        error = redact_text(error)
        return self._publish("in", "transport-error", size=0, summary=_clip(error), payload=error)

    def _publish(self, direction: Direction, kind: EventKind, **fields: Any) -> StreamEvent:
        self._seq += 1
        self.total += 1
        event = StreamEvent(seq=self._seq, time=datetime.now(timezone.utc), direction=direction, kind=kind, **fields)
        self._events.append(event)
        for sub in self._subscribers:
            sub._push(event)
        return event


def _clip(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _SUMMARY_MAX else line[: _SUMMARY_MAX - 1] + "…"


def _summary(kind: str, method: str | None, msg_id: Any, data: dict[str, Any], latency: float | None) -> str:
    ident = f"#{msg_id} " if msg_id is not None else ""
    if kind == "request":
        params = data.get("params") or {}
        if method == "tools/call":
            args = ", ".join(f"{k}={v!r}" for k, v in (params.get("arguments") or {}).items())
            return _clip(f"{ident}tools/call {params.get('name')}({args})")
        return _clip(f"{ident}{method}")
    if kind == "notification":
        return _clip(f"{method}")
    took = f" ({latency:.1f} ms)" if latency is not None else ""
    if kind == "error":
        err = data.get("error") or {}
        return _clip(f"{ident}{method or ''} error {err.get('code')}: {err.get('message')}{took}")
    result = data.get("result") or {}
    if isinstance(result, dict) and isinstance(result.get("content"), list):
        texts = [c.get("text", "") for c in result["content"] if isinstance(c, dict)]
        flag = " isError" if result.get("isError") else ""
        return _clip(f"{ident}{method or 'result'}{flag}{took}: {' '.join(texts)}")
    if isinstance(result, dict) and isinstance(result.get("tools"), list):
        return _clip(f"{ident}{method or 'result'}{took}: {len(result['tools'])} tools")
    if isinstance(result, dict) and "serverInfo" in result:
        info = result["serverInfo"] or {}
        return _clip(f"{ident}{method or 'result'}{took}: {info.get('name')} {info.get('version', '')}")
    return _clip(f"{ident}{method or 'result'} ok{took}")
