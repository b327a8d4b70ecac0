"""The gateway on real parts: real containers (the busybox test image, wget inside them) calling
through a real ``qms-panel gateway`` process to the real dev server, over both upstream transports;
SDK clients over SSE and streamable HTTP; identity refusals; the upstream killed, stalled and back;
the feed read by ``qms-panel watch``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.containers import ContainerManager
from core.settings import Settings
from support.docker_env import TEST_LABEL
from support.gateway import ROOT, call_body, container_post, tool_text

pytestmark = pytest.mark.docker

UPSTREAMS = ["sse", "streamable-http"]


def server_saw(server, user: str) -> bool:
    return f"user={user}" in server.log_text()


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_a_container_calls_as_its_agent_and_never_as_another(sample_project, devserver_factory, gateway_factory,
                                                              agent_container, upstream):
    server = devserver_factory(sample_project, transport=upstream)
    gw = gateway_factory(sample_project, server.url)
    manager, row = agent_container

    done = container_post(manager, row.name, gw.port, call_body("qms_checkout", doc_id="CR-002", user="claude"))
    assert tool_text(done.output).startswith("Checked out: CR-002"), done.output
    assert (sample_project / ".claude/users/claude/workspace/CR-002.md").exists()

    refused = container_post(manager, row.name, gw.port, call_body("qms_inbox", 2, user="qa"))
    text = tool_text(refused.output)
    assert text.startswith("IDENTITY MISMATCH:") and "'claude'" in text and "user='qa'" in text, refused.output
    time.sleep(0.3)
    assert not server_saw(server, "qa"), "a call as another agent reached the server"

    events = gw.events()
    calls = [e for e in events if e.get("kind") == "mcp" and e.get("direction") == "out"]
    assert [(e["tool"], e["outcome"], e["who"]["agent"], e["who"]["container"]) for e in calls] == [
        ("qms_checkout", "ok", "claude", row.name), ("qms_inbox", "identity", "claude", row.name)]
    assert calls[0]["doc_id"] == "CR-002" and calls[0]["latency_ms"] > 0
    assert any(e.get("kind") == "peer" and e["state"] == "refused" and "user='qa'" in e["reason"] for e in events)


def test_the_server_sees_the_containers_identity_headers(sample_project, devserver_factory, gateway_factory,
                                                         agent_container):
    """The dev server enforces X-QMS-Identity like the real one: with the header 'claude', the
    instance is the container's name, and a call reaches it in enforced mode."""
    server = devserver_factory(sample_project, transport="streamable-http")
    gw = gateway_factory(sample_project, server.url)
    manager, row = agent_container
    body = call_body("qms_status", doc_id="CR-001", user="claude")
    done = manager.exec(row.name, ["wget", "-q", "-O", "-", "--header", "Content-Type: application/json",
                                   "--header", "Accept: application/json, text/event-stream",
                                   "--header", "X-QMS-Identity: qa", "--header", "X-QMS-Instance: forged",
                                   "--post-data", body, f"http://host.docker.internal:{gw.port}/mcp"])
    assert "Document: CR-001" in tool_text(done.output), done.output  # with qa's header it would be a MISMATCH
    log = server.log_text()
    assert f"Identity 'claude' registered (instance {row.name[:8]})" in log, log
    assert "forged" not in log


def test_peers_that_are_not_this_projects_containers_are_refused(sample_project, devserver_factory,
                                                                 gateway_factory, strangers):
    server = devserver_factory(sample_project, transport="streamable-http")
    gw = gateway_factory(sample_project, server.url)
    body = call_body("qms_inbox", user="claude")
    for name in strangers.names:
        done = container_post(strangers.manager, name, gw.port, body)
        assert "403" in done.output and "Checked" not in done.output and "Inbox" not in done.output, done.output
    reasons = [e["reason"] for e in gw.events() if e.get("kind") == "peer" and e["state"] == "refused"]
    assert any("belongs to the qms-panel project at" in r and str(strangers.root) in r for r in reasons), reasons
    assert any("was not made by qms-panel" in r for r in reasons), reasons
    assert not server_saw(server, "claude")


def test_a_second_container_for_the_same_agent_is_refused(sample_project, devserver_factory, gateway_factory,
                                                          agent_container, test_image, unique_prefix, docker_client):
    server = devserver_factory(sample_project, transport="streamable-http")
    gw = gateway_factory(sample_project, server.url)
    manager, first = agent_container
    twin = ContainerManager(Settings(project_root=sample_project, image=test_image,
                                     container_prefix=unique_prefix + "twin-"),
                            client=docker_client, extra_labels={TEST_LABEL: "1"})
    second = twin.launch("claude", command=["sleep", "3600"])
    try:
        done = container_post(twin, second.name, gw.port, call_body("qms_inbox", user="claude"))
        assert "403" in done.output, done.output
        reasons = [e["reason"] for e in gw.events() if e.get("kind") == "peer" and e["state"] == "refused"]
        assert any(f"already bound to container {first.name}" in r for r in reasons), reasons
        ok = container_post(manager, first.name, gw.port, call_body("qms_inbox", user="claude"))
        assert tool_text(ok.output).startswith("Inbox"), ok.output
    finally:
        twin.remove("claude", remove_volume=True)


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_sdk_clients_over_both_agent_transports_on_loopback(sample_project, devserver_factory, gateway_factory,
                                                                  upstream):
    """A host client (the operator's own tools) through the gateway, only with gateway_allow_host:
    the MCP SDK's own clients, SSE and streamable HTTP, see the server's tools and texts unchanged."""
    from mcp import ClientSession
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamablehttp_client

    from support.devserver import free_port

    server = devserver_factory(sample_project, transport=upstream)
    closed = gateway_factory(sample_project, server.url, listen=f"127.0.0.1:{free_port()}")
    with pytest.raises(Exception):
        async with sse_client(f"http://127.0.0.1:{closed.port}/sse", timeout=5) as streams:
            pass
    gw = gateway_factory(sample_project, server.url, listen=f"127.0.0.1:{free_port()}", allow_host=True)
    direct_texts = []
    async with streamablehttp_client(server.url) if upstream == "streamable-http" else sse_client(server.url) as st:
        async with ClientSession(st[0], st[1]) as session:
            await session.initialize()
            direct_tools = sorted(t.name for t in (await session.list_tools()).tools)
            direct_texts.append((await session.call_tool("qms_status", {"doc_id": "SOP-001", "user": "lead"})).content[0].text)
    for client in (sse_client(f"http://127.0.0.1:{gw.port}/sse"), streamablehttp_client(f"http://127.0.0.1:{gw.port}/mcp")):
        async with client as st:
            async with ClientSession(st[0], st[1]) as session:
                await session.initialize()
                assert sorted(t.name for t in (await session.list_tools()).tools) == direct_tools
                text = (await session.call_tool("qms_status", {"doc_id": "SOP-001", "user": "lead"})).content[0].text
                assert text == direct_texts[0]
    hosts = [e for e in gw.events() if e.get("kind") == "mcp" and e.get("tool") == "qms_status" and e["direction"] == "out"]
    assert len(hosts) == 2 and all(e["who"]["host"] and e["who"]["agent"] is None for e in hosts)


def test_upstream_down_is_answered_at_once_and_comes_back(sample_project, devserver_factory, gateway_factory,
                                                          agent_container):
    server = devserver_factory(sample_project, transport="streamable-http")
    gw = gateway_factory(sample_project, server.url)
    manager, row = agent_container
    body = call_body("qms_inbox", user="claude")
    assert tool_text(container_post(manager, row.name, gw.port, body).output).startswith("Inbox")
    server.stop()
    started = time.monotonic()
    down = tool_text(container_post(manager, row.name, gw.port, body).output)
    assert down.startswith("ERROR the QMS MCP server is unreachable"), down
    assert time.monotonic() - started < 8  # answered, not hung until the call timeout
    server.start()
    assert tool_text(container_post(manager, row.name, gw.port, body).output).startswith("Inbox")
    states = [e["upstream_state"] for e in gw.events() if e.get("kind") == "gateway"]
    assert "down" in states and states[-1] == "up"


def test_bare_calls_skip_the_handshake_until_the_server_wants_sessions(sample_project, devserver_factory,
                                                                        gateway_factory, agent_container):
    """A stateless server is initialized once on a wget agent's behalf, not once a call; when it comes
    back with sessions, the next bare call is refused by it, and the gateway initializes and retries."""
    server = devserver_factory(sample_project, transport="streamable-http")
    gw = gateway_factory(sample_project, server.url)
    manager, row = agent_container
    body = call_body("qms_inbox", user="claude")
    for _ in range(3):
        assert tool_text(container_post(manager, row.name, gw.port, body).output).startswith("Inbox")
    # initialize, initialized, then one POST a call (three a call if every bare call shook hands)
    assert server.log_path.read_text().count('"POST /mcp HTTP/1.1"') == 2 + 3
    server.stop()
    stateful = devserver_factory(sample_project, transport="streamable-http", port=server.port, stateful=True)
    for _ in range(2):
        assert tool_text(container_post(manager, row.name, gw.port, body).output).startswith("Inbox")
    calls = [e for e in gw.events() if e.get("kind") == "mcp" and e["direction"] == "out"]
    assert [c["outcome"] for c in calls[-5:]] == ["ok"] * 5
    log = stateful.log_path.read_text()
    assert log.count('"POST /mcp HTTP/1.1" 400') == 1  # the first bare call, refused, then retried with a session


def test_a_stalled_upstream_is_answered_within_the_call_timeout(sample_project, silent_server, gateway_factory,
                                                                agent_container):
    gw = gateway_factory(sample_project, f"http://127.0.0.1:{silent_server}/mcp", call_timeout="2s")
    manager, row = agent_container
    done = container_post(manager, row.name, gw.port, call_body("qms_inbox", user="claude"), timeout=25)
    assert "unreachable" in tool_text(done.output) and not done.timed_out, done.output
    calls = [e for e in gw.events() if e.get("kind") == "mcp" and e["direction"] == "out"]
    assert calls[-1]["outcome"] == "upstream-down"


def test_watch_follows_the_feed_and_survives_a_gateway_restart(sample_project, devserver_factory, gateway_factory,
                                                               agent_container):
    server = devserver_factory(sample_project, transport="streamable-http")
    gw = gateway_factory(sample_project, server.url)
    manager, row = agent_container
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    watch = subprocess.Popen([sys.executable, "-m", "tui.cli", "watch", "--json", *gw.flags()], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[dict] = []
    threading.Thread(target=lambda: seen.extend(json.loads(line) for line in watch.stdout if line.strip()),
                     daemon=True).start()
    try:
        time.sleep(2)
        container_post(manager, row.name, gw.port, call_body("qms_inbox", user="claude"))
        gw.stop()
        gw.start()
        container_post(manager, row.name, gw.port, call_body("qms_workspace", 2, user="claude"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(e.get("tool") == "qms_workspace" for e in seen):
            time.sleep(0.2)
        tools = [(e["tool"], e["outcome"]) for e in seen if e.get("kind") == "mcp" and e["direction"] == "out"]
        assert ("qms_inbox", "ok") in tools and ("qms_workspace", "ok") in tools, seen
        assert any(e.get("kind") == "gap" and "restarted" in e["reason"] for e in seen), seen
    finally:
        watch.terminate()
        watch.wait(10)
        err = watch.stderr.read()
    assert "the feed is back" in err and "Traceback" not in err


def test_watch_with_a_wrong_token_says_so_in_one_line(sample_project, devserver_factory, gateway_factory, tmp_path):
    server = devserver_factory(sample_project, transport="streamable-http")
    gw = gateway_factory(sample_project, server.url)
    forged = tmp_path / "forged.token"
    forged.write_text("not-the-token\n")
    forged.chmod(0o600)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    watch = subprocess.Popen([sys.executable, "-m", "tui.cli", "watch", *gw.flags(), "--feed-token-file", str(forged)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    watch.terminate()
    _, err = watch.communicate(timeout=10)
    assert "refused the token" in err and err.count("refused the token") == 1 and "Traceback" not in err


def test_gateway_cannot_bind_says_one_line(sample_project, gateway_factory):
    import socket

    busy = socket.create_server(("127.0.0.1", 0))
    try:
        gw = gateway_factory(sample_project, "http://127.0.0.1:9/mcp", listen=f"127.0.0.1:{busy.getsockname()[1]}",
                             start=False)
        done = subprocess.run([sys.executable, "-m", "tui.cli", "gateway", *gw.flags()], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=30)
    finally:
        busy.close()
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cannot listen on 127.0.0.1:" in done.stderr


SSE_CLIENT = """
import asyncio, sys
from mcp import ClientSession
from mcp.client.sse import sse_client

async def main(url):
    async with sse_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            mine = await session.call_tool("qms_workspace", {"user": "claude"})
            other = await session.call_tool("qms_workspace", {"user": "qa"})
            print("MINE", mine.content[0].text.splitlines()[0])
            print("OTHER", other.isError, other.content[0].text)

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_an_sse_agent_in_a_containers_network_namespace(sample_project, devserver_factory, gateway_factory,
                                                        agent_container, docker_client, upstream):
    """The MCP SDK's own SSE client, run in the container's network namespace (nsenter: its peer
    address is the container's, so the gateway binds it to the container's agent; the busybox image
    has no SSE client, and an SDK client is what Claude Code's transport speaks)."""
    server = devserver_factory(sample_project, transport=upstream)
    gw = gateway_factory(sample_project, server.url)
    manager, row = agent_container
    pid = docker_client.api.inspect_container(row.id)["State"]["Pid"]
    done = subprocess.run(["nsenter", "-t", str(pid), "-n", sys.executable, "-c", SSE_CLIENT, f"http://{gw.listen}/sse"],
                          capture_output=True, text=True, timeout=60)
    assert "MINE Workspace for claude:" in done.stdout, done.stdout + done.stderr
    assert "OTHER True IDENTITY MISMATCH:" in done.stdout
    assert not server_saw(server, "qa")
    peers = [e for e in gw.events() if e.get("kind") == "peer" and e["state"] == "connected"]
    assert peers and peers[0]["who"]["container"] == row.name and peers[0]["transport"] == "sse"


async def test_the_feed_on_a_unix_socket_and_its_token(sample_project, devserver_factory, gateway_factory, tmp_path):
    """The feed served on a unix socket (mode 0600), read by the real client; the token file it made
    is private; a reader with no token is told in one line where the gateway keeps it."""
    from core.errors import FeedDown
    from core.gateway.feed_client import FeedClient

    server = devserver_factory(sample_project, transport="streamable-http")
    sock = tmp_path / "feed.sock"
    gw = gateway_factory(sample_project, server.url, start=False)
    gw.feed_listen = f"unix:{sock}"
    gw.start()
    assert oct(sock.stat().st_mode)[-3:] == "600"
    token = gw.state_dir / "gateway-feed.token"
    assert oct(token.stat().st_mode)[-3:] == "600"
    state = await FeedClient(gw.feed_listen, token).state()
    assert state.listen == gw.listen and state.upstream == server.url
    with pytest.raises(FeedDown, match="no feed token at"):
        await FeedClient(gw.feed_listen, tmp_path / "none.token").state()
