"""The gateway's telemetry receiver: OTLP/HTTP logs and metrics (``POST /v1/logs``, ``/v1/metrics``) and
Claude Code's HTTP hooks (``POST /hooks``, or ``/hooks/<anything>``), on their own port in the
gateway's process (setting ``telemetry_listen``; by default the gateway's address, port 4318).

Who sent it is decided as for MCP: by the peer address, through the gateway's
:class:`core.gateway.identity.PeerResolver`; a refused peer gets 403 and one line, and what a
payload claims (resource attributes, a ``user`` field) never changes it. Each accepted record
becomes an :class:`ActivityEvent` on the gateway's hub (the live feed).

Bad input never stops the receiver: a body over :data:`MAX_BODY` is refused with 413 before it is
read whole (a gzip body also after inflating), a content type that is not OTLP with 415, an
undecodable body with 400; records of unknown events are ignored. Each kind is counted in
:attr:`Receiver.counts`, and the counts of refusals go out with the gateway's state.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from core.gateway.events import ActivityEvent, Who
from core.telemetry.hooks import decode_hook
from core.telemetry.otlp import BadPayload, Decoded, decode_logs, decode_metrics

if TYPE_CHECKING:
    from core.gateway.service import Gateway

MAX_BODY = 4 * 1024 * 1024  # bytes, compressed or not
COUNTED = ("accepted", "ignored", "refused_peer", "too_large", "bad_type", "bad_body", "not_found")


class _TooLarge(Exception):
    pass


class Receiver:
    """The ASGI app; see the module docstring."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.prompts = gateway.settings.telemetry_prompts
        self.counts = dict.fromkeys(COUNTED, 0)

    def _count(self, what: str, n: int = 1) -> None:
        self.counts[what] += n
        if what != "accepted":
            self.gateway.telemetry_counts_changed(self.counts)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/")
        if scope["method"] != "POST" or not (path in ("/v1/logs", "/v1/metrics", "/hooks") or path.startswith("/hooks/")):
            self._count("not_found")
            await _reply(send, 404, b"not found: POST /v1/logs, /v1/metrics or /hooks\n", "text/plain")
            return
        peer = (scope.get("client") or ("?", 0))[0]
        resolution = await self.gateway.resolver.resolve(peer)
        if resolution.refused:
            self._count("refused_peer")
            await _reply(send, 403, (resolution.refused.replace("\n", " ")[:300] + "\n").encode(), "text/plain")
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            body = await _read(receive, headers)
        except _TooLarge:
            self._count("too_large")
            await _reply(send, 413, f"body over {MAX_BODY} bytes\n".encode(), "text/plain")
            return
        except BadPayload as err:
            self._count("bad_body")
            await _reply(send, 400, f"{err}\n".encode(), "text/plain")
            return
        kind = headers.get("content-type", "")
        try:
            if path == "/v1/logs":
                decoded, source = decode_logs(body, kind, prompts=self.prompts), "otlp-log"
            elif path == "/v1/metrics":
                decoded, source = decode_metrics(body, kind), "otlp-metric"
            else:
                item = decode_hook(body, prompts=self.prompts)
                decoded, source = Decoded(items=[item] if item else [], unknown=0 if item else 1), "hook"
        except BadPayload as err:
            is_type = "content type" in str(err)
            self._count("bad_type" if is_type else "bad_body")
            await _reply(send, 415 if is_type else 400, f"{err}\n".encode(), "text/plain")
            return
        self._publish(resolution.who, source, decoded)
        # OTLP/HTTP's success reply: an empty Export*ServiceResponse (JSON {} is one too); a hook reads {}
        if kind.startswith("application/x-protobuf") and source != "hook":
            await _reply(send, 200, b"", "application/x-protobuf")
        else:
            await _reply(send, 200, b"{}", "application/json")

    def _publish(self, who: Who, source: str, decoded: Decoded) -> None:
        now = self.gateway.now()
        for item in decoded.items:
            self.gateway.hub.publish(ActivityEvent(time=now, who=who, source=source, name=item.name,  # type: ignore[arg-type]
                                                   attributes=item.attributes, value=item.value, summary=item.summary))
        if decoded.items:
            self._count("accepted", len(decoded.items))
        if decoded.unknown or decoded.dropped:
            self._count("ignored", decoded.unknown + decoded.dropped)


async def _read(receive: Callable, headers: dict[str, str]) -> bytes:
    """The body, refused past :data:`MAX_BODY` without reading the rest; gzip inflated within it."""
    try:
        if int(headers.get("content-length", "0") or 0) > MAX_BODY:
            raise _TooLarge
    except ValueError:
        raise BadPayload("the Content-Length is not a number") from None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflate.decompress(body, MAX_BODY + 1)
        except zlib.error:
            raise BadPayload("the gzip body does not inflate") from None
        if len(body) > MAX_BODY or inflate.unconsumed_tail:
            raise _TooLarge
    elif encoding not in ("identity", ""):
        raise BadPayload(f"content encoding {encoding[:40]!r} is not gzip")
    return body


async def _reply(send: Callable, status: int, body: bytes, kind: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
