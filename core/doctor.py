"""The reachability doctor: can the MCP server be reached from the host and from each agent?

Host check: a TCP connect, then the transport's handshake (the SSE ``endpoint`` event, or a
streamable-HTTP ``initialize`` POST), with latency. Container check: ``docker exec`` (only
through :meth:`ContainerManager.exec`) of a probe program (:mod:`core.probes`) for whatever the
container has, python3, node, curl or wget in that order; each prints one ``QMSPROBE`` line
with the outcome, the HTTP status and its own latency measurement. The URL, which may carry
credentials, reaches the probe on its standard input: the engine records an exec's argv in
``docker events`` and its environment in the exec's inspect, but never its input. The checks
of all containers run at once (a bounded number at a time) beside the host check.

Every failure gets one plain sentence: connection refused; the server listening only on
127.0.0.1, which containers cannot reach through Linux's host-gateway (seen in
``/proc/net/tcp``, or inferred when the host passes and a container is refused); a transport
mismatch (``/sse`` answers 404/405 while ``/mcp`` answers, or the reverse); 421 "Invalid
Host header"; 406; timeout; an unresolvable name.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import threading
import time
from contextlib import contextmanager
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import anyio
from pydantic import BaseModel

from core import probes
from core.errors import EngineError, QmsPanelError
from core.lazy_import import lazy_module
from core.mcp_stream import redact_text, redact_url
from core.settings import transport_from_url

if TYPE_CHECKING:
    from core.containers import ContainerManager, ContainerRow
    from core.settings import Settings

httpx = lazy_module("httpx")  # imported on first use: the panel draws its probe cells before it loads

TransportName = Literal["sse", "streamable-http"]
Stage = Literal["tcp", "handshake"]
Failure = Literal["refused", "timeout", "resolve", "unreachable", "http", "no-endpoint", "bad-reply", "probe"]

PROBE_TOOLS = ("python3", "node", "curl", "wget")
EXEC_GRACE = 5.0  # seconds an exec may take beyond the probe's own timeout (a busy engine starts it late)
CONCURRENCY = 8  # execs being started on the engine at once (more only slows each start on a small machine)
ACCEPT_BOTH = "application/json, text/event-stream"
INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "qms-panel-doctor", "version": "1"}},
}
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class ProbeResult(BaseModel):
    """One reachability check."""

    where: str  # "host", or the agent whose container ran the probe
    target: str  # the URL probed (credentials redacted)
    transport: TransportName
    ok: bool
    latency_ms: float | None = None
    stage: Stage  # how far it got: "tcp" failed to connect; "handshake" connected
    status_code: int | None = None
    diagnosis: str | None = None  # one plain sentence when not ok
    failure: Failure | None = None  # refused, timeout, resolve, unreachable, http, no-endpoint, bad-reply, probe
    tool: str | None = None  # the probe program used in a container
    detail: str | None = None  # the raw error, for the curious


class GatewayCheck(BaseModel):
    """The gateway between the containers and the server, as its feed says it (None in a report:
    not asked). ``running`` False: no gateway answers on the feed; containers then reach whatever
    listens at ``container_mcp_url`` directly. ``ok`` False only when a running gateway cannot reach
    its upstream."""

    running: bool
    ok: bool = True
    listen: str = ""
    upstream: str = ""
    upstream_state: str = ""
    agents: list[str] = []
    diagnosis: str = ""


async def check_gateway(settings: Settings, upstream: ProbeResult | None) -> GatewayCheck:
    """The gateway hop: is a gateway running (its feed), and can it reach its upstream (its own
    state, and the host's check of ``upstream_url``: the gateway runs on this host)."""
    from core.errors import FeedDown
    from core.gateway.feed_client import FeedClient

    try:
        state = await FeedClient.for_settings(settings).state()
    except FeedDown as err:
        return GatewayCheck(running=False, diagnosis=f"{err.detail}; without the gateway, containers reach the server "
                                                     "directly, with no identity per container and no live view.")
    check = GatewayCheck(running=True, listen=state.listen, upstream=state.upstream, upstream_state=state.upstream_state,
                         agents=list(state.agents))
    if state.upstream_state == "down" or (upstream is not None and not upstream.ok):
        check.ok = False
        why = state.upstream_reason or (upstream.diagnosis if upstream is not None else "") or "no answer"
        check.diagnosis = f"The gateway on {state.listen} cannot reach the QMS server at {state.upstream}: {why}"
    return check


class DoctorReport(BaseModel):
    host: ProbeResult
    gateway: GatewayCheck | None = None
    upstream: ProbeResult | None = None  # the host's check of upstream_url, when a gateway runs
    containers: list[ProbeResult] = []
    engine_error: str | None = None  # the containers could not be listed
    container_reach: str | None = None  # no container was probed, and none could reach the server: why
    ok: bool


class _Attempt(BaseModel):
    """What one probe of one URL saw, before diagnosis."""

    ok: bool
    failure: Failure | None = None
    status_code: int | None = None
    latency_ms: float | None = None
    detail: str | None = None


# --- URLs ----------------------------------------------------------------------------------


def alternate_url(url: str) -> tuple[str, TransportName] | None:
    """The same server's other transport endpoint: ``/sse`` <-> ``/mcp``."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path.endswith("/sse"):
        return urlunsplit(parts._replace(path=path[:-4] + "/mcp", query="")), "streamable-http"
    if path.endswith("/mcp"):
        return urlunsplit(parts._replace(path=path[:-4] + "/sse", query="")), "sse"
    return None


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


# --- who listens where (Linux) --------------------------------------------------------------


def _proc_addr(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return ipaddress.IPv6Address(words)


def listeners(port: int, proc_net: Path = Path("/proc/net")) -> list[str] | None:
    """Addresses listening on TCP ``port`` in this network namespace, or None if unknowable."""
    found: list[str] = []
    readable = False
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":  # 0A = LISTEN
                continue
            addr, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port:
                found.append(str(_proc_addr(addr)))
    return found if readable else None


def loopback_only(port: int) -> bool | None:
    """True if something listens on ``port`` here, only on loopback; None if it cannot be told."""
    addrs = listeners(port)
    if not addrs:
        return None

    def is_loopback(text: str) -> bool:
        ip = ipaddress.ip_address(text)
        mapped = getattr(ip, "ipv4_mapped", None)
        return ip.is_loopback or bool(mapped and mapped.is_loopback)

    return all(is_loopback(a) for a in addrs)


# --- diagnoses -------------------------------------------------------------------------------


def _diagnose(attempt: _Attempt, url: str, transport: TransportName, timeout: float,
              alt: tuple[str, TransportName, _Attempt] | None, where: str) -> str:
    host, port = _host_port(url)
    path = urlsplit(url).path or "/"
    code = attempt.status_code
    if alt is not None and alt[2].ok and code in (404, 405):
        alt_url, alt_transport, _ = alt
        alt_path = urlsplit(alt_url).path
        if alt_transport == "streamable-http":
            return (f"{path} answers {code} but {alt_path} answers streamable HTTP: the server runs "
                    f"--transport streamable-http, so use {redact_url(alt_url)} (or restart it with --transport sse).")
        return (f"{path} answers {code} but {alt_path} answers SSE: the server runs --transport sse, "
                f"so use {redact_url(alt_url)} (or restart it with --transport streamable-http).")
    if attempt.failure == "refused":
        return f"Connection refused at {host}:{port}: nothing listens there (is the MCP server running, on this port?)."
    if attempt.failure == "timeout":
        return (f"No answer from {host}:{port} within {timeout:g} s: a firewall dropping packets, a wrong address, "
                f"or a stalled server.")
    if attempt.failure == "resolve":
        hint = " (launch the container with --add-host=host.docker.internal:host-gateway)" if where != "host" else ""
        return f"Cannot resolve the host name {host!r}{hint}."
    if attempt.failure == "unreachable":
        return f"No route to {host}:{port} ({attempt.detail})."
    if code == 421:
        return (f"The server refused the Host header '{host}:{port}' (421 Invalid Host header): its allowed hosts "
                f"lack that name; use 127.0.0.1, localhost or host.docker.internal with the port, or add the name "
                f"to the server's allowed hosts.")
    if code == 406:
        return ("The server answered 406 Not Acceptable: a streamable-HTTP request must accept "
                "application/json and text/event-stream (is something rewriting the Accept header?).")
    if code in (404, 405):
        other = " or at the other transport's path" if alt is not None else ""
        return (f"{path} answers {code}, and no MCP endpoint answers there{other}: is this the QMS MCP server, "
                f"and the right path (/sse for SSE, /mcp for streamable HTTP)?")
    if code == 403 and where != "host":
        return (f"{host}:{port} refused this container (403): the qms-panel gateway lets in only running containers "
                f"qms-panel made for this project, one per agent (`qms-panel watch` says why it refused).")
    if code is not None:
        return f"HTTP {code} from {path}: the server did not accept the {transport} handshake."
    if attempt.failure == "no-endpoint":
        return f"Connected, but {path} sent no SSE endpoint event within {timeout:g} s: is it an MCP SSE endpoint?"
    if attempt.failure == "bad-reply":
        return f"Connected, but {path} did not answer the MCP initialize: {attempt.detail}."
    return f"The probe failed: {attempt.detail}."


def container_reach(settings: Settings, manager: ContainerManager) -> str | None:
    """Why no container can reach ``container_mcp_url``, said before any container tries: it
    names this host (``host.docker.internal`` or the bridge address) and its port listens only
    on loopback here. Inside a container ``host.docker.internal`` is the host's bridge address,
    never the host's 127.0.0.1. None when that is not the case, or cannot be told."""
    host, port = _host_port(settings.container_mcp_url)
    addrs = listeners(port)
    if not addrs or loopback_only(port) is not True:
        return None
    try:
        bridge: str | None = manager.bridge_gateway()
    except EngineError:
        bridge = None
    if host != "host.docker.internal" and host != bridge:
        return None
    where = bridge or "the Docker bridge address"
    listen = "" if port == 8000 else f" --gateway-listen {where}:{port}"
    return (f"Containers cannot reach {redact_url(settings.container_mcp_url)}: inside a container "
            f"{host} is this host's bridge address ({where}), not 127.0.0.1, and port {port} listens only on "
            f"{', '.join(sorted(set(addrs)))} here; run `qms-panel gateway --upstream-url "
            f"{redact_url(settings.mcp_url)}{listen}`, which listens on {where}:{port} and forwards to the server "
            f"(or start the server with --host 0.0.0.0).")


def _loopback_diagnosis(agent: str, port: int, certain: bool) -> str:
    listens = "listens only on 127.0.0.1" if certain else "probably listens only on 127.0.0.1"
    return (f"The host reaches the server but {agent}'s container cannot: the server {listens}, which Linux's "
            f"host-gateway (host.docker.internal, the Docker bridge address) cannot reach on port {port}; run "
            f"`qms-panel gateway --upstream-url <the server's URL>`, which listens on the bridge address and forwards "
            f"to it (or start the server with --host 0.0.0.0).")


# --- host check ------------------------------------------------------------------------------


def _os_failure(exc: BaseException) -> tuple[Failure, str]:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "refused", str(cause)
        if isinstance(cause, socket.gaierror):
            return "resolve", str(cause)
        if isinstance(cause, (TimeoutError, httpx.TimeoutException)):
            return "timeout", str(cause) or "timed out"
        if isinstance(cause, OSError) and cause.errno is not None:
            return "unreachable", cause.strerror or str(cause)
        cause = cause.__cause__ or cause.__context__
    return "probe", f"{type(exc).__name__}: {exc}"


async def _tcp(url: str, timeout: float) -> _Attempt:
    host, port = _host_port(url)
    started = time.perf_counter()
    try:
        with anyio.fail_after(timeout):
            stream = await anyio.connect_tcp(host, port)
        await stream.aclose()
    except TimeoutError:
        return _Attempt(ok=False, failure="timeout", detail=f"TCP connect to {host}:{port} timed out")
    except OSError as exc:
        failure, detail = _os_failure(exc)
        return _Attempt(ok=False, failure=failure, detail=detail)
    return _Attempt(ok=True, latency_ms=(time.perf_counter() - started) * 1000.0)


async def _handshake(client: httpx.AsyncClient, url: str, transport: TransportName, timeout: float) -> _Attempt:
    started = time.perf_counter()
    try:
        with anyio.fail_after(timeout):
            if transport == "sse":
                return await _sse_endpoint(client, url, started)
            return await _initialize(client, url, started)
    except TimeoutError:
        failure: Failure = "no-endpoint" if transport == "sse" else "timeout"
        return _Attempt(ok=False, failure=failure, detail=f"no handshake within {timeout:g} s")
    except httpx.HTTPError as exc:
        failure, detail = _os_failure(exc)
        return _Attempt(ok=False, failure=failure, detail=detail)


async def _sse_endpoint(client: httpx.AsyncClient, url: str, started: float) -> _Attempt:
    async with client.stream("GET", url, headers={"Accept": "text/event-stream"}) as response:
        if response.status_code != 200:
            body = (await response.aread())[:200].decode("utf-8", "replace")
            return _Attempt(ok=False, failure="http", status_code=response.status_code, detail=body.strip())
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "endpoint":
                return _Attempt(ok=True, status_code=200, latency_ms=(time.perf_counter() - started) * 1000.0,
                                detail=line[5:].strip())
    return _Attempt(ok=False, failure="no-endpoint", status_code=200,
                    detail="the stream ended without an endpoint event")


async def _initialize(client: httpx.AsyncClient, url: str, started: float) -> _Attempt:
    response = await client.post(url, json=INITIALIZE, headers={"Accept": ACCEPT_BOTH})
    if response.status_code != 200:
        return _Attempt(ok=False, failure="http", status_code=response.status_code,
                        detail=response.text[:200].strip())
    if '"result"' not in response.text or '"jsonrpc"' not in response.text:
        return _Attempt(ok=False, failure="bad-reply", status_code=200, detail=response.text[:200].strip())
    return _Attempt(ok=True, status_code=200, latency_ms=(time.perf_counter() - started) * 1000.0)


async def check_host(url: str, transport: TransportName | None = None, timeout: float = 5.0) -> ProbeResult:
    """TCP connect to the server, then the transport's handshake, from this machine."""
    transport = transport or transport_from_url(url)
    target = redact_url(url)
    tcp = await _tcp(url, timeout)
    if not tcp.ok:
        return ProbeResult(where="host", target=target, transport=transport, ok=False, stage="tcp",
                           failure=tcp.failure, detail=tcp.detail,
                           diagnosis=_diagnose(tcp, url, transport, timeout, None, "host"))
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout)) as client:
        shake = await _handshake(client, url, transport, timeout)
        alt = None
        if not shake.ok and shake.status_code in (404, 405) and (other := alternate_url(url)):
            alt = (*other, await _handshake(client, other[0], other[1], timeout))
    return ProbeResult(where="host", target=target, transport=transport, ok=shake.ok, stage="handshake",
                       latency_ms=shake.latency_ms, status_code=shake.status_code, detail=shake.detail,
                       failure=shake.failure, diagnosis=None if shake.ok else _diagnose(shake, url, transport, timeout, alt, "host"))


# --- container check -------------------------------------------------------------------------

def probe_argv(tool: str, transport: TransportName, timeout: float) -> list[str]:
    """The command that probes with ``tool`` and prints one QMSPROBE line; the URL goes on its
    standard input (:func:`probe_input`), never in this argv (the engine records an exec's argv)."""
    mode = "sse" if transport == "sse" else "post"
    body = json.dumps(INITIALIZE, separators=(",", ":"))
    secs = str(max(1, round(timeout)))
    if tool == "python3":
        return ["python3", "-c", probes.program("fetch.py"), secs, mode, body, ACCEPT_BOTH]
    if tool == "node":
        return ["node", "-e", probes.program("fetch.js"), secs, mode, body, ACCEPT_BOTH]
    return ["sh", "-c", probes.program("fetch.sh"), "sh", secs, tool, mode, body, ACCEPT_BOTH]


def probe_input(url: str) -> bytes:
    """What a probe program reads on its standard input: the URL, one line."""
    if "\n" in url or "\r" in url:
        raise ValueError("a URL has no line breaks")
    return url.encode() + b"\n"


_PROBE_LINE = re.compile(r"QMSPROBE (?P<fields>.*)$", re.MULTILINE)
_STATUS_IN_TEXT = re.compile(r"(?:HTTP/\d(?:\.\d)? |returned error: |HTTP )(\d{3})\b")


def parse_probe(output: str) -> _Attempt:
    """Read the QMSPROBE line a probe printed."""
    match = _PROBE_LINE.search(output)
    if match is None:
        return _Attempt(ok=False, failure="probe", detail=" ".join(output.split())[:200] or "no output")
    text = match.group("fields")
    head, _, err = text.partition(" err=")
    fields = dict(part.split("=", 1) for part in head.split() if "=" in part)
    ms = float(fields["ms"]) if fields.get("ms", "").isdigit() else None
    status = int(fields["status"]) if fields.get("status", "").isdigit() else None
    outcome = fields.get("outcome")
    if outcome == "ok":
        return _Attempt(ok=True, status_code=status or 200, latency_ms=ms)
    if outcome == "timeout":
        return _Attempt(ok=False, failure="timeout", latency_ms=ms, detail="timed out")
    if outcome in ("no-endpoint", "bad-reply"):
        return _Attempt(ok=False, failure=outcome, status_code=status, latency_ms=ms, detail=err.strip())
    found = _STATUS_IN_TEXT.search(err)
    status = status or (int(found.group(1)) if found else None)
    lower = err.lower()
    rc = fields.get("rc")
    if status is not None:
        failure: Failure = "http"
    elif "refused" in lower or rc == "7":
        failure = "refused"
    elif "bad address" in lower or "resolve" in lower or "enotfound" in lower or "eai_again" in lower or rc == "6":
        failure = "resolve"
    elif "timed out" in lower or "etimedout" in lower or rc == "28":
        failure = "timeout"
    elif "no route" in lower or "unreachable" in lower:
        failure = "unreachable"
    else:
        failure = "probe"
    return _Attempt(ok=False, failure=failure, status_code=status, latency_ms=ms, detail=err.strip() or None)


class StartGate:
    """At most ``n`` execs being started on the engine at once; their waits for output are not bounded.

    A check holds the gate from before its exec's create call until the engine runs the process
    (``ContainerManager.exec(started=...)``), so a stalled server, which makes every probe wait its
    timeout, does not make the checks wait for each other.
    """

    def __init__(self, n: int) -> None:
        self._slots = threading.BoundedSemaphore(max(1, n))

    @contextmanager
    def starting(self) -> Iterator[Callable[[], None]]:
        self._slots.acquire()
        held = True

        def release() -> None:  # called by exec once started, and on the way out: the first call counts
            nonlocal held
            if held:
                held = False
                self._slots.release()

        try:
            yield release
        finally:
            release()


def check_container(manager: ContainerManager, container_row: ContainerRow, url: str,
                    transport: TransportName | None = None, timeout: float = 5.0,
                    gate: StartGate | None = None) -> ProbeResult:
    """Probe ``url`` from inside a running container (blocking: two ``docker exec``, the URL on stdin)."""
    gate = gate or StartGate(1)
    transport = transport or transport_from_url(url)
    agent = container_row.agent
    target = redact_url(url)

    def result(**fields: Any) -> ProbeResult:
        for key in ("detail", "diagnosis"):  # a tool's error text may quote the URL it was given
            if fields.get(key):
                fields[key] = redact_text(fields[key])
        return ProbeResult(where=agent, target=target, transport=transport, **fields)

    try:
        with gate.starting() as started:
            found = manager.exec(container_row.name, ["sh", "-c", probes.program("detect.sh"), "sh", *PROBE_TOOLS],
                                 timeout=timeout + EXEC_GRACE, started=started)
    except QmsPanelError as err:
        return result(ok=False, stage="tcp", failure="probe",
                      diagnosis=f"Cannot run a probe in {container_row.name}: {err}.")
    if found.timed_out:
        return result(ok=False, stage="tcp", failure="probe",
                      diagnosis=f"A probe could not even start in {container_row.name} within "
                                f"{timeout + EXEC_GRACE:g} s "
                                f"(a busy engine or container); try again, or with a longer --timeout.")
    tool = found.output.strip().splitlines()[-1].strip() if found.exit_code == 0 and found.output.strip() else None
    if tool not in PROBE_TOOLS:
        return result(ok=False, stage="tcp", failure="probe", detail=found.output.strip() or None,
                      diagnosis=f"{container_row.name} has none of {', '.join(PROBE_TOOLS)} to probe with.")

    def probe(probe_url: str, probe_transport: TransportName) -> _Attempt:
        try:
            with gate.starting() as started:
                run = manager.exec(container_row.name, probe_argv(tool, probe_transport, timeout),
                                   timeout=timeout + EXEC_GRACE, stdin=probe_input(probe_url), started=started)
        except QmsPanelError as err:
            return _Attempt(ok=False, failure="probe", detail=str(err))
        return parse_probe(run.output)

    attempt = probe(url, transport)
    stage: Stage = "tcp" if attempt.failure in ("refused", "timeout", "resolve", "unreachable") else "handshake"
    if attempt.ok:
        return result(ok=True, stage=stage, latency_ms=attempt.latency_ms, status_code=attempt.status_code, tool=tool)
    alt = None
    if attempt.status_code in (404, 405) and (other := alternate_url(url)):
        alt = (*other, probe(*other))
    _, port = _host_port(url)
    if attempt.failure in ("refused", "timeout") and loopback_only(port):
        diagnosis = _loopback_diagnosis(agent, port, certain=True)
    else:
        diagnosis = _diagnose(attempt, url, transport, timeout, alt, agent)
    return result(ok=False, stage=stage, latency_ms=attempt.latency_ms, status_code=attempt.status_code,
                  diagnosis=diagnosis, failure=attempt.failure, tool=tool, detail=attempt.detail)


# --- the whole check -------------------------------------------------------------------------


def probed_rows(rows: Iterable[ContainerRow]) -> list[ContainerRow]:
    """The rows the doctor probes: running containers of ours (it never execs into any other)."""
    return [row for row in rows if row.state == "running" and row.managed]


async def run_doctor(settings: Settings, manager: ContainerManager, rows: Iterable[ContainerRow] | None = None, *,
                     timeout: float = 5.0, concurrency: int = CONCURRENCY) -> DoctorReport:
    """The host check and one check in each running container of ours, all at once.

    ``rows`` are the containers as the caller knows them (the panel's container board); without
    them the doctor lists the engine once (the command line). Every container check runs at the
    same time as the others and the host check, each bounded by its own timeouts; at most
    ``concurrency`` execs are being started on the engine at once (:class:`StartGate`). So a run
    takes about one timeout whether the server is down, stalled or up, plus the engine's time to
    start ``2 * N`` execs ``concurrency`` at a time.
    """
    if rows is None:
        try:
            rows = await anyio.to_thread.run_sync(manager.list)
        except EngineError as err:
            host = await check_host(settings.mcp_url, settings.transport_for(settings.mcp_url), timeout)
            return DoctorReport(host=host, engine_error=str(err), ok=False)
    targets = probed_rows(rows)
    url = settings.container_mcp_url
    transport = transport_from_url(url)  # the containers' own (their /.mcp.json's), not the host link's mcp_transport
    gate = StartGate(concurrency)
    limiter = anyio.CapacityLimiter(max(1, len(targets)))  # a thread per check: each mostly waits
    results: list[ProbeResult | None] = [None] * len(targets)
    host: list[ProbeResult] = []

    async def check_one(i: int, row: ContainerRow) -> None:
        results[i] = await anyio.to_thread.run_sync(check_container, manager, row, url, transport, timeout, gate,
                                                    limiter=limiter)

    async def check_the_host() -> None:
        host.append(await check_host(settings.mcp_url, settings.transport_for(settings.mcp_url), timeout))

    hop: list[GatewayCheck] = []
    upstream: list[ProbeResult] = []

    async def check_the_gateway() -> None:
        hop.append(await check_gateway(settings, None))
        if hop[0].running:  # the gateway runs on this host: the host's view of its upstream is its own
            upstream.append(await check_host(settings.upstream_url, None, timeout))
            if not upstream[0].ok:
                hop[0] = await check_gateway(settings, upstream[0])

    async with anyio.create_task_group() as group:
        group.start_soon(check_the_host)
        group.start_soon(check_the_gateway)
        for i, row in enumerate(targets):
            group.start_soon(check_one, i, row)
    found = [r for r in results if r is not None]
    _, port = _host_port(url)
    if host[0].ok and _host_port(settings.mcp_url)[0] in _LOOPBACK_NAMES and loopback_only(port) is None:
        # Cannot see the server's sockets (another network namespace): infer from the combination.
        for row, result in zip(targets, found):
            if result.failure == "refused":
                result.diagnosis = _loopback_diagnosis(row.agent, port, certain=False)
    gateway = hop[0] if hop else None
    reach = None
    if not found and not (gateway is not None and gateway.running):  # no container has said it, no gateway between
        reach = await anyio.to_thread.run_sync(container_reach, settings, manager)
    return DoctorReport(host=host[0], gateway=gateway, upstream=upstream[0] if upstream else None, containers=found,
                        container_reach=reach, ok=host[0].ok and all(r.ok for r in found) and (gateway is None or gateway.ok))
