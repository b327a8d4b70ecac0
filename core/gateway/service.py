"""``qms-panel gateway``: where agent containers reach the QMS MCP server.

Agents are served both transports, as the real server serves them: SSE (``GET /sse`` and its
``POST /messages/?session_id=...``) and streamable HTTP (``/mcp``). Both sides are the MCP SDK's
own transports (``SseServerTransport``, ``StreamableHTTPSessionManager``); the gateway relays their
``SessionMessage``s (:mod:`core.gateway.relay`) and never parses the protocol by hand.

Every HTTP request is checked against its peer address first (:mod:`core.gateway.identity`): a
refused peer gets 403 and one line. An SSE ``POST /messages/`` and a streamable request carrying an
``Mcp-Session-Id`` must come from the container that opened that session.

Streamable HTTP: a client that initializes gets a session of its own (``Mcp-Session-Id``, one
upstream session); a bare POST with no session that is not ``initialize`` (the real server is
stateless, and wget or curl clients rely on it) is relayed on its own, as one exchange.

The feed (:mod:`core.gateway.feed`) and any extra ASGI app (:meth:`Gateway.add_app`, e.g. the
telemetry receiver) are served by the same process, each on its own address. Sockets are bound
before serving, so a port in use is one clear error and port 0 works (tests).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import uvicorn

from core.containers import ContainerManager
from core.errors import GatewayError
from core.gateway.events import GatewayState, PeerEvent, Who
from core.gateway.feed import ensure_token, feed_app
from core.gateway.hub import Hub
from core.gateway.identity import PeerResolver
from core.gateway.relay import Relay
from core.gateway.upstream import Stateless, Upstream, http_client
from core.mcp_stream import redact_url
from core.settings import Settings, parse_listen, transport_from_url

_WHO: contextvars.ContextVar[Who] = contextvars.ContextVar("gateway_who")
_SESSION_RE = re.compile(rb"session_id=([0-9a-fA-F-]+)")
CONNECT_TIMEOUT = 5.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway's caller owns the process's signals."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def bind(listen: str) -> socket.socket:
    """A bound, listening socket for ``HOST:PORT`` or ``unix:/path``; :class:`GatewayError` in one line."""
    try:
        if listen.startswith("unix:"):
            path = Path(listen[5:])
            if path.is_socket():
                path.unlink()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(path))
            path.chmod(0o600)
        else:
            host, port = parse_listen(listen)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        sock.listen(512)
        sock.setblocking(False)
        return sock
    except OSError as err:
        raise GatewayError(f"cannot listen on {listen}: {err.strerror or err}") from None


def address_of(sock: socket.socket) -> str:
    name = sock.getsockname()
    if isinstance(name, str):
        return f"unix:{name}"
    host, port = name[0], name[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _RelayApp:
    """What the SDK's session manager runs per session: the relay, for the peer of the request that
    opened the session (the request's context carries it)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def create_initialization_options(self) -> None:
        return None

    async def run(self, read_stream: Any, write_stream: Any, _options: Any, stateless: bool = False, **_: Any) -> None:
        who = _WHO.get()
        session = "-" if stateless else self.gateway.new_session_name()
        await self.gateway.relay(who, "streamable-http", session, read_stream, write_stream, announce=not stateless)


class Gateway:
    """See the module docstring."""

    def __init__(self, settings: Settings, *, containers: ContainerManager, hub: Hub | None = None,
                 now: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.containers = containers
        self.hub = hub or Hub(now=now)
        self.now = now
        self.resolver = PeerResolver(containers, allow_host=settings.gateway_allow_host)
        self.upstream_url = settings.upstream_url
        self.upstream_transport = transport_from_url(settings.upstream_url)
        self.call_timeout = settings.call_timeout.total_seconds()
        self.listen = ""  # set when bound
        self.feed_listen = ""
        self.extra_listen: dict[str, str] = {}
        self._apps: list[tuple[str, str, Any]] = []  # (name, listen, asgi app)
        self._live: dict[str, int] = {}  # agent -> live sessions
        self._upstream_state: tuple[str, str] = ("unknown", "")
        self._sse_owner: dict[str, str] = {}  # SSE session id -> owner key
        self._mcp_owner: dict[str, str] = {}  # Mcp-Session-Id -> owner key
        self._sessions = 0
        self._client = http_client(self.call_timeout)
        self.stateless_upstream = Stateless()  # bare calls skip the handshake once the server showed it gives no session
        self.started = now()
        self.calls = {"ok": 0, "refused": 0, "identity": 0, "error": 0, "upstream-down": 0}
        self._telemetry_counts: dict[str, int] = {}
        self.ready = anyio.Event()

    # --- what the relay and the agent side call ------------------------------------------------

    def add_app(self, name: str, listen: str, app: Any) -> None:
        """Serve ``app`` on ``listen`` in this process too (before :meth:`run`). ``listen`` may be a
        bare ``:PORT``: the agents' address, that port (the telemetry receiver's default)."""
        self._apps.append((name, listen, app))

    def telemetry_counts_changed(self, counts: dict[str, int]) -> None:
        """The telemetry receiver refused or ignored something: its counts go out with the state."""
        self._telemetry_counts = {k: v for k, v in counts.items() if k != "accepted" and v}
        self.publish_state()

    def new_session_name(self) -> str:
        self._sessions += 1
        return f"s{self._sessions}"

    def new_upstream(self, who: Who) -> Upstream:
        headers = {}
        if who.agent is not None:  # a container of this project: the identity of the upstream contract
            headers = {"X-QMS-Identity": who.agent, "X-QMS-Instance": who.container or ""}
        return Upstream(self.upstream_url, self.upstream_transport, headers, client=self._client,
                        connect_timeout=min(CONNECT_TIMEOUT, self.call_timeout))

    def upstream_changed(self, up: bool, reason: str = "") -> None:
        state = ("up", "") if up else ("down", reason)
        if state != self._upstream_state:
            self._upstream_state = state
            self.publish_state()

    def call_done(self, outcome: str) -> None:
        self.calls[outcome] = self.calls.get(outcome, 0) + 1

    def identity_refused(self, who: Who, user: str) -> None:
        """A call as another agent was refused (the relay answers it; this records the peer's side)."""
        self.hub.publish(PeerEvent(time=self.now(), who=who, state="refused",
                                   reason=f"called as user={user!r} from agent {who.agent}'s container"))

    def publish_state(self) -> None:
        up, reason = self._upstream_state
        self.hub.set_state(GatewayState(
            time=self.now(), listen=self.listen, upstream=redact_url(self.upstream_url), upstream_state=up,
            upstream_reason=reason, agents=sorted(a for a, n in self._live.items() if n > 0), started=self.started,
            telemetry_listen=self.extra_listen.get("telemetry", ""), telemetry_counts=dict(self._telemetry_counts)))

    async def relay(self, who: Who, transport: str, session: str, read_stream: Any, write_stream: Any,
                    *, announce: bool = True) -> None:
        key = who.agent or f"host {who.peer}"
        if announce:
            self._live[key] = self._live.get(key, 0) + 1
            self.hub.publish(PeerEvent(time=self.now(), who=who, state="connected", transport=transport))
            self.publish_state()
        try:
            await Relay(self, who, transport, session).run(read_stream, write_stream)
        finally:
            if announce:
                self._live[key] -= 1
                self.hub.publish(PeerEvent(time=self.now(), who=who, state="disconnected", transport=transport))
                self.publish_state()

    # --- the agent side (ASGI) -----------------------------------------------------------------

    async def _agents_app(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        peer = (scope.get("client") or ("?", 0))[0]
        resolution = await self.resolver.resolve(peer)
        if resolution.refused:
            self.hub.publish(PeerEvent(time=self.now(), who=resolution.who, state="refused",
                                       reason=resolution.refused))
            await _text(send, 403, resolution.refused)
            return
        who = resolution.who
        owner = who.container_id or f"host:{who.peer}"
        path = scope["path"].rstrip("/") or "/"
        if path == "/sse" and scope["method"] == "GET":
            await self._sse_stream(scope, receive, send, who, owner)
        elif path == "/messages" and scope["method"] == "POST":
            session = _query_session(scope)
            if session is None or self._sse_owner.get(session) != owner:
                await _text(send, 404 if session not in self._sse_owner else 403,
                            "no such SSE session for this peer" if session not in self._sse_owner
                            else "that SSE session belongs to another peer")
                return
            await self._sse.handle_post_message(scope, receive, send)
        elif path == "/mcp":
            await self._streamable(scope, receive, send, who, owner)
        else:
            await _text(send, 404, f"not found: {scope['path'][:100]} (agents use /sse or /mcp)")

    async def _sse_stream(self, scope: dict, receive: Callable, send: Callable, who: Who, owner: str) -> None:
        found: list[str] = []

        async def sniff(message: dict) -> None:
            if not found and message.get("type") == "http.response.body":
                match = _SESSION_RE.search(message.get("body", b""))
                if match:
                    found.append(match.group(1).decode())
                    self._sse_owner[found[0]] = owner
            await send(message)

        try:
            async with self._sse.connect_sse(scope, receive, sniff) as (read_stream, write_stream):
                session = (found[0][:8] if found else self.new_session_name())
                await self.relay(who, "sse", session, read_stream, write_stream)
        finally:
            if found:
                self._sse_owner.pop(found[0], None)

    async def _streamable(self, scope: dict, receive: Callable, send: Callable, who: Who, owner: str) -> None:
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope.get("headers", [])}
        session = headers.get("mcp-session-id")
        if session is not None:
            if self._mcp_owner.get(session, owner) != owner:
                await _text(send, 403, "that MCP session belongs to another peer")
                return
            manager = self._stateful
        elif scope["method"] == "POST":
            body, receive = await _buffered(receive)
            manager = self._stateful if _is_initialize(body) else self._stateless
        else:
            manager = self._stateful

        async def note_session(message: dict) -> None:
            if message.get("type") == "http.response.start":
                for key, value in message.get("headers", []):
                    if key.lower() == b"mcp-session-id":
                        self._mcp_owner[value.decode()] = owner
            await send(message)

        token = _WHO.set(who)
        try:
            await manager.handle_request(scope, receive, note_session)
        finally:
            _WHO.reset(token)
            if scope["method"] == "DELETE" and session is not None:
                self._mcp_owner.pop(session, None)

    # --- running -------------------------------------------------------------------------------

    def _default_listen(self) -> str:
        if self.settings.gateway_listen:
            return self.settings.gateway_listen
        return f"{self.containers.bridge_gateway()}:8000"

    async def run(self, *, on_ready: Callable[[Gateway], None] | None = None) -> None:
        """Serve until cancelled. Raises :class:`GatewayError` when an address cannot be bound."""
        from mcp.server.sse import SseServerTransport
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        listen = self.settings.gateway_listen or await anyio.to_thread.run_sync(self._default_listen)
        agents_sock = bind(listen)
        token = ensure_token(self.settings.feed_token_path())
        sockets = [("agents", agents_sock, self._agents_app), ("feed", bind(self.settings.feed_listen), None)]
        for name, app_listen, app in self._apps:
            if app_listen.startswith(":"):  # the agents' address, that port
                app_listen = f"{address_of(agents_sock).rsplit(':', 1)[0]}{app_listen}"
            sockets.append((name, bind(app_listen), app))
        self.listen = address_of(agents_sock)
        self.feed_listen = address_of(sockets[1][1])
        self.extra_listen = {name: address_of(sock) for name, sock, _ in sockets[2:]}
        sockets[1] = ("feed", sockets[1][1], feed_app(self.hub, token))
        self._sse = SseServerTransport("/messages/")
        self._stateful = StreamableHTTPSessionManager(app=_RelayApp(self))  # type: ignore[arg-type]
        self._stateless = StreamableHTTPSessionManager(app=_RelayApp(self), stateless=True)  # type: ignore[arg-type]
        servers = [_Server(uvicorn.Config(app, log_level="error", lifespan="off", interface="asgi3", access_log=False,
                                          timeout_graceful_shutdown=1, timeout_keep_alive=30))
                   for _, _, app in sockets]
        self.publish_state()
        try:
            async with self._stateful.run(), self._stateless.run(), anyio.create_task_group() as tg:
                for server, (_, sock, _) in zip(servers, sockets):
                    tg.start_soon(server.serve, [sock])
                tg.start_soon(self._follow_engine)
                self.ready.set()
                if on_ready is not None:
                    on_ready(self)
                try:
                    await anyio.sleep_forever()
                finally:
                    for server in servers:
                        server.should_exit = True
        finally:
            for _, sock, _ in sockets:
                sock.close()
            with anyio.CancelScope(shield=True):
                await self._client.aclose()

    async def _follow_engine(self) -> None:
        """Drop the resolver's cache on every engine event (start, die, destroy...)."""
        from core.engine_events import EngineEvents

        async for _event in EngineEvents(self.containers).stream():
            self.resolver.invalidate()


async def _text(send: Callable, status: int, text: str) -> None:
    body = (text.replace("\n", " ")[:300] + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _query_session(scope: dict) -> str | None:
    match = _SESSION_RE.search(scope.get("query_string", b""))
    return match.group(1).decode() if match else None


async def _buffered(receive: Callable) -> tuple[bytes, Callable]:
    """The request body read whole, and a ``receive`` that hands it out again."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _is_initialize(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    items = data if isinstance(data, list) else [data]
    return any(isinstance(item, dict) and item.get("method") == "initialize" for item in items)
