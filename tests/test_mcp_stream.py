"""The MCP stream: typed events, the bounded buffer, subscribers, and no credentials anywhere."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

import anyio
import pytest

from core.mcp_link import McpLink
from core.mcp_stream import McpStream, redact_headers, redact_text, redact_url

SECRETS = ("s3cr3t-pass", "tok-abc123", "key-xyz789", "bearer-qwe456")


@asynccontextmanager
async def running(link: McpLink):
    async with anyio.create_task_group() as tg:
        tg.start_soon(link.run)
        with anyio.fail_after(20):
            await link.wait_connected(20)
        yield link
        tg.cancel_scope.cancel()


def request(i: int, method: str = "ping") -> dict:
    return {"jsonrpc": "2.0", "id": i, "method": method}


def response(i: int) -> dict:
    return {"jsonrpc": "2.0", "id": i, "result": {}}


# --- the buffer ----------------------------------------------------------------------------


def test_buffer_keeps_the_newest_events_only():
    stream = McpStream(maxlen=10)
    for i in range(25):
        stream.record_message("out", request(i))
    events = stream.snapshot()
    assert len(events) == len(stream) == 10
    assert [e.id for e in events] == list(range(15, 25))
    assert stream.total == 25


def test_response_is_matched_to_its_request():
    stream = McpStream()
    arguments = {"doc_id": "CR-001", "user": "claude"}
    stream.record_message("out", {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                  "params": {"name": "qms_status", "arguments": arguments}})
    stream.record_message("in", {"jsonrpc": "2.0", "id": 7, "result": {
        "content": [{"type": "text", "text": "Document: CR-001"}], "isError": False}})
    stream.record_message("in", {"jsonrpc": "2.0", "id": 8, "error": {"code": -32601, "message": "nope"}})
    stream.record_message("out", {"jsonrpc": "2.0", "method": "notifications/initialized"})
    call, result, error, note = stream.snapshot()
    assert (call.kind, call.direction, call.method, call.id) == ("request", "out", "tools/call", 7)
    assert "qms_status(doc_id='CR-001', user='claude')" in call.summary
    assert (result.kind, result.method, result.id) == ("response", "tools/call", 7)
    assert result.latency_ms is not None and result.latency_ms >= 0
    assert "Document: CR-001" in result.summary
    assert (error.kind, error.latency_ms) == ("error", None)
    assert note.kind == "notification" and note.id is None
    assert all(e.size > 0 for e in (call, result, error, note))
    assert [e.seq for e in stream.snapshot()] == [1, 2, 3, 4]


def test_unanswered_requests_do_not_grow_memory():
    stream = McpStream(maxlen=5, pending_max=50)
    for i in range(500):
        stream.record_message("out", request(i))
    assert len(stream._pending) == 50


async def test_slow_subscriber_drops_oldest_and_counts():
    stream = McpStream()
    sub = stream.subscribe(maxlen=5)
    for i in range(12):
        stream.record_message("out", request(i))
    got = []
    with anyio.fail_after(5):
        while len(got) < 5:
            got.append(await sub.__anext__())
    assert [e.id for e in got] == [7, 8, 9, 10, 11]
    assert sub.dropped == 7
    sub.close()
    assert stream._subscribers == set()


async def test_subscriber_sees_new_events_live():
    stream = McpStream()
    seen = []

    async def reader():
        async with stream.subscribe() as sub:
            async for event in sub:
                seen.append(event.id)
                if len(seen) == 3:
                    return

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.sleep(0)
            for i in range(3):
                stream.record_message("out", request(i))
                await anyio.sleep(0)
    assert seen == [0, 1, 2]


# --- redaction -------------------------------------------------------------------------------


def test_redaction_helpers():
    assert redact_url("http://bob:s3cr3t-pass@host:8000/sse?token=tok-abc123&x=1") == \
        "http://***@host:8000/sse?token=***&x=1"
    assert redact_url("http://host/mcp?api_key=key-xyz789") == "http://host/mcp?api_key=***"
    text = "GET http://bob:s3cr3t-pass@h/sse?access_token=tok-abc123 with Authorization: Bearer bearer-qwe456"
    cleaned = redact_text(text)
    assert not any(s in cleaned for s in SECRETS)
    assert redact_headers({"Authorization": "Bearer x", "X-API-Key": "k", "X-QMS-Identity": "claude"}) == \
        {"Authorization": "***", "X-API-Key": "***", "X-QMS-Identity": "claude"}


def test_secrets_in_payloads_are_redacted():
    stream = McpStream()
    stream.record_message("in", {"jsonrpc": "2.0", "id": 1, "result": {
        "content": [{"type": "text", "text": "see http://u:s3cr3t-pass@x/?token=tok-abc123"}]}})
    dumped = json.dumps([e.model_dump(mode="json") for e in stream.snapshot()])
    assert "s3cr3t-pass" not in dumped and "tok-abc123" not in dumped


# --- through the real link -------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_stream_stays_bounded_on_a_real_link(sample_project, devserver_factory, transport):
    server = devserver_factory(sample_project, transport=transport)
    stream = McpStream(maxlen=40)
    link = McpLink(server.url, stream=stream, ping_interval=60)
    async with running(link):
        sub = stream.subscribe(maxlen=8)
        for _ in range(20):
            with anyio.fail_after(20):
                await link.call_tool("qms_status", {"doc_id": "CR-001", "user": "claude"})
    events = stream.snapshot()
    assert len(events) == 40 < stream.total
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + 40))
    assert len(sub._queue) == 8 and sub.dropped > 0
    calls = [e for e in events if e.kind == "request" and e.method == "tools/call"]
    answers = [e for e in events if e.kind == "response" and e.method == "tools/call"]
    assert calls and answers and all(e.latency_ms is not None for e in answers)
    assert any(e.kind == "sse-message" for e in events)


async def test_sse_endpoint_event_is_recorded(devserver):
    link = McpLink(devserver.url, ping_interval=60)
    async with running(link):
        pass
    kinds = [e.kind for e in link.stream.snapshot()]
    assert kinds[0] == "sse-endpoint"
    assert link.stream.snapshot()[0].payload.startswith("/messages/?session_id=")
    assert kinds[1:4] == ["request", "sse-message", "response"]  # initialize, its SSE event, its result


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_no_credentials_in_events_or_state(sample_project, devserver_factory, transport):
    server = devserver_factory(sample_project, transport=transport)
    url = server.url.replace("http://", "http://bob:s3cr3t-pass@") + "?token=tok-abc123"
    headers = {"Authorization": "Bearer bearer-qwe456", "X-API-Key": "key-xyz789"}
    link = McpLink(url, headers=headers, ping_interval=60)
    async with running(link):
        await link.call_tool("qms_workspace", {"user": "claude"})
    dumped = json.dumps([e.model_dump(mode="json") for e in link.stream.snapshot()]) + link.state.model_dump_json()
    assert link.stream.total > 4
    for secret in SECRETS:
        assert secret not in dumped
