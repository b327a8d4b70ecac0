"""The QMS MCP development server: ``FastMCP("qms")`` over SSE or streamable HTTP.

It serves the eight tools the panel uses with the real server's names, parameters and texts
(contract 1.5, 1.6; the file work is :mod:`core.devserver.store`), on the real paths (``GET /sse``
+ ``POST /messages/``, or ``/mcp`` with ``stateless_http=True``), behind the same DNS-rebinding
guard (1.3) and with the same identity rules (1.4): ``X-QMS-Identity`` / ``X-QMS-Instance`` are
read from the HTTP request of each call (with SSE, the POST to ``/messages/``).

The texts after the prefixes ``IDENTITY REQUIRED:`` / ``IDENTITY MISMATCH:`` (not in the code
the contract quotes) are written from the requirement text REQ-MCP-015.

This server is an independent oracle of the contract: it spells the QMS's file paths itself
(:mod:`core.devserver.store`) and shares none of the panel's (:mod:`core.qms_files`), so a wrong
path in the panel shows up as a test failure instead of agreeing with itself.

**Test hook** (never changes the tools): with ``QMS_DEVSERVER_FAULTS=<file>`` in its environment,
each call first looks for that JSON file, ``{"command": "checkin", "when": "before"|"after",
"stall_s": 3600}``. When it names the call's CLI command, the server consumes it (renames it to
``<file>.taken``), writes ``<file>.stalled`` and freezes for ``stall_s`` seconds, before or after
doing the work: a test can then kill it with the reply lost, or let it finish late.

The MCP SDK and uvicorn are imported inside :func:`build_server` and :func:`run` (about 2 s of
CPU): ``qms-panel`` imports every command module at start, and a bad root or a busy port should
fail at once.
"""

import asyncio
import errno
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from core.devserver.store import CliResult, QmsStore
from core.errors import DevServerError, PortInUse, ProjectError
from core.settings import project_root_problem

if TYPE_CHECKING:
    from mcp.server.fastmcp import FastMCP

Transport = Literal["sse", "streamable-http"]
TRANSPORTS: tuple[Transport, ...] = ("sse", "streamable-http")
DEFAULT_IDENTITY_TTL = 90.0
KNOWN_AGENTS = frozenset({"lead", "claude", "qa", "bu", "tu_ui", "tu_scene", "tu_sketch", "tu_sim"})
ALLOWED_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "host.docker.internal:*"]
ALLOWED_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*", "http://host.docker.internal:*"]
LOG_FORMAT = "%(asctime)s [%(name)s] %(levelname)s: %(message)s"
FAULTS_ENV = "QMS_DEVSERVER_FAULTS"

logger = logging.getLogger("qms-mcp")


class IdentityRefused(Exception):
    """A call refused by the identity rules; the tool fails with this message (isError=true)."""


# --- identity (contract 1.4) ------------------------------------------------------------------


@dataclass
class _Lock:
    instance_id: str
    last_seen: float


class IdentityLocks:
    """Enforced vs trusted mode, and the in-memory identity -> container instance locks."""

    def __init__(self, ttl: float = DEFAULT_IDENTITY_TTL) -> None:
        self.ttl = ttl
        self._locks: dict[str, _Lock] = {}

    def resolve(self, user: str, header_identity: str | None, header_instance: str = "") -> str:
        """The identity a call runs as, or :class:`IdentityRefused`.

        ``header_identity`` is ``X-QMS-Identity`` (None when absent: trusted mode).
        """
        if not user or not user.strip():
            raise IdentityRefused(
                "IDENTITY REQUIRED: the 'user' parameter is empty. Every QMS tool call must name "
                "your QMS identity, e.g. user='claude'.")
        now = time.monotonic()
        for identity in [i for i, lock in self._locks.items() if now - lock.last_seen > self.ttl]:
            logger.info(f"Cleanup: expired identity lock for '{identity}'")
            del self._locks[identity]
        if header_identity:
            if header_identity not in KNOWN_AGENTS:
                logger.warning(f"Unknown agent identity in header: {header_identity}")
            if user != header_identity:
                raise IdentityRefused(
                    f"IDENTITY MISMATCH: Your authenticated identity is '{header_identity}' but you called "
                    f"with user='{user}'. Use user='{header_identity}' for every QMS call. Acting as another "
                    f"user is impersonation, a QMS violation.")
            self._register(header_identity, header_instance, now)
            return header_identity
        lock = self._locks.get(user)
        if lock is not None:
            raise IdentityRefused(
                f"IDENTITY LOCKED: '{user}' is active in enforced mode (container instance "
                f"{lock.instance_id[:8]}). Trusted-mode request rejected. This identity is exclusively held "
                f"by a running container. Do not attempt to troubleshoot -- the container is the "
                f"authoritative holder of this identity.")
        return user

    def _register(self, identity: str, instance_id: str, now: float) -> None:
        lock = self._locks.get(identity)
        if lock is not None and lock.instance_id != instance_id:
            raise IdentityRefused(
                f"IDENTITY LOCKED: '{identity}' is already registered to container instance "
                f"{lock.instance_id[:8]}. This container instance ({instance_id[:8]}) cannot claim the same "
                f"identity. This indicates a duplicate container. Do not attempt to troubleshoot -- stop "
                f"one of the duplicate containers.")
        if lock is None:
            logger.info(f"Identity '{identity}' registered (instance {instance_id[:8]})")
            self._locks[identity] = _Lock(instance_id, now)
        else:
            lock.last_seen = now


def _identity_headers(ctx) -> tuple[str | None, str]:
    """``X-QMS-Identity`` (None if absent) and ``X-QMS-Instance`` of the HTTP request behind a call."""
    try:
        request = ctx.request_context.request
    except (AttributeError, LookupError, ValueError):
        request = None
    headers = getattr(request, "headers", None)
    if headers is None:
        return None, ""
    return headers.get("x-qms-identity") or None, headers.get("x-qms-instance", "")


def stall_if_asked(command: str, when: str) -> None:
    """The test hook (see the module docstring): freeze here if the faults file asks for it."""
    path = os.environ.get(FAULTS_ENV)
    if not path:
        return
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(spec, dict) or spec.get("command") != command or spec.get("when") != when:
        return
    try:
        os.replace(path, f"{path}.taken")  # a fault applies once
    except OSError:
        return
    logger.warning(f"Test hook: stalling {command} {when} the work for {spec.get('stall_s', 3600)} s")
    Path(f"{path}.stalled").write_text(when, encoding="utf-8")
    time.sleep(float(spec.get("stall_s", 3600)))


# --- the server -------------------------------------------------------------------------------


def check_project_root(project_root: Path) -> Path:
    """The resolved root, or ProjectError when it is not a folder holding ``QMS/``."""
    root = Path(project_root).expanduser()
    problem = project_root_problem(root)
    if problem:
        raise ProjectError(f"project root {problem}")
    return root.resolve()


def build_server(project_root: Path, host: str = "127.0.0.1", port: int = 8000,
                 identity_ttl: float = DEFAULT_IDENTITY_TTL, stateful: bool = False) -> "FastMCP":
    """The FastMCP app serving ``project_root``; ``.sse_app()`` or ``.streamable_http_app()`` runs it.
    Streamable HTTP is stateless as the real server runs it; ``stateful`` gives MCP sessions
    (``Mcp-Session-Id``) as a server built on the SDK's defaults does."""
    store = QmsStore(check_project_root(project_root))
    from mcp.server.fastmcp import Context, FastMCP
    from mcp.server.fastmcp.exceptions import ToolError
    from mcp.server.transport_security import TransportSecuritySettings

    locks = IdentityLocks(identity_ttl)
    mcp = FastMCP(
        "qms", host=host, port=port, stateless_http=not stateful,
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=ALLOWED_HOSTS, allowed_origins=ALLOWED_ORIGINS),
    )

    def call(ctx: Context, user: str, args: list[str], command: Callable[[str], CliResult]) -> str:
        try:
            resolved = locks.resolve(user, *_identity_headers(ctx))
        except IdentityRefused as refusal:
            logger.warning(f"Tool refused: user={user}, args={args}: {str(refusal).split(':')[0]}")
            raise ToolError(str(refusal)) from None
        logger.info(f"Tool invocation: user={resolved}, args={args}")
        stall_if_asked(args[0], "before")
        result = command(resolved)
        stall_if_asked(args[0], "after")
        logger.info(f"Tool result: {args[0]} success={result.ok}")
        return result.text

    @mcp.tool()
    def qms_inbox(ctx: Context, user: str) -> str:
        """Check the QMS inbox for pending tasks assigned to a user (reviews, approvals)."""
        return call(ctx, user, ["inbox"], store.inbox)

    @mcp.tool()
    def qms_workspace(ctx: Context, user: str) -> str:
        """List documents currently checked out to a user's workspace."""
        return call(ctx, user, ["workspace"], store.workspace)

    @mcp.tool()
    def qms_status(ctx: Context, doc_id: str, user: str) -> str:
        """Get the current status of a QMS document: state, version, owner, workflow status."""
        return call(ctx, user, ["status", doc_id], lambda u: store.status(doc_id, u))

    @mcp.tool()
    def qms_read(ctx: Context, doc_id: str, user: str, version: str = "", draft: bool = False) -> str:
        """Read a QMS document: the effective version (else the draft), a given archived version, or the draft."""
        args = ["read", doc_id] + (["--version", version] if version else []) + (["--draft"] if draft else [])
        return call(ctx, user, args, lambda u: store.read(doc_id, u, version=version, draft=draft))

    @mcp.tool()
    def qms_history(ctx: Context, doc_id: str, user: str) -> str:
        """View the audit trail of a QMS document, oldest event first."""
        return call(ctx, user, ["history", doc_id], lambda u: store.history(doc_id, u))

    @mcp.tool()
    def qms_create(ctx: Context, doc_type: str, title: str, user: str, parent: str = "", name: str = "") -> str:
        """Create a new QMS document (v0.1 draft, checked out to the creator).

        parent: parent document id for child types (VAR, TP); name: name for TEMPLATE documents.
        """
        args = ["create", doc_type, "--title", title] + (["--parent", parent] if parent else []) \
            + (["--name", name] if name else [])
        return call(ctx, user, args, lambda u: store.create(doc_type, title, u, parent=parent, name=name))

    @mcp.tool()
    def qms_checkout(ctx: Context, doc_id: str, user: str) -> str:
        """Check out a QMS document for editing: locks it and copies it to the user's workspace."""
        return call(ctx, user, ["checkout", doc_id], lambda u: store.checkout(doc_id, u))

    @mcp.tool()
    def qms_checkin(ctx: Context, doc_id: str, user: str) -> str:
        """Check in a QMS document after editing: the workspace copy becomes the draft and is removed."""
        return call(ctx, user, ["checkin", doc_id], lambda u: store.checkin(doc_id, u))

    return mcp


def connect_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def server_url(host: str, port: int, transport: Transport) -> str:
    address = connect_host(host)
    address = f"[{address}]" if ":" in address else address
    return f"http://{address}:{port}{'/sse' if transport == 'sse' else '/mcp'}"


def configure_logging() -> None:
    """Log lines on stderr as the real server writes them: ``YYYY-MM-DD HH:MM:SS [qms-mcp] LEVEL: msg``."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S",
                        stream=sys.stderr, force=True)
    logging.getLogger("mcp").setLevel(logging.WARNING)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"{host}:{port} is already in use (another server running?)") from None
        raise DevServerError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def run(project_root: Path, host: str = "127.0.0.1", port: int = 8000, transport: Transport = "sse",
        identity_ttl: float = DEFAULT_IDENTITY_TTL, announce: Callable[[str], None] | None = None,
        stateful: bool = False) -> None:
    """Serve until Ctrl-C or SIGTERM. ``announce(url)`` is called once the server accepts connections.

    Raises ProjectError (bad root), PortInUse, or DevServerError, before loading the MCP SDK.
    """
    if transport not in TRANSPORTS:
        raise DevServerError(f"unknown transport {transport!r} (use sse or streamable-http)")
    root = check_project_root(project_root)
    sock = _bind(host, port)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal: make both a KeyboardInterrupt.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        import uvicorn

        configure_logging()
        mcp = build_server(root, host, port, identity_ttl, stateful=stateful)
        app = mcp.sse_app() if transport == "sse" else mcp.streamable_http_app()
        url = server_url(host, sock.getsockname()[1], transport)
        logger.info(f"Starting QMS MCP dev server (transport={transport}, project={root})")

        async def serve() -> None:
            server = uvicorn.Server(uvicorn.Config(app, log_config=None, timeout_graceful_shutdown=1))
            serving = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started and not serving.done():
                await asyncio.sleep(0.02)
            if server.started and announce is not None:
                announce(url)
            await serving

        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()


# --- the server as a child process (the demo and the tests) ------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, SIGTERM it when the process that started it dies, however
    that one ends (a SIGKILL or a closed terminal leaves no server or gateway behind)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class DevServerProcess:
    """``python -m core.devserver`` as a child process; ``start()`` returns once it listens."""

    def __init__(self, project_root: Path, transport: Transport = "sse", host: str = "127.0.0.1",
                 port: int | None = None, identity_ttl: float | None = None, log_path: Path | None = None,
                 stateful: bool = False) -> None:
        self.project_root = Path(project_root)
        self.stateful = stateful
        self.transport = transport
        self.host = host
        self.port = port or free_port(connect_host(host))
        self.identity_ttl = identity_ttl
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return server_url(self.host, self.port, self.transport)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "core.devserver", "--project-root", str(self.project_root.resolve()),
               "--host", self.host, "--port", str(self.port), "--transport", self.transport]
        if self.identity_ttl is not None:
            cmd += ["--identity-ttl", str(self.identity_ttl)]
        if self.stateful:
            cmd += ["--stateful"]
        return cmd

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait for its "listening" line (DevServerError if it exits or times out)."""
        if self.process is not None and self.process.poll() is None:
            return
        log: IO[bytes] | int = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=log, start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            if not isinstance(log, int):
                log.close()
        lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=lambda out: lines.put(out.readline()), args=(self.process.stdout,),
                         daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise DevServerError(f"the dev server did not listen on port {self.port} within {timeout:g} s"
                                 f"{self._log_hint()}") from None
        if not line:
            code = self.process.wait()
            raise DevServerError(f"the dev server exited with code {code}{self._log_hint()}")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``) and wait for it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

    def restart(self, timeout: float = 30.0) -> None:
        """Stop and start again on the same port (in-memory identity locks are gone)."""
        self.stop()
        self.start(timeout)

    def log_text(self) -> str:
        """What the server wrote on stderr so far ("" without a log file)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path else ""
        except OSError:
            return ""

    def _log_hint(self) -> str:
        lines = self.log_text().strip().splitlines()
        return f": {lines[-1]}" if lines else ""
