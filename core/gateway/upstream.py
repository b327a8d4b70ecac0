"""The gateway's side towards the real QMS MCP server: one upstream session per agent session.

Streamable HTTP upstream: each message is one POST on a shared httpx client (TCP_NODELAY), its
reply read as JSON or as an SSE-framed body with httpx-sse; the ``Mcp-Session-Id`` the server
gives on ``initialize`` is sent on every later POST of this session and the session is ended with
DELETE. SSE upstream: the MCP SDK's ``sse_client``, run in a task of its own (its cancel scope
stays in one task). Either way the messages the server sends come out of :attr:`incoming`.

A POST that fails (refused, reset, an HTTP error) becomes a JSON-RPC error reply to that request,
so the agent is answered at once; an SSE upstream that drops ends :attr:`incoming`, and the relay
answers what was pending. When the agent did not initialize (a bare ``tools/call``, as wget or a
stateless client sends it) and the server needs a session, :meth:`Upstream.start` initializes it
on the agent's behalf.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import anyio
import httpx
from httpx_sse import EventSource
from mcp import types
from mcp.shared.message import SessionMessage

from core.mcp_stream import redact_url

UPSTREAM_DOWN = -32001  # JSON-RPC error code of "the QMS MCP server is unreachable"
SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
_INIT_ID = "qms-panel-gateway-init"


class UpstreamDown(Exception):
    """The server cannot be reached (the reason is the message)."""


class _Refused(UpstreamDown):
    """A bare call without a session was refused by a server thought to be stateless."""


def http_client(timeout: float) -> httpx.AsyncClient:
    """An httpx client for the upstream: no proxies from the environment, no delayed small writes."""
    transport = httpx.AsyncHTTPTransport(socket_options=SOCKET_OPTIONS, retries=0)
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(timeout), trust_env=False)


def sdk_client_factory(headers: dict[str, Any] | None = None, timeout: httpx.Timeout | None = None,
                       auth: httpx.Auth | None = None) -> httpx.AsyncClient:
    """The SDK's ``httpx_client_factory`` with TCP_NODELAY (the SDK's own factory has none)."""
    transport = httpx.AsyncHTTPTransport(socket_options=SOCKET_OPTIONS, retries=0)
    return httpx.AsyncClient(transport=transport, headers=headers, timeout=timeout, auth=auth, trust_env=False,
                             follow_redirects=False)


def down_error(request_id: types.RequestId, url: str, reason: str) -> types.JSONRPCMessage:
    return types.JSONRPCMessage(types.JSONRPCError(
        jsonrpc="2.0", id=request_id,
        error=types.ErrorData(code=UPSTREAM_DOWN, message=f"the QMS MCP server is unreachable "
                              f"({redact_url(url)}): {reason}")))


def describe(err: BaseException) -> str:
    if isinstance(err, httpx.ConnectError):
        return "connection refused or no route"
    if isinstance(err, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(err, httpx.HTTPStatusError):
        return f"HTTP {err.response.status_code}"
    if isinstance(err, (httpx.RemoteProtocolError, httpx.ReadError)):
        return "the connection closed mid-reply"
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]


def _init_request() -> types.JSONRPCMessage:
    return types.JSONRPCMessage(types.JSONRPCRequest(
        jsonrpc="2.0", id=_INIT_ID, method="initialize",
        params={"protocolVersion": types.LATEST_PROTOCOL_VERSION, "capabilities": {},
                "clientInfo": {"name": "qms-panel-gateway", "version": "1"}}))


def _initialized() -> types.JSONRPCMessage:
    return types.JSONRPCMessage(types.JSONRPCNotification(jsonrpc="2.0", method="notifications/initialized"))


class Stateless:
    """What the gateway learned of a streamable-HTTP server: whether it gives sessions at all.

    A bare call (a wget agent's POST with no session) needs a session upstream only when the server
    gives one. When an ``initialize`` on an agent's behalf came back with no ``Mcp-Session-Id``, the
    server is stateless and the next bare calls skip the handshake (one POST a call instead of
    three); a bare call that such a server refuses (HTTP 400 or 404: it restarted stateful) forgets
    it, and that call is tried once more with a handshake."""

    def __init__(self) -> None:
        self.protocol_version: str | None = None

    def learn(self, session_id: str | None, protocol_version: str | None) -> None:
        self.protocol_version = protocol_version if session_id is None else None

    def forget(self) -> None:
        self.protocol_version = None


class Upstream:
    """One upstream session; see the module docstring. ``client`` is the gateway's shared httpx
    client (streamable HTTP)."""

    def __init__(self, url: str, transport: str, headers: dict[str, str], *, client: httpx.AsyncClient,
                 connect_timeout: float) -> None:
        self.url = url
        self.transport = transport
        self.headers = headers
        self.client = client
        self.connect_timeout = connect_timeout
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self._send, self.incoming = anyio.create_memory_object_stream[types.JSONRPCMessage](1000)
        self._sse_write: Any = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._known: Stateless | None = None  # set when started without a handshake (a stateless server)
        self.down = False

    @property
    def unasked(self) -> bool:
        """Started without a handshake: whether the server is up is known from the first answer."""
        return self._known is not None

    # --- life --------------------------------------------------------------------------------

    async def start(self, tg: anyio.abc.TaskGroup, *, initialize: bool, known: Stateless | None = None) -> None:
        """Connect (SSE) and, with ``initialize``, initialize the session on the agent's behalf.
        A streamable-HTTP server already seen to need no session (``known`` holds what it said) is
        not asked again: its bare calls go straight to it (see :class:`Stateless`).
        Raises :class:`UpstreamDown`."""
        self._tg = tg
        if self.transport == "sse":
            await self._start_sse(tg)
        if initialize and self.transport != "sse" and known is not None and known.protocol_version:
            self.protocol_version, self._known = known.protocol_version, known
            return
        if initialize:
            await self._handshake()
            if self.transport != "sse" and known is not None:
                known.learn(self.session_id, self.protocol_version)

    async def close(self) -> None:
        self.down = True
        if self._sse_write is not None:
            await self._sse_write.aclose()
        if self.transport != "sse" and self.session_id:
            with anyio.move_on_after(2), anyio.CancelScope(shield=True):
                try:
                    await self.client.delete(self.url, headers=self._headers())
                except httpx.HTTPError:
                    pass
        self._send.close()

    async def _start_sse(self, tg: anyio.abc.TaskGroup) -> None:
        from mcp.client.sse import sse_client

        ready = anyio.Event()
        failure: list[BaseException] = []

        async def run() -> None:
            try:
                async with sse_client(self.url, headers=self.headers, timeout=self.connect_timeout,
                                      sse_read_timeout=24 * 3600, httpx_client_factory=sdk_client_factory) as (read, write):
                    self._sse_write = write
                    ready.set()
                    async for item in read:
                        if isinstance(item, SessionMessage):
                            await self._send.send(item.message)
            except BaseException as err:  # noqa: BLE001 - the reason goes to whoever waits; the relay sees the end
                failure.append(err)
                if isinstance(err, anyio.get_cancelled_exc_class()):
                    raise
            finally:
                self.down = True
                ready.set()
                self._send.close()

        tg.start_soon(run)
        with anyio.move_on_after(self.connect_timeout + 1):
            await ready.wait()
        if self._sse_write is None or self.down:
            reason = describe(_root_cause(failure[0])) if failure else "no answer in time"
            raise UpstreamDown(reason)

    async def _handshake(self) -> None:
        reply = await self._exchange(_init_request())
        if reply is None or isinstance(reply.root, types.JSONRPCError):
            why = reply.root.error.message if reply is not None else "no reply to initialize"
            raise UpstreamDown(f"initialize failed: {why}")
        result = reply.root.result if isinstance(reply.root, types.JSONRPCResponse) else {}
        self.protocol_version = (result or {}).get("protocolVersion")
        await self.send(_initialized())

    async def _exchange(self, message: types.JSONRPCMessage) -> types.JSONRPCMessage | None:
        """Send a request of the gateway's own and wait for its reply (the handshake only)."""
        if self.transport == "sse":
            await self._sse_write.send(SessionMessage(message))
            with anyio.fail_after(self.connect_timeout):
                async for reply in self.incoming:
                    if isinstance(reply.root, (types.JSONRPCResponse, types.JSONRPCError)) and reply.root.id == _INIT_ID:
                        return reply
            return None
        replies = await self._post(message, initializing=True)
        return next((r for r in replies if getattr(r.root, "id", None) == _INIT_ID), None)

    # --- messages ----------------------------------------------------------------------------

    async def send(self, message: types.JSONRPCMessage) -> None:
        """Forward one message of the agent's. Never raises for the server's failure: a request
        that cannot be delivered is answered with :func:`down_error` on :attr:`incoming`."""
        if self.transport == "sse":
            try:
                await self._sse_write.send(SessionMessage(message))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self.down = True
                self._answer_down(message, "the connection to the server closed")
            return
        assert self._tg is not None
        self._tg.start_soon(self._post_and_deliver, message)

    def _answer_down(self, message: types.JSONRPCMessage, reason: str) -> None:
        if isinstance(message.root, types.JSONRPCRequest):
            try:
                self._send.send_nowait(down_error(message.root.id, self.url, reason))
            except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass

    async def _post_and_deliver(self, message: types.JSONRPCMessage) -> None:
        try:
            try:
                replies = await self._post(message)
            except _Refused:
                if self._known is None:
                    raise
                self._known.forget()  # the server wants a session now: handshake, then this call again
                self._known = None
                await self._handshake()
                replies = await self._post(message)
        except UpstreamDown as err:
            self._answer_down(message, str(err))
            return
        for reply in replies:
            try:
                await self._send.send(reply)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return

    def _headers(self) -> dict[str, str]:
        headers = {**self.headers, "Accept": "application/json, text/event-stream",
                   "Content-Type": "application/json"}
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        if self.protocol_version:
            headers["Mcp-Protocol-Version"] = self.protocol_version
        return headers

    async def _post(self, message: types.JSONRPCMessage, *, initializing: bool = False) -> list[types.JSONRPCMessage]:
        body = message.model_dump_json(by_alias=True, exclude_none=True)
        try:
            async with self.client.stream("POST", self.url, content=body, headers=self._headers()) as response:
                if response.status_code == 202:
                    return []
                if response.status_code >= 400:
                    await response.aread()
                    reason = f"HTTP {response.status_code} {_first_line(response.text)}"
                    if response.status_code in (400, 404) and self._known is not None:
                        raise _Refused(reason)
                    raise UpstreamDown(reason)
                if initializing and response.headers.get("mcp-session-id"):
                    self.session_id = response.headers["mcp-session-id"]
                kind = response.headers.get("content-type", "").lower()
                if kind.startswith("application/json"):
                    return _parse_many(await response.aread())
                if kind.startswith("text/event-stream"):
                    replies = []
                    async for sse in EventSource(response).aiter_sse():
                        if sse.event == "message" and sse.data:
                            replies.extend(_parse_many(sse.data.encode()))
                            if _answers(replies, message):
                                break
                    return replies
                raise UpstreamDown(f"unexpected content type {kind or 'none'!r}")
        except httpx.HTTPError as err:
            raise UpstreamDown(describe(err)) from None


def _answers(replies: list[types.JSONRPCMessage], message: types.JSONRPCMessage) -> bool:
    request_id = getattr(message.root, "id", None)
    return any(isinstance(r.root, (types.JSONRPCResponse, types.JSONRPCError)) and r.root.id == request_id
               for r in replies)


def _parse_many(raw: bytes) -> list[types.JSONRPCMessage]:
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise UpstreamDown(f"the server's reply is not JSON ({err})") from None
    items = data if isinstance(data, list) else [data]
    try:
        return [types.JSONRPCMessage.model_validate(item) for item in items]
    except ValueError as err:
        raise UpstreamDown(f"the server's reply is not JSON-RPC ({_first_line(str(err))})") from None


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]


def _root_cause(err: BaseException) -> BaseException:
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    return err
