"""The MCP link: one long-lived SDK session to the QMS MCP server, kept alive.

:meth:`McpLink.run` owns the session: it opens the transport (SSE for ``/sse``, streamable
HTTP for ``/mcp``) and the ``ClientSession`` in its own task and closes them there (python-sdk
issues #79, #922, #915), initializes, lists the tools, pings every ``ping_interval`` seconds
and keeps the round-trip latency. When the connection is lost it publishes ``down`` with the
reason and reconnects with jittered exponential backoff. It never raises; cancelling it
stops it.

:meth:`McpLink.call_tool` may be called from any task of the same event loop: the SDK
allocates request ids synchronously and its write stream is an anyio memory stream, so
requests from other tasks go through the live session safely. A call that is in flight when
the session ends fails with :class:`~core.errors.LinkDown`.

Every message crosses a recording wrapper between the transport and the session, and an
httpx transport under it records the SSE events; both feed the :class:`~core.mcp_stream.McpStream`.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError as SdkMcpError
from mcp.shared.message import SessionMessage
from mcp.types import CONNECTION_CLOSED
from pydantic import BaseModel

from core.errors import CallTimeout, LinkDown, McpError, ReplyLost, ServerReplyError
from core.link_state import LinkState, TransportName  # the link's state (re-exported: its old home)
from core.mcp_stream import McpStream, redact_text, redact_url
from core.settings import transport_from_url

_HTTP_HINTS = {
    404: "wrong path or transport? /sse is SSE, /mcp is streamable HTTP",
    405: "wrong path or transport? /sse is SSE, /mcp is streamable HTTP",
    406: "the request lacked Accept: application/json, text/event-stream",
    421: "Invalid Host header: the server's allowed hosts lack this host name",
}


class ToolResult(BaseModel):
    text: str
    is_error: bool
    structured: Any = None


class _ConnectionLost(Exception):
    """The transport ended under the session (its reason is in the message)."""


# --- describing failures -----------------------------------------------------------------


def _cancelled_class() -> type[BaseException]:
    try:
        return anyio.get_cancelled_exc_class()
    except RuntimeError:  # no event loop: describing an error after the fact
        return asyncio.CancelledError


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _connect_failure(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host name ({cause.strerror or cause})"
        if isinstance(cause, OSError) and cause.errno is not None:
            return f"cannot connect ({cause.strerror or cause})"
        cause = cause.__cause__ or cause.__context__
    return f"cannot connect ({exc})"


def describe_error(exc: BaseException) -> str:
    """One plain line for a transport or session failure (credentials redacted)."""
    cancelled = _cancelled_class()
    leaves = [e for e in _leaves(exc) if not isinstance(e, cancelled)] or [exc]
    leaf = leaves[0]
    if isinstance(leaf, httpx.ConnectError):
        return _connect_failure(leaf)
    if isinstance(leaf, httpx.ConnectTimeout):
        return "connect timed out"
    if isinstance(leaf, httpx.HTTPStatusError):
        resp = leaf.response
        hint = _HTTP_HINTS.get(resp.status_code)
        line = f"HTTP {resp.status_code} {resp.reason_phrase} from {resp.request.method} {urlsplit(str(resp.url)).path}"
        return redact_text(f"{line} ({hint})" if hint else line)
    if isinstance(leaf, (httpx.RemoteProtocolError, httpx.ReadError)):
        return "the server closed the connection"
    if isinstance(leaf, httpx.TimeoutException):
        return f"timed out ({type(leaf).__name__})"
    if isinstance(leaf, SdkMcpError):
        if leaf.error.code == CONNECTION_CLOSED:
            return "the server closed the connection"
        return redact_text(f"MCP error {leaf.error.code}: {leaf.error.message}")
    if isinstance(leaf, (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream)):
        return "the transport closed"
    if isinstance(leaf, (_ConnectionLost, TimeoutError)) and str(leaf):
        return str(leaf)
    text = str(leaf)
    return redact_text(f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__)


# --- recording and noticing a dropped connection ------------------------------------------------


class _SseTap(httpx.AsyncByteStream):
    """Passes a response body through unchanged while recording the SSE events in it.

    For the SSE body of a streamable-HTTP POST (``on_dropped`` set), a body that fails or ends
    before it carried a JSON-RPC response calls ``on_dropped(reason)``. The SDK's streamable HTTP
    client swallows that error (``_handle_sse_response`` logs it at debug level and, with no event
    id to resume from, returns): the request would wait for the whole call timeout. SSE notices
    at once because its one GET stream ending closes the session.
    """

    def __init__(self, inner: httpx.AsyncByteStream, stream: McpStream,
                 on_dropped: Callable[[str], None] | None = None) -> None:
        self._inner = inner
        self._stream = stream
        self._on_dropped = on_dropped
        self._answered = False
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                self._feed(chunk)
                yield chunk
        except Exception as exc:
            self._dropped(describe_error(exc))
            raise
        self._dropped("the server closed the connection before it answered")

    def _dropped(self, reason: str) -> None:
        if self._on_dropped is not None and not self._answered:
            self._on_dropped(reason)

    def _feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if not line:
                if self._data or self._event:
                    data = "\n".join(self._data)
                    if data or self._event == "endpoint":
                        self._stream.record_sse(self._event or "message", data)
                        self._answered = self._answered or _is_response(data)
                self._event, self._data = "", []
            elif line.startswith(":"):
                continue  # comment / keep-alive
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    self._event = value
                elif name == "data":
                    self._data.append(value)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _TapTransport(httpx.AsyncBaseTransport):
    """The httpx transport under the SDK client: records SSE and HTTP errors; with ``on_dropped``
    (streamable HTTP), a request's reply stream that drops before its response reports it."""

    def __init__(self, stream: McpStream, on_dropped: Callable[[str], None] | None = None) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._stream = stream
        self._on_dropped = on_dropped

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if response.status_code >= 400:
            self._stream.record_http_error(request.method, str(request.url), response.status_code,
                                           httpx.codes.get_reason_phrase(response.status_code))
        elif response.headers.get("content-type", "").startswith("text/event-stream"):
            watch = self._on_dropped if request.method == "POST" and _request_id(request) is not None else None
            response.stream = _SseTap(response.stream, self._stream, watch)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _request_id(request: httpx.Request) -> Any:
    try:
        body = json.loads(request.content)
    except (ValueError, httpx.RequestNotRead):
        return None
    return body.get("id") if isinstance(body, dict) else None


def _is_response(data: str) -> bool:
    """An SSE ``data`` that is a JSON-RPC response (a result or an error), not a notification."""
    try:
        message = json.loads(data)
    except ValueError:
        return False
    return isinstance(message, dict) and "id" in message and ("result" in message or "error" in message)


class _RecordingReceive(ObjectReceiveStream[Any]):
    """The session's read stream: records each message; notices the transport ending."""

    def __init__(self, inner: ObjectReceiveStream[Any], link: McpLink) -> None:
        self._inner = inner
        self._link = link

    async def receive(self) -> Any:
        try:
            item = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._link._lost("the server closed the connection")
            raise
        if isinstance(item, Exception):
            reason = describe_error(item)
            self._link.stream.record_transport_error(reason)
            self._link._lost(reason)
        else:
            self._link.stream.record_message("in", item.message.model_dump(by_alias=True, mode="json",
                                                                           exclude_none=True))
        return item

    async def aclose(self) -> None:
        await self._inner.aclose()


class _RecordingSend(ObjectSendStream[SessionMessage]):
    """The session's write stream: records each message."""

    def __init__(self, inner: ObjectSendStream[SessionMessage], link: McpLink) -> None:
        self._inner = inner
        self._link = link

    async def send(self, item: SessionMessage) -> None:
        self._link.stream.record_message("out", item.message.model_dump(by_alias=True, mode="json",
                                                                        exclude_none=True))
        await self._inner.send(item)

    async def aclose(self) -> None:
        await self._inner.aclose()


# --- the link ----------------------------------------------------------------------------


class McpLink:
    """A long-lived MCP session with ping, reconnect, published state and a recorded stream."""

    def __init__(
        self,
        url: str,
        *,
        transport: TransportName | None = None,
        headers: dict[str, str] | None = None,
        ping_interval: float = 5.0,
        stream: McpStream | None = None,
        backoff: tuple[float, float] = (0.5, 15.0),
        connect_timeout: float = 10.0,
        ping_timeout: float = 10.0,
        call_timeout: float = 60.0,
    ) -> None:
        self.url = url
        self.transport: TransportName = transport or transport_from_url(url)
        self.headers = dict(headers or {})
        self.ping_interval = ping_interval
        self.stream = stream if stream is not None else McpStream()
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.ping_timeout = ping_timeout
        self.call_timeout = call_timeout
        self._state = LinkState(status="connecting", transport=self.transport, url=redact_url(url),
                                since=datetime.now(timezone.utc))
        self._state_subs: list[tuple[deque[LinkState], list[anyio.Event]]] = []
        self._session: ClientSession | None = None
        self._session_closed: anyio.Event | None = None
        self._lost_event: anyio.Event | None = None
        self._lost_reason: str | None = None

    # --- state -----------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._session is not None and self._state.status == "connected"

    def _set_state(self, **changes: Any) -> None:
        if "status" in changes and changes["status"] != self._state.status:
            changes.setdefault("since", datetime.now(timezone.utc))
        self._state = self._state.model_copy(update=changes)
        for queue, wake in self._state_subs:
            queue.append(self._state)
            wake[0].set()

    async def states(self) -> AsyncIterator[LinkState]:
        """The current state, then every change (a slow reader skips the oldest of 64 queued)."""
        queue: deque[LinkState] = deque(maxlen=64)
        wake = [anyio.Event()]
        entry = (queue, wake)
        self._state_subs.append(entry)
        try:
            yield self._state
            while True:
                while queue:
                    yield queue.popleft()
                wake[0] = anyio.Event()
                await wake[0].wait()
        finally:
            self._state_subs.remove(entry)

    async def wait_connected(self, timeout: float, *, fail_on_down: bool = False) -> LinkState:
        """Wait until connected; raise LinkDown after ``timeout`` (or at the first ``down``)."""
        with anyio.move_on_after(timeout):
            async with aclosing(self.states()) as states:
                async for state in states:
                    if state.status == "connected":
                        return state
                    if fail_on_down and state.status == "down":
                        raise LinkDown(f"{self._state.url}: {state.reason}")
        raise LinkDown(f"{self._state.url}: not connected after {timeout:g} s"
                       + (f" (last reason: {self._state.reason})" if self._state.reason else ""))

    # --- the session's task ----------------------------------------------------------

    async def run(self) -> None:
        """Keep the session alive until cancelled. Never raises anything but cancellation.

        ``attempt`` counts the tries since the link was last connected: ``down`` with attempt 0
        means the connection was just lost; the next ``connecting`` is attempt 1.
        """
        attempt = 0
        try:
            while True:
                attempt += 1
                self._set_state(status="connecting", attempt=attempt, latency_ms=None)
                reason = "the session ended"
                try:
                    await self._session_once()
                except Exception as exc:  # noqa: BLE001 - every failure becomes a published reason
                    reason = describe_error(exc)
                if self._state.status == "connected":
                    attempt = 0
                self._set_state(status="down", reason=reason, attempt=attempt, latency_ms=None)
                await anyio.sleep(self._delay(max(attempt, 1)))
        finally:
            self._session = None
            if self._state.status != "down":
                self._set_state(status="down", reason="link stopped", latency_ms=None)

    def _delay(self, attempt: int) -> float:
        low, high = self.backoff
        base = min(high, low * 2 ** (attempt - 1))
        return random.uniform(base / 2, base)

    def _lost(self, reason: str) -> None:
        if self._lost_event is not None and not self._lost_event.is_set():
            self._lost_reason = reason
            self._lost_event.set()

    async def _session_once(self) -> None:
        self._lost_event = anyio.Event()
        self._lost_reason = None
        closed = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                scope.deadline = anyio.current_time() + self.connect_timeout
                async with AsyncExitStack() as stack:
                    read, write = await stack.enter_async_context(self._open_transport())
                    session = await stack.enter_async_context(
                        ClientSession(_RecordingReceive(read, self), _RecordingSend(write, self)))
                    init = await session.initialize()
                    tools = await session.list_tools()
                    latency = await self._ping(session)
                    scope.deadline = math.inf
                    self._session, self._session_closed = session, closed
                    self._set_state(status="connected", reason=None, latency_ms=latency,
                                    server_name=init.serverInfo.name, tools=[t.name for t in tools.tools])
                    await self._keep_alive(session)
            if scope.cancelled_caught:
                raise TimeoutError(f"no MCP handshake within {self.connect_timeout:g} s")
        finally:
            self._session, self._session_closed = None, None
            closed.set()

    async def _keep_alive(self, session: ClientSession) -> None:
        lost = self._lost_event
        assert lost is not None
        while True:
            with anyio.move_on_after(self.ping_interval):
                await lost.wait()
            if lost.is_set():
                raise _ConnectionLost(self._lost_reason or "the server closed the connection")
            self._set_state(latency_ms=await self._ping(session))

    async def _ping(self, session: ClientSession) -> float:
        started = time.perf_counter()
        try:
            with anyio.fail_after(self.ping_timeout):
                await session.send_ping()
        except TimeoutError:
            raise _ConnectionLost(f"no answer to ping within {self.ping_timeout:g} s") from None
        return (time.perf_counter() - started) * 1000.0

    def _http_client(self, headers: dict[str, str] | None = None, timeout: httpx.Timeout | None = None,
                     auth: httpx.Auth | None = None) -> httpx.AsyncClient:
        on_dropped = self._lost if self.transport == "streamable-http" else None
        return httpx.AsyncClient(transport=_TapTransport(self.stream, on_dropped), headers=headers,
                                 timeout=timeout or httpx.Timeout(30.0, read=300.0), auth=auth)

    @asynccontextmanager
    async def _open_transport(self) -> AsyncIterator[tuple[Any, Any]]:
        if self.transport == "sse":
            async with sse_client(self.url, headers=self.headers or None, timeout=self.connect_timeout,
                                  httpx_client_factory=self._http_client) as (read, write):
                yield read, write
        else:
            client = self._http_client(headers=self.headers or None,
                                       timeout=httpx.Timeout(self.connect_timeout, read=300.0))
            async with client, streamable_http_client(self.url, http_client=client) as (read, write, _):
                yield read, write

    # --- calls from any task ---------------------------------------------------------

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None, *,
                        timeout: float | None = None) -> ToolResult:
        """Call a tool through the live session, waiting at most ``timeout`` (else ``call_timeout``).

        LinkDown when not connected (nothing was sent); once sent, ReplyLost when the connection
        closes before the reply and CallTimeout when none comes in time (the server may still act).
        """
        session, closed = self._session, self._session_closed
        if session is None or closed is None or self._state.status != "connected":
            raise LinkDown(f"{self._state.url}: {self._state.reason or self._state.status}")
        limit = timeout if timeout is not None else self.call_timeout
        result = None
        try:
            async with anyio.create_task_group() as tg:
                async def watch() -> None:
                    await closed.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                try:
                    result = await session.call_tool(name, arguments or {},
                                                     read_timeout_seconds=timedelta(seconds=limit))
                finally:
                    tg.cancel_scope.cancel()
        except Exception as exc:  # noqa: BLE001 - translated at the edge
            raise self._call_error(name, limit, exc) from None
        if result is None:
            raise ReplyLost(f"{self._state.url}: the connection closed during {name}"
                           + (f" ({self._lost_reason})" if self._lost_reason else ""))
        text = "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")
        return ToolResult(text=text, is_error=bool(result.isError), structured=result.structuredContent)

    def _call_error(self, name: str, limit: float, exc: Exception) -> McpError:
        cancelled = _cancelled_class()
        leaf = next((e for e in _leaves(exc) if not isinstance(e, cancelled)), exc)
        if isinstance(leaf, SdkMcpError) and leaf.error.code == httpx.codes.REQUEST_TIMEOUT:
            return CallTimeout(f"{name}: no reply within {limit:g} s")
        if isinstance(leaf, SdkMcpError) and leaf.error.code != CONNECTION_CLOSED:
            return ServerReplyError(redact_text(f"{name}: {leaf.error.message}"))
        if isinstance(leaf, (SdkMcpError, anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream)):
            return ReplyLost(f"{self._state.url}: the connection closed during {name}")
        return McpError(f"{name}: {describe_error(leaf)}")


@asynccontextmanager
async def open_link(url: str, *, transport: TransportName | None = None, headers: dict[str, str] | None = None,
                    timeout: float = 10.0, call_timeout: float = 60.0,
                    stream: McpStream | None = None) -> AsyncIterator[McpLink]:
    """A link for a short job: connected on entry (else LinkDown at the first failure), stopped on exit."""
    link = McpLink(url, transport=transport, headers=headers, stream=stream, connect_timeout=timeout,
                   call_timeout=call_timeout, ping_interval=60.0)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(link.run)
            try:
                await link.wait_connected(timeout + 1.0, fail_on_down=True)
                yield link
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the task group wraps what the caller's block raised
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise
