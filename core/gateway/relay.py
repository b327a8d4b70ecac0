"""One agent session through the gateway: the agent's messages to the server and back, with the
identity rule applied and every message tapped.

The agent side hands over the SDK's server-transport streams (``SessionMessage`` in, out); the
relay opens an :class:`core.gateway.upstream.Upstream` on the first message and again after the
server went away, so an agent session outlives a server restart. Identity: a ``tools/call`` whose
``user`` argument is not the container's agent never reaches the server; the agent gets a tool
result with ``isError`` and a text in the contract's style (``IDENTITY MISMATCH: ...``), as the
real server answers its own identity errors, so an agent reads it like any refused call. A
request the server does not answer within ``call_timeout`` is answered with a JSON-RPC error, and
a late reply is dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from mcp import types
from mcp.shared.message import SessionMessage

from core.gateway import tap
from core.gateway.events import AgentTransport, McpEvent, Outcome, Who
from core.gateway.upstream import Upstream, UpstreamDown, down_error

if TYPE_CHECKING:
    from core.gateway.service import Gateway


@dataclass
class _Pending:
    t0: float
    facts: dict[str, Any]
    timer: anyio.CancelScope = field(default_factory=anyio.CancelScope)


def identity_refusal(request_id: types.RequestId, who: Who, user: str) -> types.JSONRPCMessage:
    text = (f"IDENTITY MISMATCH: this container ({who.container}) is agent '{who.agent}' but called with "
            f"user='{user}'. The qms-panel gateway refused the call; it did not reach the QMS server. "
            f"Call as user='{who.agent}'.")
    result = types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)
    return types.JSONRPCMessage(types.JSONRPCResponse(
        jsonrpc="2.0", id=request_id, result=result.model_dump(by_alias=True, mode="json", exclude_none=True)))


class Relay:
    """See the module docstring."""

    def __init__(self, gateway: Gateway, who: Who, transport: AgentTransport, session: str) -> None:
        self.gateway = gateway
        self.who = who
        self.transport = transport
        self.session = session
        self.pending: dict[Any, _Pending] = {}
        self.upstream: Upstream | None = None

    def _event(self, direction: str, message: types.JSONRPCMessage, **facts: Any) -> None:
        size = len(message.model_dump_json(by_alias=True, exclude_none=True))
        self.gateway.hub.publish(McpEvent(time=self.gateway.now(), who=self.who, transport=self.transport,
                                          session=self.session, direction=direction, size=size, **facts))

    async def run(self, agent_read: Any, agent_write: Any) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._agent_write = agent_write
            try:
                async for item in agent_read:
                    if isinstance(item, SessionMessage):
                        await self._from_agent(item.message)
            finally:
                tg.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    if self.upstream is not None:
                        await self.upstream.close()

    # --- agent -> server ---------------------------------------------------------------------

    async def _from_agent(self, message: types.JSONRPCMessage) -> None:
        root = message.root
        request = root if isinstance(root, types.JSONRPCRequest) else None
        facts = tap.request_facts(request) if request is not None else {"method": getattr(root, "method", None)}
        rpc_id = str(request.id) if request is not None else None
        self._event("in", message, rpc_id=rpc_id, **facts)
        if request is not None and self.who.agent is not None:
            user = tap.call_user(request)
            if user is not None and user != self.who.agent:
                self.gateway.identity_refused(self.who, user)
                await self._answer(identity_refusal(request.id, self.who, user), facts, rpc_id, time.perf_counter(),
                                   outcome="identity",
                                   reason=f"called as user={user!r} from agent {self.who.agent}'s container")
                return
        if request is not None:
            pending = _Pending(t0=time.perf_counter(), facts=facts)
            self.pending[request.id] = pending
            self._tg.start_soon(self._deadline, request.id, pending)
        upstream = await self._upstream(first=message)
        if upstream is None:
            return
        await upstream.send(message)

    async def _upstream(self, first: types.JSONRPCMessage) -> Upstream | None:
        if self.upstream is not None and not self.upstream.down:
            return self.upstream
        root = first.root
        is_init = isinstance(root, types.JSONRPCRequest) and root.method == "initialize"
        upstream = self.gateway.new_upstream(self.who)
        try:
            await upstream.start(self._tg, initialize=not is_init, known=self.gateway.stateless_upstream)
        except UpstreamDown as err:
            self.gateway.upstream_changed(False, str(err))
            if isinstance(root, types.JSONRPCRequest):
                await self._reply(down_error(root.id, upstream.url, str(err)))
            return None
        if not upstream.unasked:  # it answered the handshake (a server not asked has not yet said)
            self.gateway.upstream_changed(True)
        self.upstream = upstream
        self._tg.start_soon(self._pump, upstream)
        return upstream

    async def _deadline(self, request_id: Any, pending: _Pending) -> None:
        with pending.timer:  # cancelled when the reply comes
            await anyio.sleep(self.gateway.call_timeout)
        if not pending.timer.cancel_called and self.pending.get(request_id) is pending:
            reason = f"no answer within {self.gateway.call_timeout:g} s"
            self.gateway.upstream_changed(False, f"the server did not answer a call within "
                                                 f"{self.gateway.call_timeout:g} s")
            await self._reply(down_error(request_id, self.gateway.upstream_url, reason))

    # --- server -> agent ---------------------------------------------------------------------

    async def _pump(self, upstream: Upstream) -> None:
        async for message in upstream.incoming:
            await self._reply(message)
        if upstream is self.upstream and not upstream.down:
            upstream.down = True
        for request_id in list(self.pending):  # the server went away with these unanswered
            await self._reply(down_error(request_id, upstream.url, "the connection to the server closed"))
        if upstream.down:
            self.gateway.upstream_changed(False, "the connection to the server closed")

    async def _reply(self, message: types.JSONRPCMessage) -> None:
        root = message.root
        if isinstance(root, (types.JSONRPCResponse, types.JSONRPCError)):
            pending = self.pending.pop(root.id, None)
            if pending is None:
                return  # answered already (timed out, or the server went away): a late reply is dropped
            pending.timer.cancel()
            outcome, summary = tap.result_facts(root)
            if isinstance(root, types.JSONRPCError) and root.error.code == -32001:
                outcome = "upstream-down"
            if self.upstream is not None and self.upstream.unasked:  # its first answer says how the server is
                self.gateway.upstream_changed(outcome != "upstream-down", summary)
            await self._answer(message, pending.facts, str(root.id), pending.t0, outcome=outcome, result=summary,
                               reason=summary if outcome != "ok" else "")
            return
        self._event("out", message, method=getattr(root, "method", None))
        await self._send_agent(message)

    async def _answer(self, message: types.JSONRPCMessage, facts: dict[str, Any], rpc_id: str | None, t0: float,
                      *, outcome: Outcome, result: str = "", reason: str = "") -> None:
        if outcome == "identity" and not result:
            outcome_text = tap.result_facts(message.root)[1]
            result = outcome_text
        latency = (time.perf_counter() - t0) * 1000
        self._event("out", message, rpc_id=rpc_id, latency_ms=round(latency, 2), outcome=outcome,
                    result=result, reason=reason, **facts)
        self.gateway.call_done(outcome)
        await self._send_agent(message)

    async def _send_agent(self, message: types.JSONRPCMessage) -> None:
        try:
            await self._agent_write.send(SessionMessage(message))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the agent went away; its session ends with its read stream
