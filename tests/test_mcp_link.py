"""The MCP link against the real dev server over both transports: connect, tools, ping,
calls from other tasks, fixed headers, and surviving its server's death (noticed at once, even in
the middle of a call over streamable HTTP)."""

from __future__ import annotations

import json
import os
import signal
import socket
from contextlib import asynccontextmanager

import anyio
import pytest

from core.devserver.server import FAULTS_ENV
from core.errors import CallTimeout, LinkDown, ReplyLost
from core.mcp_link import LinkState, McpLink, describe_error

TRANSPORTS = ["sse", "streamable-http"]
QMS_TOOLS = {"qms_inbox", "qms_workspace", "qms_status", "qms_checkout", "qms_checkin"}


class Runner:
    """Runs ``link.run()`` in a task group and notes whether it ever returned or raised."""

    def __init__(self, link: McpLink) -> None:
        self.link = link
        self.ended: BaseException | str | None = None

    async def __call__(self) -> None:
        try:
            await self.link.run()
            self.ended = "returned"
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            self.ended = exc


@asynccontextmanager
async def running(link: McpLink, *, connect: bool = True):
    runner = Runner(link)
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        if connect:
            with anyio.fail_after(20):
                await link.wait_connected(20)
        yield runner
        tg.cancel_scope.cancel()
    assert runner.ended is None, f"run() ended by itself: {runner.ended!r}"


async def next_state(states, status: str, timeout: float = 30) -> LinkState:
    with anyio.fail_after(timeout):
        async for state in states:
            if state.status == status:
                return state
    raise AssertionError("states() ended")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connects_lists_tools_and_pings(sample_project, devserver_factory, transport):
    server = devserver_factory(sample_project, transport=transport)
    link = McpLink(server.url, ping_interval=0.2)
    assert link.transport == transport  # from the URL path
    async with running(link):
        state = link.state
        assert state.status == "connected" and state.transport == transport
        assert state.server_name == "qms"
        assert QMS_TOOLS <= set(state.tools)
        assert state.latency_ms is not None and state.latency_ms > 0
        assert state.attempt == 1 and state.reason is None
        pings = sum(1 for e in link.stream.snapshot() if e.method == "ping" and e.kind == "request")
        with anyio.fail_after(10):
            while sum(1 for e in link.stream.snapshot() if e.method == "ping" and e.kind == "response") < pings + 2:
                await anyio.sleep(0.05)
        assert link.state.latency_ms is not None and link.state.latency_ms > 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_calls_from_many_tasks_share_the_session(sample_project, devserver_factory, transport):
    server = devserver_factory(sample_project, transport=transport)
    link = McpLink(server.url, ping_interval=60)
    results: dict[int, str] = {}
    async with running(link):
        async def call(i: int) -> None:
            doc = ["CR-001", "CR-002", "CR-003", "SOP-001"][i % 4]
            result = await link.call_tool("qms_status", {"doc_id": doc, "user": "lead"})
            results[i] = result.text

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(call, i)
    assert len(results) == 8
    for i, text in results.items():
        assert text.startswith(f"Document: {['CR-001', 'CR-002', 'CR-003', 'SOP-001'][i % 4]}")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_links_headers_reach_the_server_on_every_call(sample_project, devserver_factory, transport):
    server = devserver_factory(sample_project, transport=transport, identity_ttl=30)
    agent = McpLink(server.url, ping_interval=60, headers={"X-QMS-Identity": "claude"})  # as an agent's proxy
    panel = McpLink(server.url, ping_interval=60)
    async with running(agent), running(panel):
        enforced = await agent.call_tool("qms_inbox", {"user": "claude"})
        assert not enforced.is_error
        mismatch = await agent.call_tool("qms_inbox", {"user": "lead"})
        assert mismatch.is_error and "IDENTITY MISMATCH" in mismatch.text
        trusted = await panel.call_tool("qms_inbox", {"user": "claude"})
        assert trusted.is_error and "IDENTITY LOCKED" in trusted.text
        other = await panel.call_tool("qms_inbox", {"user": "lead"})  # the panel's link sends no identity
        assert not other.is_error


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_survives_its_server_killed_and_restarted(sample_project, devserver_factory, transport):
    server = devserver_factory(sample_project, transport=transport)
    link = McpLink(server.url, ping_interval=0.3, backoff=(0.1, 0.5))
    async with running(link):
        states = link.states()
        await next_state(states, "connected")
        server.process.kill()
        server.stop()
        down = await next_state(states, "down")
        assert down.reason and down.latency_ms is None
        with pytest.raises(LinkDown):
            await link.call_tool("qms_status", {"doc_id": "CR-001", "user": "claude"})
        retrying = await next_state(states, "down")  # a failed reconnect: the port is closed
        assert retrying.reason == "connection refused" and retrying.attempt >= 1
        server.start()  # same port
        back = await next_state(states, "connected")
        assert back.attempt >= 1 and back.reason is None
        result = await link.call_tool("qms_status", {"doc_id": "CR-001", "user": "claude"})
        assert result.text.startswith("Document: CR-001")
        await states.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_call_in_flight_when_the_server_dies_raises_link_down(sample_project, devserver_factory, transport):
    server = devserver_factory(sample_project, transport=transport)
    link = McpLink(server.url, ping_interval=60, backoff=(5, 5))
    outcome: list[BaseException | str] = []

    async def call() -> None:
        try:
            await link.call_tool("qms_status", {"doc_id": "CR-001", "user": "claude"})
            outcome.append("answered")
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)

    async with running(link):
        os.kill(server.process.pid, signal.SIGSTOP)  # frozen: the call cannot be answered
        try:
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(call)
                    while not any(e.method == "tools/call" for e in link.stream.snapshot()):
                        await anyio.sleep(0.01)
                    assert outcome == []
                    server.process.kill()
        finally:
            if server.process.poll() is None:  # an assertion failed before the kill: let it stop normally
                os.kill(server.process.pid, signal.SIGCONT)
    server.stop()
    assert len(outcome) == 1 and isinstance(outcome[0], ReplyLost), outcome
    assert "the connection closed during qms_status" in str(outcome[0])


async def _call_into(link: McpLink, outcome: list, **options) -> None:
    try:
        await link.call_tool("qms_status", {"doc_id": "CR-001", "user": "claude"}, **options)
        outcome.append("answered")
    except Exception as exc:  # noqa: BLE001 - recorded for the assertion
        outcome.append(exc)


@pytest.fixture
def faults(tmp_path, monkeypatch):
    """The dev server's test hook file (set before the server starts): write a fault into it."""
    path = tmp_path / "faults.json"
    monkeypatch.setenv(FAULTS_ENV, str(path))
    return path


async def _until(path, timeout: float = 20) -> None:
    with anyio.fail_after(timeout):
        while not path.exists():
            await anyio.sleep(0.01)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_killed_after_it_did_the_work_is_noticed_at_once(sample_project, devserver_factory, transport,
                                                                      faults):
    """The server stalls after the work, inside the call (its reply started over streamable HTTP),
    then dies: the call fails with ReplyLost at once, not after the call timeout (60 s here)."""
    server = devserver_factory(sample_project, transport=transport)
    link = McpLink(server.url, ping_interval=60, backoff=(5, 5), call_timeout=60)
    outcome: list = []
    async with running(link):
        faults.write_text(json.dumps({"command": "status", "when": "after"}))
        with anyio.fail_after(20):  # a guard far below the call timeout, not a measurement
            async with anyio.create_task_group() as tg:
                tg.start_soon(_call_into, link, outcome)
                await _until(faults.with_name("faults.json.stalled"))
                server.process.kill()
    server.stop()
    assert len(outcome) == 1 and isinstance(outcome[0], ReplyLost), outcome


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_stalled_call_times_out_after_the_call_timeout(sample_project, devserver_factory, transport, faults):
    faults.write_text(json.dumps({"command": "status", "when": "before", "stall_s": 2}))
    server = devserver_factory(sample_project, transport=transport)
    link = McpLink(server.url, ping_interval=60, backoff=(5, 5), call_timeout=0.5)
    outcome: list = []
    async with running(link):
        await _call_into(link, outcome)
        assert faults.with_name("faults.json.stalled").exists()
    assert len(outcome) == 1 and isinstance(outcome[0], CallTimeout), outcome
    assert "no reply within 0.5 s" in str(outcome[0])


async def test_not_connected_raises_link_down():
    link = McpLink("http://127.0.0.1:9/sse")
    with pytest.raises(LinkDown):
        await link.call_tool("qms_inbox", {"user": "claude"})


async def test_nothing_listening_reports_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    link = McpLink(f"http://127.0.0.1:{port}/mcp", backoff=(0.05, 0.1))
    async with running(link, connect=False):
        states = link.states()
        down = await next_state(states, "down", timeout=10)
        assert down.reason == "connection refused" and down.attempt == 1
        again = await next_state(states, "down", timeout=10)
        assert again.attempt == 2
        await states.aclose()


async def test_a_server_that_never_answers_times_out(silent_server):
    """An edge case no real server shows on demand: TCP accepted, then silence."""
    link = McpLink(f"http://127.0.0.1:{silent_server}/sse", connect_timeout=0.5, backoff=(5, 5))
    async with running(link, connect=False):
        states = link.states()
        down = await next_state(states, "down", timeout=10)
        await states.aclose()
    assert "within 0.5 s" in down.reason


async def test_sse_url_against_a_streamable_server_says_so(sample_project, devserver_factory):
    server = devserver_factory(sample_project, transport="streamable-http")
    link = McpLink(server.url.replace("/mcp", "/sse"), backoff=(5, 5))
    async with running(link, connect=False):
        states = link.states()
        down = await next_state(states, "down", timeout=10)
        await states.aclose()
    assert down.reason.startswith("HTTP 404") and "/sse is SSE, /mcp is streamable HTTP" in down.reason


def test_describe_error_unwraps_groups():
    import httpx

    request = httpx.Request("GET", "http://u:pw@127.0.0.1:1/sse")
    response = httpx.Response(421, request=request)
    err = httpx.HTTPStatusError("bad", request=request, response=response)
    text = describe_error(ExceptionGroup("x", [ExceptionGroup("y", [err])]))
    assert text.startswith("HTTP 421") and "allowed hosts" in text and "pw" not in text
