"""The reachability doctor: host checks against the real dev server, probes run inside real
containers (and each probe program on the host), and the one-sentence diagnoses."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from core.containers import ContainerManager, ContainerRow, ExecResult
from core.doctor import (
    ACCEPT_BOTH,
    _Attempt,
    _diagnose,
    alternate_url,
    check_container,
    check_host,
    listeners,
    loopback_only,
    parse_probe,
    probe_argv,
    probe_input,
    run_doctor,
)
from core.settings import Settings
from support.devserver import free_port
from support.docker_env import TEST_LABEL

TRANSPORTS = ["sse", "streamable-http"]


def closed_port() -> int:
    return free_port()


class SilentServer:
    """Accepts TCP connections and never answers (a stalled server; no real one does this on demand)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for conn in self.conns:
            conn.close()
        self.sock.close()


# --- host checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_host_passes_with_latency(sample_project, devserver_factory, transport):
    server = devserver_factory(sample_project, transport=transport)
    result = await check_host(server.url, None, 5)
    assert result.ok and result.where == "host" and result.stage == "handshake" and result.transport == transport
    assert result.status_code == 200 and result.latency_ms > 0 and result.diagnosis is None


async def test_host_connection_refused():
    port = closed_port()
    result = await check_host(f"http://127.0.0.1:{port}/sse", None, 5)
    assert not result.ok and result.stage == "tcp" and result.failure == "refused"
    assert result.diagnosis == (f"Connection refused at 127.0.0.1:{port}: nothing listens there "
                                f"(is the MCP server running, on this port?).")


async def test_host_transport_mismatch_both_ways(sample_project, devserver_factory):
    streamable = devserver_factory(sample_project, transport="streamable-http")
    sse = devserver_factory(sample_project, transport="sse")
    wrong = await check_host(streamable.url.replace("/mcp", "/sse"), None, 5)
    assert not wrong.ok and wrong.status_code == 404 and wrong.stage == "handshake"
    assert wrong.diagnosis.startswith("/sse answers 404 but /mcp answers streamable HTTP")
    assert streamable.url in wrong.diagnosis
    reverse = await check_host(sse.url.replace("/sse", "/mcp"), None, 5)
    assert not reverse.ok and reverse.status_code in (404, 405)
    assert reverse.diagnosis.startswith(f"/mcp answers {reverse.status_code} but /sse answers SSE")


async def test_host_invalid_host_header(sample_project, devserver_factory):
    name = socket.gethostname()
    try:
        resolves = socket.gethostbyname(name)
    except OSError:
        resolves = None
    if resolves != "127.0.0.1" or name in ("localhost",):
        pytest.skip(f"this machine's name {name!r} does not resolve to 127.0.0.1")
    server = devserver_factory(sample_project)
    result = await check_host(f"http://{name}:{server.port}/sse", None, 5)
    assert not result.ok and result.status_code == 421
    assert result.diagnosis.startswith(f"The server refused the Host header '{name}:{server.port}' (421 Invalid Host")


@pytest.mark.parametrize("transport, failure", [("sse", "no-endpoint"), ("streamable-http", "timeout")])
async def test_host_timeout_on_a_silent_server(transport, failure):
    silent = SilentServer()
    try:
        path = "/sse" if transport == "sse" else "/mcp"
        result = await check_host(f"http://127.0.0.1:{silent.port}{path}", transport, 0.5)
    finally:
        silent.close()
    assert not result.ok and result.stage == "handshake" and result.failure == failure
    assert "within 0.5 s" in result.diagnosis


def test_diagnoses_for_406_and_other_codes():
    url = "http://127.0.0.1:8000/mcp"
    assert _diagnose(_Attempt(ok=False, failure="http", status_code=406), url, "streamable-http", 5, None,
                     "host").startswith("The server answered 406 Not Acceptable")
    text = _diagnose(_Attempt(ok=False, failure="http", status_code=404), url, "streamable-http", 5,
                     ("http://127.0.0.1:8000/sse", "sse", _Attempt(ok=False, status_code=404)), "host")
    assert text.startswith("/mcp answers 404, and no MCP endpoint answers there or at the other transport's path")
    assert _diagnose(_Attempt(ok=False, failure="resolve"), "http://host.docker.internal:8000/sse", "sse", 5, None,
                     "claude") == ("Cannot resolve the host name 'host.docker.internal' (launch the container with "
                                   "--add-host=host.docker.internal:host-gateway).")
    assert alternate_url("http://h:1/x/sse?t=1") == ("http://h:1/x/mcp", "streamable-http")
    assert alternate_url("http://h:1/other") is None


# --- who listens where -------------------------------------------------------------------------------


def test_listeners_read_proc_net(tmp_path):
    header = "  sl  local_address rem_address   st\n"
    (tmp_path / "tcp").write_text(header +
                                  "   0: 0100007F:1F40 00000000:0000 0A\n"      # 127.0.0.1:8000 LISTEN
                                  "   1: 00000000:1F41 00000000:0000 0A\n"      # 0.0.0.0:8001 LISTEN
                                  "   2: 0100007F:1F41 0100007F:D63F 01\n")     # an established connection
    (tmp_path / "tcp6").write_text(header + "   0: 00000000000000000000000001000000:1F40 "
                                            "00000000000000000000000000000000:0000 0A\n")  # [::1]:8000
    assert sorted(listeners(8000, tmp_path)) == ["127.0.0.1", "::1"]
    assert listeners(8001, tmp_path) == ["0.0.0.0"]
    assert listeners(8002, tmp_path) == []
    assert listeners(8000, tmp_path / "missing") is None


def test_loopback_only_sees_real_servers(sample_project, devserver_factory):
    local = devserver_factory(sample_project, host="127.0.0.1")
    wide = devserver_factory(sample_project, host="0.0.0.0")
    assert loopback_only(local.port) is True
    assert loopback_only(wide.port) is False
    assert loopback_only(closed_port()) is None


# --- the probe programs, each run on this machine against the real server -----------------------------


def _probe_env(tool: str, tmp_path: Path) -> dict[str, str] | None:
    """The environment to run ``tool``'s probe on the host (wget from busybox), or None if absent."""
    env = dict(os.environ)
    if tool == "wget":
        busybox = shutil.which("busybox")
        if busybox is None:
            return None
        bindir = tmp_path / "bb"
        bindir.mkdir(exist_ok=True)
        for applet in ("sh", "wget", "grep", "tr", "head", "kill", "sleep", "date", "rm", "timeout"):
            if not (bindir / applet).exists():
                (bindir / applet).symlink_to(busybox)
        env["PATH"] = str(bindir)
        return env
    return env if shutil.which(tool) else None


def test_each_probe_program(sample_project, devserver_factory, tmp_path):
    """python3, node, curl and busybox wget probes, run here (the test image has only wget)."""
    tools = {tool: env for tool in ("python3", "node", "curl", "wget") if (env := _probe_env(tool, tmp_path))}
    if not tools:
        pytest.skip("none of python3, node, curl, busybox on this machine")
    sse = devserver_factory(sample_project, transport="sse")
    streamable = devserver_factory(sample_project, transport="streamable-http")
    name = socket.gethostname()
    name_is_loopback = socket.gethostbyname(name) == "127.0.0.1"

    for tool, env in tools.items():
        def run(url: str, transport: str):
            argv = probe_argv(tool, transport, 5)
            assert url not in " ".join(argv)
            done = subprocess.run(argv, capture_output=True, env=env, timeout=30, input=probe_input(url))
            return parse_probe((done.stdout + done.stderr).decode())

        for url, transport in ((sse.url, "sse"), (streamable.url, "streamable-http")):
            ok = run(url, transport)
            assert ok.ok and ok.status_code == 200 and ok.latency_ms is not None, (tool, url, ok)
            secret = run(with_credentials(url), transport)  # user:pass@ and ?token= reach the server
            assert secret.ok, (tool, secret)
        mismatch = run(streamable.url.replace("/mcp", "/sse"), "sse")
        assert not mismatch.ok and mismatch.failure == "http" and mismatch.status_code == 404, (tool, mismatch)
        refused = run(f"http://127.0.0.1:{closed_port()}/sse", "sse")
        assert not refused.ok and refused.failure == "refused", (tool, refused)
        if name_is_loopback:
            assert run(f"http://{name}:{sse.port}/sse", "sse").status_code == 421, tool

    for tool in {"curl", "wget"} & set(tools):  # the shell probe without a writable $TMPDIR: a pipe
        env = {**tools[tool], "TMPDIR": str(tmp_path / "missing")}
        for url, transport, ok, status in ((sse.url, "sse", True, 200), (streamable.url, "streamable-http", True, 200),
                                           (streamable.url.replace("/mcp", "/sse"), "sse", False, 404)):
            done = subprocess.run(probe_argv(tool, transport, 2), capture_output=True, env=env,
                                  timeout=30, input=probe_input(url))
            seen = parse_probe((done.stdout + done.stderr).decode())
            assert (seen.ok, seen.status_code) == (ok, status), (tool, url, done.stdout)


def with_credentials(url: str) -> str:
    return url.replace("http://", "http://agent:pass-w0rd@", 1) + "?token=s3cret-t0ken"


SECRETS = ("pass-w0rd", "s3cret-t0ken")


def test_parse_probe_lines():
    assert parse_probe("noise\nQMSPROBE outcome=ok status=200 ms=12\n").latency_ms == 12
    assert parse_probe("QMSPROBE outcome=fail rc=1 ms=3 err=wget: server returned error: HTTP/1.1 421 Misdirected "
                       "Request").status_code == 421
    assert parse_probe("QMSPROBE outcome=timeout ms=5000").failure == "timeout"
    assert parse_probe("sh: not found").failure == "probe"
    assert probe_argv("wget", "streamable-http", 5)[-1] == ACCEPT_BOTH


# --- inside real containers ----------------------------------------------------------------------------


def doctor_settings(sample_project, test_image, prefix, mcp_url, container_url) -> Settings:
    return Settings(project_root=sample_project, image=test_image, container_prefix=prefix,
                    mcp_url=mcp_url, container_mcp_url=container_url)


@pytest.mark.docker
async def test_server_on_all_interfaces_passes_everywhere(sample_project, devserver_factory, agent_container,
                                                        test_image, unique_prefix):
    manager, row = agent_container
    server = devserver_factory(sample_project, host="0.0.0.0")
    settings = doctor_settings(sample_project, test_image, unique_prefix, server.url,
                               f"http://host.docker.internal:{server.port}/sse")
    report = await run_doctor(settings, manager)
    assert report.host.ok, report.host
    assert [r.where for r in report.containers] == ["claude"]
    inside = report.containers[0]
    assert inside.ok and inside.tool == "wget" and inside.status_code == 200 and inside.latency_ms is not None, inside
    assert report.ok


@pytest.mark.docker
async def test_server_on_loopback_only_fails_in_the_container(sample_project, devserver_factory, agent_container,
                                                            test_image, unique_prefix):
    manager, row = agent_container
    server = devserver_factory(sample_project, host="127.0.0.1")
    settings = doctor_settings(sample_project, test_image, unique_prefix, server.url,
                               f"http://host.docker.internal:{server.port}/sse")
    report = await run_doctor(settings, manager)
    assert report.host.ok and not report.ok
    inside = report.containers[0]
    assert not inside.ok and inside.stage == "tcp" and inside.failure in ("refused", "timeout")
    assert inside.diagnosis == (
        f"The host reaches the server but claude's container cannot: the server listens only on 127.0.0.1, "
        f"which Linux's host-gateway (host.docker.internal, the Docker bridge address) cannot reach on port "
        f"{server.port}; run `qms-panel gateway --upstream-url <the server's URL>`, which listens on the bridge "
        f"address and forwards to it (or start the server with --host 0.0.0.0).")
    assert report.gateway is not None and not report.gateway.running and report.gateway.ok
    assert "no feed token" in report.gateway.diagnosis


@pytest.mark.docker
async def test_the_chain_through_a_gateway_container_to_upstream(sample_project, devserver_factory, gateway_factory,
                                                                 agent_container, test_image, unique_prefix):
    """container -> gateway -> upstream: the container's probe goes through the gateway (bound to
    its agent), the gateway's hop is read from its feed, and a dead upstream is said at its hop."""
    manager, row = agent_container
    server = devserver_factory(sample_project, transport="streamable-http")
    gw = gateway_factory(sample_project, server.url)
    settings = Settings(project_root=sample_project, image=test_image, container_prefix=unique_prefix,
                        mcp_url=server.url, upstream_url=server.url, feed_listen=gw.feed_listen,
                        state_dir=gw.state_dir, container_mcp_url=f"http://host.docker.internal:{gw.port}/mcp")
    report = await run_doctor(settings, manager)
    assert report.ok, report
    assert report.gateway.running and report.gateway.listen == gw.listen and report.containers[0].ok
    server.stop()
    report = await run_doctor(settings, manager, timeout=3)
    assert not report.ok and not report.gateway.ok
    assert report.gateway.diagnosis.startswith(f"The gateway on {gw.listen} cannot reach the QMS server at")


@pytest.mark.docker
async def test_sse_url_against_streamable_server_in_the_container(sample_project, devserver_factory,
                                                                 agent_container, test_image, unique_prefix):
    manager, row = agent_container
    server = devserver_factory(sample_project, transport="streamable-http", host="0.0.0.0")
    settings = doctor_settings(sample_project, test_image, unique_prefix, server.url.replace("/mcp", "/sse"),
                               f"http://host.docker.internal:{server.port}/sse")
    report = await run_doctor(settings, manager)
    assert not report.host.ok and report.host.diagnosis.startswith("/sse answers 404 but /mcp answers streamable HTTP")
    inside = report.containers[0]
    assert not inside.ok and inside.status_code == 404
    assert inside.diagnosis.startswith("/sse answers 404 but /mcp answers streamable HTTP: the server runs "
                                       "--transport streamable-http, so use "
                                       f"http://host.docker.internal:{server.port}/mcp")
    fixed = doctor_settings(sample_project, test_image, unique_prefix, server.url,
                            f"http://host.docker.internal:{server.port}/mcp")
    report = await run_doctor(fixed, manager)
    assert report.ok, report


@pytest.mark.docker
def test_container_invalid_host_header_and_refused(sample_project, devserver_factory, agent_container):
    manager, row = agent_container
    server = devserver_factory(sample_project, host="0.0.0.0")
    hosts = manager.exec(row.name, ["cat", "/etc/hosts"]).output
    gateway = next(line.split()[0] for line in hosts.splitlines() if "host.docker.internal" in line)
    by_address = check_container(manager, row, f"http://{gateway}:{server.port}/sse", "sse", 5)
    assert not by_address.ok and by_address.status_code == 421
    assert by_address.diagnosis.startswith(f"The server refused the Host header '{gateway}:{server.port}'")
    nothing = check_container(manager, row, f"http://host.docker.internal:{closed_port()}/mcp", None, 5)
    assert not nothing.ok and nothing.failure == "refused" and nothing.transport == "streamable-http"
    assert nothing.diagnosis.startswith("Connection refused at host.docker.internal:")


@pytest.mark.docker
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_credential_reaches_the_engine_record(sample_project, devserver_factory, agent_container, test_image,
                                                       unique_prefix, docker_client, transport):
    """The container URL carries user:pass@ and ?token=: the probe still passes, and no exec event
    attribute, exec inspect or line of the report holds either secret."""
    manager, row = agent_container
    server = devserver_factory(sample_project, host="0.0.0.0", transport=transport)
    path = "/sse" if transport == "sse" else "/mcp"
    settings = doctor_settings(sample_project, test_image, unique_prefix, with_credentials(server.url),
                               with_credentials(f"http://host.docker.internal:{server.port}{path}"))
    since = time.time() - 1
    report = await run_doctor(settings, manager, [row])  # the rows the caller has: no list() of its own
    until = time.time() + 1
    assert report.ok and report.containers[0].tool == "wget", report
    events = list(docker_client.api.events(since=since, until=until, decode=True,
                                           filters={"container": row.id, "event": ["exec_create", "exec_start",
                                                                                   "exec_die"]}))
    exec_ids = {e["Actor"]["Attributes"].get("execID") for e in events} - {None}
    assert len(exec_ids) == 2 and any(e["Action"].startswith("exec_create: sh -c") for e in events), events
    records = json.dumps(events) + "".join(json.dumps(docker_client.api.exec_inspect(i)) for i in exec_ids)
    assert not [s for s in SECRETS if s in records or s in report.model_dump_json()]


class CountingManager:
    """Execs that take a while to start and to answer, counting how many do each at once (the bound is
    an edge a fake shows exactly)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starting = self.most_starting = self.waiting = self.most_waiting = self.calls = 0

    def list(self):
        raise AssertionError("the doctor was given its rows")

    def _step(self, kind: str, delta: int) -> None:
        with self.lock:
            setattr(self, kind, getattr(self, kind) + delta)
            setattr(self, f"most_{kind}", max(getattr(self, f"most_{kind}"), getattr(self, kind)))

    def exec(self, name, argv, *, timeout=10, user=None, stdin=None, started=None):
        if name == "slow":
            return ExecResult(exit_code=None, output="", timed_out=True)
        self.calls += 1
        self._step("starting", 1)
        time.sleep(0.02)
        self._step("starting", -1)
        started()
        self._step("waiting", 1)
        time.sleep(0.2)  # a stalled server: the probe waits
        self._step("waiting", -1)
        if stdin is None:
            return ExecResult(exit_code=0, output="wget\n")
        return ExecResult(exit_code=1, output="QMSPROBE outcome=fail rc=1 ms=1 err=wget: can't connect: "
                                              "Connection refused")


async def test_container_checks_wait_together_and_start_within_the_bound(project_root):
    settings = Settings(project_root=project_root, mcp_url=f"http://127.0.0.1:{closed_port()}/sse")
    rows = [ContainerRow(agent=f"a{i}", id=f"{i:064d}", name=f"qms-agent-a{i}", state="running", image="x")
            for i in range(20)]
    rows.append(ContainerRow(agent="x", id="f" * 64, name="not-ours", state="running", image="x", managed=False))
    manager = CountingManager()
    report = await run_doctor(settings, manager, rows, concurrency=4)
    assert [r.where for r in report.containers] == [f"a{i}" for i in range(20)]  # in order; never the unmanaged one
    assert all(r.failure == "refused" for r in report.containers) and not report.ok
    assert manager.calls == 40 and manager.most_starting == 4
    assert manager.most_waiting > 4  # the waits overlap beyond the bound: a stalled server costs one timeout


async def test_a_probe_that_cannot_start_in_time_is_not_called_a_missing_tool(project_root):
    settings = Settings(project_root=project_root)
    row = ContainerRow(agent="slow", id="s" * 64, name="slow", state="running", image="x")
    [result] = (await run_doctor(settings, CountingManager(), [row], timeout=1)).containers
    assert result.failure == "probe" and result.diagnosis.startswith("A probe could not even start in slow within 6 s")
