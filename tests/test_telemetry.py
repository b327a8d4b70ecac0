"""Claude Code's telemetry and hooks through the gateway's receiver, on real parts: the real
OpenTelemetry SDK exporter (http/protobuf) and the SDK's own encoder turned into OTLP JSON, run in a
real container's network namespace (its peer address is the container's); hook payloads shaped as
Claude Code documents them, posted by busybox wget from inside real containers; a real
``qms-panel gateway`` process; the events it publishes applied to the board the panel follows."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from core.containers import ContainerManager
from core.gateway.calls_board import CallsBoard
from core.gateway.events import ActivityEvent, Who, parse_event
from core.settings import Settings
from core.telemetry.board import ActivityBoard
from core.telemetry.hooks import decode_hook
from core.telemetry.otlp import BadPayload, decode_logs
from support import fake_model
from support.docker_env import TEST_LABEL
from support.fake_model import FakeModel
from support.gateway import bridge_address

DEAD_UPSTREAM = "http://127.0.0.1:9/mcp"  # the receiver needs no QMS server

# Claude Code's log events, as its monitoring docs name them: the body is the event's name, and
# event.name, the session and the event's own fields are attributes; the resource claims a user.
EXPORTER = r"""
import json, sys, urllib.request, base64
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from google.protobuf import json_format

endpoint, encoding = sys.argv[1], sys.argv[2]
resource = Resource.create({"service.name": "claude-code", "user.id": "qa", "qms.agent": "qa"})
records = [
    ("claude_code.api_request", {"event.name": "api_request", "session.id": "s1", "model": "claude-sonnet-4",
                                 "input_tokens": 1200, "output_tokens": 640, "cost_usd": 0.03, "duration_ms": 2100}),
    ("claude_code.tool_result", {"event.name": "tool_result", "session.id": "s1", "tool_name": "Bash",
                                 "success": "true", "duration_ms": 830}),
    ("claude_code.no_such_event", {"event.name": "no_such_event"}),
]

class Keep:
    def __init__(self): self.batches = []
    def export(self, batch): self.batches.append(list(batch)); return 0
    def shutdown(self): pass
    def force_flush(self, timeout_millis=0): return True

if encoding == "protobuf":
    exporter = OTLPLogExporter(endpoint=endpoint)
else:
    exporter = Keep()
provider = LoggerProvider(resource=resource)
provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
logger = provider.get_logger("com.anthropic.claude_code")
for body, attributes in records:
    logger.emit(LogRecord(body=body, attributes=attributes, timestamp=1_700_000_000_000_000_000))
provider.force_flush()
if encoding == "json":
    message = encode_logs([r for batch in exporter.batches for r in batch])
    data = json_format.MessageToDict(message)
    def hexify(node):
        if isinstance(node, dict):
            return {k: (base64.b64decode(v).hex() if k in ("traceId", "spanId") and isinstance(v, str) else hexify(v))
                    for k, v in node.items()}
        return [hexify(v) for v in node] if isinstance(node, list) else node
    request = urllib.request.Request(endpoint, data=json.dumps(hexify(data)).encode(),
                                     headers={"Content-Type": "application/json"})
    print("HTTP", urllib.request.urlopen(request, timeout=10).status)
print("EXPORTED")
"""

HOOKS = [
    {"hook_event_name": "SessionStart", "session_id": "s1", "source": "startup", "cwd": "/projects"},
    {"hook_event_name": "PreToolUse", "session_id": "s1", "tool_name": "Bash",
     "tool_input": {"command": "rm -rf build"}},
    {"hook_event_name": "Notification", "session_id": "s1", "notification_type": "permission_prompt",
     "message": "Claude needs your permission to use Bash"},
]


def wget_post(manager: ContainerManager, container: str, url: str, body: str, kind: str = "application/json"):
    return manager.exec(container, ["wget", "-q", "-O", "-", "--header", f"Content-Type: {kind}",
                                    "--post-data", body, url], timeout=30)


def wait_for(gw, predicate, what: str, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = gw.events()
        if predicate(events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"no {what} on the gateway's feed: {gw.events()[-5:]}")


def activity(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("kind") == "activity"]


@pytest.mark.docker
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_the_real_exporters_logs_reach_the_board_as_the_containers_agent(sample_project, gateway_factory,
                                                                       agent_container, docker_client, encoding):
    gw = gateway_factory(sample_project, DEAD_UPSTREAM)
    manager, row = agent_container
    pid = docker_client.api.inspect_container(row.id)["State"]["Pid"]
    done = subprocess.run(["nsenter", "-t", str(pid), "-n", sys.executable, "-c", EXPORTER,
                           f"http://{gw.telemetry_listen}/v1/logs", encoding], capture_output=True, text=True,
                          timeout=60)
    assert "EXPORTED" in done.stdout, done.stdout + done.stderr
    events = wait_for(gw, lambda ev: len(activity(ev)) >= 2, "activity events")
    got = activity(events)
    assert [e["name"] for e in got] == ["claude_code.api_request", "claude_code.tool_result"]
    for e in got:  # the resource says qa; the peer is claude's container
        assert e["who"]["agent"] == "claude" and e["who"]["container"] == row.name and e["source"] == "otlp-log"
    board = CallsBoard()
    for e in events:
        board.apply(parse_event(e))
    claude = board.view(datetime.fromisoformat(got[-1]["time"])).activity.agents["claude"]
    assert claude.state == "working" and claude.last_tool == "Bash"
    assert claude.tokens == 1840 and claude.cost_usd == pytest.approx(0.03)
    states = [e for e in events if e.get("kind") == "gateway"]
    assert states[-1]["telemetry_counts"].get("ignored") == 1  # the unknown event, counted
    assert states[-1]["telemetry_listen"] == gw.telemetry_listen


@pytest.mark.docker
def test_hooks_from_a_container_turn_its_agent_waiting_then_working_then_idle(sample_project, gateway_factory,
                                                                              agent_container):
    gw = gateway_factory(sample_project, DEAD_UPSTREAM)
    manager, row = agent_container
    url = f"http://host.docker.internal:{gw.telemetry_listen.rsplit(':', 1)[1]}/hooks"
    for hook in HOOKS:
        done = wget_post(manager, row.name, url, json.dumps(hook))
        assert done.output.strip() == "{}", done.output  # a hook is never told to block or deny
    events = wait_for(gw, lambda ev: len(activity(ev)) >= 3, "hook events")
    board = CallsBoard()
    for e in events:
        board.apply(parse_event(e))
    at = datetime.fromisoformat(activity(events)[-1]["time"])
    claude = board.view(at).activity.agents["claude"]
    assert claude.state == "waiting" and claude.waiting_tool == "Bash(rm -rf build)"
    assert claude.waiting_message == "Claude needs your permission to use Bash"
    for hook in ({"hook_event_name": "PostToolUse", "tool_name": "Bash", "tool_input": {"command": "rm -rf build"}},
                 {"hook_event_name": "Stop", "session_id": "s1", "stop_hook_active": False}):
        wget_post(manager, row.name, url, json.dumps(hook))
        events = wait_for(gw, lambda ev, n=len(activity(events)) + 1: len(activity(ev)) >= n, hook["hook_event_name"])
        board.apply(parse_event(activity(events)[-1]))
        state = board.view(datetime.fromisoformat(activity(events)[-1]["time"])).activity.agents["claude"].state
        assert state == ("working" if hook["hook_event_name"] == "PostToolUse" else "idle")
    # qms-panel watch says them too, agent first, from the gateway's buffer
    watch = subprocess.Popen([sys.executable, "-m", "tui.cli", "watch", "--from-start", *gw.flags()],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in watch.stdout:
            lines.append(line)
            if "Stop" in line:
                break
    finally:
        watch.kill()
        watch.wait()
    said = [ln for ln in lines if " claude " in f" {ln} " and ("Notification" in ln or "Stop" in ln)]
    assert len(said) == 2 and "Claude needs your permission to use Bash" in said[0], lines


@pytest.mark.docker
def test_telemetry_from_other_containers_is_refused(sample_project, gateway_factory, strangers):
    gw = gateway_factory(sample_project, DEAD_UPSTREAM)
    url = f"http://host.docker.internal:{gw.telemetry_listen.rsplit(':', 1)[1]}/hooks"
    for name in strangers.names:
        done = wget_post(strangers.manager, name, url, json.dumps(HOOKS[2]))
        assert "403" in done.output, done.output
    events = wait_for(gw, lambda ev: any(e.get("kind") == "gateway" and e["telemetry_counts"].get("refused_peer") == 2
                                         for e in ev), "two refusals counted")
    assert not activity(events)


def test_bad_payloads_are_refused_or_ignored_and_counted_and_it_keeps_serving(sample_project, gateway_factory):
    from core.devserver.server import free_port

    gw = gateway_factory(sample_project, DEAD_UPSTREAM, listen=f"127.0.0.1:{free_port()}", allow_host=True)
    base = f"http://{gw.telemetry_listen}"
    good = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"body": {"stringValue": "claude_code.api_error"},
         "attributes": [{"key": "event.name", "value": {"stringValue": "api_error"}},
                        {"key": "status_code", "value": {"stringValue": "529"}},
                        {"key": "error", "value": {"stringValue": "overloaded"}}]}]}]}]}).encode()
    with httpx.Client(base_url=base, trust_env=False, timeout=10) as client:
        assert client.post("/v1/logs", content=b"\x0a\x05\x12\x03", headers={"Content-Type": "application/x-protobuf"}
                           ).status_code == 400  # truncated protobuf
        assert client.post("/v1/logs", content=good, headers={"Content-Type": "text/plain"}).status_code == 415
        assert client.post("/v1/logs", content=b"x" * (10 * 1024 * 1024),
                           headers={"Content-Type": "application/x-protobuf"}).status_code == 413
        bomb = gzip.compress(b"\x00" * (20 * 1024 * 1024))
        assert client.post("/v1/logs", content=bomb, headers={"Content-Type": "application/x-protobuf",
                                                              "Content-Encoding": "gzip"}).status_code == 413
        assert client.post("/hooks", content=b'{"hook_event_name": "NoSuchHook"}',
                           headers={"Content-Type": "application/json"}).status_code == 200
        assert client.post("/hooks", content=b"[1, 2]", headers={"Content-Type": "application/json"}).status_code == 400
        assert client.get("/v1/logs").status_code == 404
        ok = client.post("/v1/logs", content=gzip.compress(good),
                         headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert ok.status_code == 200 and ok.json() == {}
    events = wait_for(gw, lambda ev: bool(activity(ev)), "the good payload after the bad ones")
    assert activity(events)[0]["who"]["host"] and activity(events)[0]["summary"] == "529 overloaded"
    counts = [e for e in events if e.get("kind") == "gateway"][-1]["telemetry_counts"]
    assert counts == {"bad_body": 2, "bad_type": 1, "too_large": 2, "ignored": 1, "not_found": 1}, counts


# --- the decoders and the board on their own (fixed times) -------------------------------------

def test_decoders_bound_what_an_agent_sends_and_keep_no_prompt():
    record = {"body": {"stringValue": "claude_code.user_prompt"},
              "attributes": [{"key": "event.name", "value": {"stringValue": "user_prompt"}},
                             {"key": "prompt", "value": {"stringValue": "my secret plan"}},
                             {"key": "api_key", "value": {"stringValue": "sk-123"}}]
              + [{"key": f"k{i}", "value": {"stringValue": "v" * 1000}} for i in range(50)]}
    body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}).encode()
    item = decode_logs(body, "application/json").items[0]
    assert item.attributes["prompt"].startswith("(not kept") and item.attributes["api_key"] == "***"
    assert len(item.attributes) <= 24 and all(len(v) <= 200 for v in item.attributes.values())
    assert decode_logs(body, "application/json", prompts=True).items[0].attributes["prompt"] == "my secret plan"
    with pytest.raises(BadPayload, match="not an OTLP"):
        decode_logs(b'{"resourceLogs": 5}', "application/json")
    assert decode_hook(b'{"hook_event_name": "Other"}') is None
    with pytest.raises(BadPayload, match="hook_event_name"):
        decode_hook(b'{"hook": 1}')


def hook(name: str, at: datetime, agent: str = "claude", container_id: str = "c1", **attributes) -> ActivityEvent:
    return ActivityEvent(time=at, who=Who(peer="172.17.0.5", agent=agent, container="qms-agent-" + agent,
                                          container_id=container_id),
                         source="hook", name=name, attributes={k: str(v) for k, v in attributes.items()})


def api(at: datetime, tokens: int, cost: float, container_id: str = "c1") -> ActivityEvent:
    event = hook("claude_code.api_request", at, container_id=container_id, input_tokens=tokens, cost_usd=cost)
    return event.model_copy(update={"source": "otlp-log"})


def test_the_board_derives_states_totals_and_the_minutes_at_a_time():
    t0 = datetime(2026, 12, 5, 23, 50, tzinfo=UTC)
    board = ActivityBoard()
    assert board.view(t0).agents == {}
    board.apply(api(t0, 1000, 0.01))
    board.apply(hook("PreToolUse", t0 + timedelta(seconds=1), tool_name="Bash", tool="Bash(make)"))
    view = board.view(t0 + timedelta(seconds=2)).agents["claude"]
    assert view.state == "working" and view.tokens == 1000 and view.per_minute[-1] == 1000
    assert board.view(t0 + timedelta(seconds=40)).agents["claude"].state == "idle"  # nothing for 30 s
    board.apply(hook("Notification", t0 + timedelta(seconds=41), notification_type="permission_prompt",
                     message="needs permission"))
    waiting = board.view(t0 + timedelta(minutes=5)).agents["claude"]
    assert waiting.state == "waiting" and waiting.waiting_tool == "Bash(make)"  # a wait does not time out
    board.apply(hook("PostToolUse", t0 + timedelta(minutes=6), tool_name="Bash"))
    assert board.view(t0 + timedelta(minutes=6)).agents["claude"].waiting_tool is None
    board.apply(api(t0 + timedelta(minutes=11), 500, 0.02, container_id="c2"))  # a new container, a new day
    later = board.view(t0 + timedelta(minutes=11)).agents["claude"]
    assert (later.tokens, later.tokens_today, later.cost_usd_today) == (500, 500, 0.02)
    assert sum(later.per_minute) == 1500 and len(later.per_minute) == 30
    assert sum(board.view(t0 + timedelta(minutes=35)).agents["claude"].per_minute) == 500  # t0 is 35 min back
    assert sum(board.view(t0 + timedelta(minutes=45)).agents["claude"].per_minute) == 0
    board.apply(hook("claude_code.api_error", t0 + timedelta(minutes=12)).model_copy(update={"source": "otlp-log"}))
    assert board.view(t0 + timedelta(minutes=13)).agents["claude"].api_errors_10m == 1
    assert board.view(t0 + timedelta(minutes=23)).agents["claude"].api_errors_10m == 0
    board.apply(hook("SessionEnd", t0 + timedelta(minutes=24), reason="exit"))
    assert board.view(t0 + timedelta(minutes=24)).agents["claude"].state == "stopped"
    board.apply(ActivityEvent(time=t0, who=Who(peer="127.0.0.1", host=True), source="hook", name="Stop"))
    assert board.view(t0).ignored == 1


@pytest.mark.slow
@pytest.mark.docker
def test_the_real_claude_code_in_the_real_image_reports_to_the_receiver(sample_project, gateway_factory, agent_image,
                                                                        unique_prefix, docker_client):
    """qms-panel's launch environment and the image's baked hooks, with Claude Code itself: one turn
    against a stand-in model (one Read, then an answer); its hooks and its OTLP logs and metrics
    reach the gateway as this container's agent, and the board says what it did and spent."""
    gw = gateway_factory(sample_project, DEAD_UPSTREAM)
    settings = Settings(project_root=sample_project, image=agent_image, container_prefix=unique_prefix,
                        telemetry_listen=gw.telemetry_listen)
    manager = ContainerManager(settings, client=docker_client, extra_labels={TEST_LABEL: "1"})
    with FakeModel(bridge_address()) as model:
        try:
            row = manager.launch("claude", ["env", "ANTHROPIC_API_KEY=sk-fake-for-tests",
                                            f"ANTHROPIC_BASE_URL={model.url}", "claude", "-p", "read the hostname"])
            exit_code = docker_client.containers.get(row.id).wait(timeout=120)["StatusCode"]
            log = docker_client.containers.get(row.id).logs().decode(errors="replace")
            assert exit_code == 0 and fake_model.ANSWER in log, log  # its last screen, in the log
            events = wait_for(gw, lambda ev: {"Stop", "claude_code.api_request"} <= {e["name"] for e in activity(ev)},
                              "the turn's hooks and logs", timeout=60)
        finally:
            manager.remove("claude", remove_volume=True)
    got = activity(events)
    names = {e["name"] for e in got}
    assert {"SessionStart", "PostToolUse", "Stop", "claude_code.api_request", "claude_code.tool_result"} <= names, names
    assert all(e["who"]["agent"] == "claude" and e["who"]["container"] == row.name for e in got)
    assert any(p.startswith("/v1/messages") for p in model.requests)
    board = CallsBoard()
    for e in events:
        board.apply(parse_event(e))
    claude = board.view(datetime.fromisoformat(got[-1]["time"])).activity.agents["claude"]
    assert claude.last_tool == "Read" and claude.tokens >= 2 * 1240, claude  # two turns of the stand-in's usage
