"""The gateway's live feed for the panel, ``qms-panel watch`` and the doctor: an SSE stream on a
loopback address or a unix socket, guarded by a token kept in a 0600 file.

``GET /events[?since=SEQ&run=RUN]`` with ``Authorization: Bearer <token>``: ``text/event-stream``,
each event ``event: <kind>``, ``id: <run>:<seq>``, ``data: <the event's JSON>``. The first event of
every connection is the gateway's current state; with ``since`` (and the run it counted in) the
buffered events after it follow, with a gap event first when some are gone (see
:meth:`core.gateway.hub.Hub.backlog`); ``since=0`` sends the whole buffer; the ``X-Feed-Head`` header (``RUN:SEQ``) names the last event
published when the reader came, where its backlog ends. A comment line every
``KEEPALIVE`` seconds lets a reader notice a dead gateway. ``GET /state``: the state as JSON.
A missing or wrong token: 401 with one line.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from core.errors import FeedDown, GatewayError
from core.gateway.hub import Hub

KEEPALIVE = 10.0


def read_token(path: Path) -> str:
    """The feed token in ``path``; :class:`FeedDown` when it is missing, not a private regular file,
    or empty."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        raise FeedDown(f"no feed token at {path} (`qms-panel gateway` creates it; is the gateway running "
                       "with the same state_dir / feed_token_file?)") from None
    except OSError as err:
        raise FeedDown(f"cannot read the feed token {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(st.st_mode):
        raise FeedDown(f"the feed token {path} is not a regular file")
    if st.st_mode & 0o077:
        raise FeedDown(f"the feed token {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                       "chmod 600 it")
    token = path.read_text(encoding="utf-8", errors="replace").strip()
    if not token:
        raise FeedDown(f"the feed token {path} is empty")
    return token


def ensure_token(path: Path) -> str:
    """The feed token in ``path``, made (32 random bytes, mode 0600, its folder 0700) when missing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    except OSError as err:
        raise GatewayError(f"cannot create the feed token {path}: {err.strerror or err}") from None
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    try:
        return read_token(path)
    except FeedDown as err:
        raise GatewayError(err.detail) from None


def _frame(kind: str, event_id: str, data: str) -> bytes:
    return f"event: {kind}\nid: {event_id}\ndata: {data}\n\n".encode()


def feed_app(hub: Hub, token: str) -> Starlette:
    """The feed's ASGI app (see the module docstring)."""

    def authorised(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

    def refused() -> Response:
        return PlainTextResponse("the feed token is missing or wrong\n", status_code=401)

    async def state(request: Request) -> Response:
        if not authorised(request):
            return refused()
        if hub.state is None:
            return PlainTextResponse("the gateway is starting\n", status_code=503)
        return Response(hub.state.model_dump_json(), media_type="application/json")

    async def events(request: Request) -> Response:
        if not authorised(request):
            return refused()
        since_text = request.query_params.get("since")
        run = request.query_params.get("run") or None
        try:
            since = int(since_text) if since_text is not None else None
        except ValueError:
            return PlainTextResponse("since must be a whole number\n", status_code=400)
        if since is not None and since < 0:
            return PlainTextResponse("since must not be negative\n", status_code=400)

        async def body():
            first = hub.state
            if first is not None:
                yield _frame(first.kind, f"{first.run}:{first.seq}", first.model_dump_json())
            async for event in hub.reader(since, run, keepalive=KEEPALIVE):
                if event is None:
                    yield b": keepalive\n\n"
                    continue
                yield _frame(event.kind, f"{event.run}:{event.seq}", event.model_dump_json())

        head = f"{hub.run}:{hub.seq}"  # the last event published as the reader came: its backlog ends there
        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", "X-Feed-Head": head})

    return Starlette(routes=[Route("/events", events), Route("/state", state)])
