"""``qms-panel ping / checkout / checkin / repair / status`` through the real command line, with --json:
outcomes as one line and exit codes, a checkout that never overwrites a copy, and bad input
(timeouts, over-long ids, call timeouts) as usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import anyio
import pytest

from core.containers import ContainerManager
from core.devserver.server import FAULTS_ENV
from core.layout import workspace_dir
from core.qms_files import displaced_dir, find_meta
from core.settings import Settings
from support.devserver import free_port
from support.docker_env import TEST_LABEL
from test_qms_ops import connected


def qms_panel(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, timeout=timeout)


def op(command: str, doc: str, agent: str, root, url: str, *extra: str) -> subprocess.CompletedProcess:
    return qms_panel(command, doc, "--agent", agent, "--project-root", str(root), "--mcp-url", url, *extra)


def test_checkout_and_checkin_for_an_agent(sample_project, devserver_factory):
    server = devserver_factory(sample_project, transport="streamable-http")  # the other tests use SSE
    done = op("checkout", "CR-002", "claude", sample_project, server.url, "--json")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "ok" and outcome["operation"] == "checkout"
    assert outcome["workspace"]["path"].endswith(".claude/users/claude/workspace/CR-002.md")
    assert (workspace_dir(sample_project, "claude") / "CR-002.md").is_file()

    done = op("checkin", "CR-002", "claude", sample_project, server.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "- the server said: Checked in: CR-002 (v0.1)"
    assert done.stdout.splitlines()[-1] == "Checked in: CR-002 for claude"
    assert find_meta(sample_project, "CR-002")["checked_out"] is False


def test_refusal_exits_1_with_the_reason(sample_project, devserver):
    done = op("checkout", "CR-001", "lead", sample_project, devserver.url, "--json")
    assert done.returncode == 1
    outcome = json.loads(done.stdout)
    assert (outcome["status"], outcome["reason"]) == ("refused", "Error: CR-001 is checked out by claude")
    assert done.stderr.strip() == "qms-panel: Checkout refused: CR-001 for lead: Error: CR-001 is checked out by claude"


def test_missing_copy_checkin_refused_then_repair(sample_project, devserver):
    (workspace_dir(sample_project, "claude") / "CR-001.md").unlink()
    done = op("checkin", "CR-001", "claude", sample_project, devserver.url, "--json")
    assert done.returncode == 1
    assert "repair" in json.loads(done.stdout)["reason"]

    done = op("repair", "CR-001", "claude", sample_project, devserver.url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("- copied QMS/CR/CR-001/CR-001-draft.md to .claude/users/claude/workspace/CR-001.md")
    assert lines[2].startswith("- checked in CR-001 as claude: Checked in: CR-001")
    assert lines[-1] == "Repaired: CR-001 for claude"
    assert find_meta(sample_project, "CR-001")["checked_out"] is False


@pytest.mark.parametrize("doc, agent, what", [("../CR-001", "claude", "Invalid document id"),
                                              ("CR-001", "Claude", "Invalid agent id")])
def test_bad_ids_exit_2_without_connecting(sample_project, doc, agent, what):
    url = f"http://127.0.0.1:{free_port()}/sse"  # nothing listens: the ids are refused first
    done = op("checkin", doc, agent, sample_project, url, "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["title"] == what
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"qms-panel: {what}:")


def test_server_down_exits_1_with_one_line(sample_project):
    url = f"http://127.0.0.1:{free_port()}/mcp"
    done = op("checkout", "CR-002", "claude", sample_project, url, "--timeout", "3")
    assert done.returncode == 1
    assert done.stderr.strip() == f"qms-panel: MCP link down: {url}: connection refused"
    assert "Traceback" not in done.stderr


def test_checkout_never_overwrites_a_copy_and_force_moves_it_aside(sample_project, devserver):
    """Issue 11 item 1: a copy left while the document is checked in (state unmanaged) survives."""
    copy = workspace_dir(sample_project, "claude") / "CR-002.md"
    copy.write_bytes(b"claude's unsaved work\n")
    done = op("checkout", "CR-002", "claude", sample_project, devserver.url)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "qms-panel: Checkout refused: CR-002 for claude: " \
        ".claude/users/claude/workspace/CR-002.md exists while CR-002 is checked in (22 bytes, modified " in done.stderr
    assert "--force" in done.stderr
    assert copy.read_bytes() == b"claude's unsaved work\n" and find_meta(sample_project, "CR-002")["checked_out"] is False

    done = op("checkout", "CR-002", "claude", sample_project, devserver.url, "--force", "--json")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    moved = [p for p in displaced_dir(sample_project, "claude").iterdir()]
    assert len(moved) == 1 and moved[0].read_bytes() == b"claude's unsaved work\n"
    assert outcome["displaced"] == str(moved[0]) and outcome["actions"][0].startswith(
        "moved .claude/users/claude/workspace/CR-002.md (22 bytes, modified ")
    assert outcome["actions"][0].endswith(f"aside to .qms-panel/displaced/claude/{moved[0].name}")
    assert copy.read_bytes() != b"claude's unsaved work\n"  # the server's fresh copy
    assert find_meta(sample_project, "CR-002")["checked_out"] is True


@pytest.mark.parametrize("command, value", [("checkout", "nan"), ("checkin", "0"), ("repair", "-1"), ("ping", "nan"),
                                            ("status", "0"), ("status", "-1"), ("ping", "inf"), ("checkout", "soon")])
def test_bad_timeouts_are_usage_errors(sample_project, command, value):
    url = f"http://127.0.0.1:{free_port()}/sse"
    ids = ["CR-001", "--agent", "claude"] if command in ("checkout", "checkin", "repair") else []
    done = qms_panel(command, *ids, "--project-root", str(sample_project), "--mcp-url", url, "--timeout", value)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and f"argument --timeout: '{value}'" in done.stderr


@pytest.mark.parametrize("value", ["nan", "0", "-5", "forever"])
def test_bad_call_timeouts_are_configuration_errors(sample_project, value):
    url = f"http://127.0.0.1:{free_port()}/sse"
    done = op("checkin", "CR-001", "claude", sample_project, url, "--call-timeout", value)
    assert done.returncode == 2
    assert done.stderr.startswith("qms-panel: Bad configuration: call_timeout: ") and done.stderr.count("\n") == 1


def test_repair_with_a_300_character_id_is_a_usage_error(sample_project):
    url = f"http://127.0.0.1:{free_port()}/sse"
    done = op("repair", "CR-" + "1" * 297, "claude", sample_project, url)
    assert done.returncode == 2
    assert done.stderr.strip() == "qms-panel: Invalid document id: a document id of 300 characters is too long " \
        "(at most 120)"


def test_call_timeout_setting_bounds_every_call(sample_project, devserver_factory, tmp_path, monkeypatch):
    """``--call-timeout`` (and QMS_PANEL_CALL_TIMEOUT) bound the call, not only the connect."""
    faults = tmp_path / "faults.json"
    monkeypatch.setenv(FAULTS_ENV, str(faults))
    server = devserver_factory(sample_project, transport="streamable-http")
    faults.write_text(json.dumps({"command": "checkout", "when": "before", "stall_s": 3}))
    done = subprocess.run([sys.executable, "-m", "tui.cli", "checkout", "CR-002", "--agent", "claude",
                           "--project-root", str(sample_project), "--mcp-url", server.url],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "QMS_PANEL_CALL_TIMEOUT": "1s"})
    assert done.returncode == 1
    assert (tmp_path / "faults.json.stalled").exists()
    assert "Checkout outcome unknown: CR-002 for claude: MCP call timed out: qms_checkout: no reply within 1 s" \
        in done.stderr
    assert "may still complete it" in done.stdout


@pytest.mark.docker
def test_ping_with_a_container(sample_project, devserver_factory, test_image, unique_prefix, docker_client):
    server = devserver_factory(sample_project, host="0.0.0.0")
    settings = Settings(project_root=sample_project, image=test_image, container_prefix=unique_prefix)
    manager = ContainerManager(settings, client=docker_client, extra_labels={TEST_LABEL: "1"})
    manager.launch("claude", command=["sleep", "3600"])
    try:
        common = ["--project-root", str(sample_project), "--container-prefix", unique_prefix, "--image", test_image]
        done = qms_panel("ping", "--json", *common, "--mcp-url", server.url,
                         "--container-mcp-url", f"http://host.docker.internal:{server.port}/sse")
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert report["ok"] and report["host"]["ok"]
        assert [(c["where"], c["ok"], c["tool"]) for c in report["containers"]] == [("claude", True, "wget")]

        mismatch = qms_panel("ping", *common, "--mcp-url", server.url.replace("/sse", "/mcp"),
                             "--container-mcp-url", f"http://host.docker.internal:{server.port}/mcp")
        assert mismatch.returncode == 1
        assert "/mcp answers 405 but /sse answers SSE" in mismatch.stdout or \
               "/mcp answers 404 but /sse answers SSE" in mismatch.stdout
    finally:
        manager.remove("claude", remove_volume=True)


def test_call_timeout_from_toml_env_and_flag(sample_project, tmp_path, monkeypatch):
    from datetime import timedelta

    from core.errors import SettingsError
    from core.settings import load_settings

    toml = tmp_path / "qms-panel.toml"
    toml.write_text(f'project_root = "{sample_project}"\ncall_timeout = "2m"\n')
    assert load_settings(config=toml).call_timeout == timedelta(minutes=2)
    monkeypatch.setenv("QMS_PANEL_CALL_TIMEOUT", "45")
    assert load_settings(config=toml).call_timeout == timedelta(seconds=45)
    assert load_settings({"call_timeout": "1.5s"}, config=toml).call_timeout == timedelta(seconds=1.5)
    toml.write_text(f'project_root = "{sample_project}"\ncall_timeout = nan\n')
    monkeypatch.delenv("QMS_PANEL_CALL_TIMEOUT")
    with pytest.raises(SettingsError, match=r"^Bad configuration: call_timeout: nan is not a duration"):
        load_settings(config=toml)


@pytest.mark.docker
def test_ping_says_why_containers_cannot_reach_a_loopback_server_and_the_way_that_works(
        sample_project, devserver_factory, gateway_factory, test_image, unique_prefix, docker_client, tmp_path):
    server = devserver_factory(sample_project)  # 127.0.0.1 only, as `qms-panel devserver` starts it
    inside = f"http://host.docker.internal:{server.port}/sse"
    common = ["--project-root", str(sample_project), "--container-prefix", unique_prefix, "--image", test_image,
              "--mcp-url", server.url, "--container-mcp-url", inside]
    bridge = docker_client.api.inspect_network("bridge")["IPAM"]["Config"][0]["Gateway"]

    text = qms_panel("ping", *common, "--state-dir", str(tmp_path / "no-gateway"))
    report = json.loads(qms_panel("ping", "--json", *common, "--state-dir", str(tmp_path / "no-gateway")).stdout)

    [warning] = [line for line in text.stdout.splitlines() if "WARNING" in line]
    assert warning.startswith(f"containers   WARNING  Containers cannot reach {inside}: ")
    assert f"bridge address ({bridge}), not 127.0.0.1, and port {server.port} listens only on 127.0.0.1" in warning
    advice = f"qms-panel gateway --upstream-url {server.url} --gateway-listen {bridge}:{server.port}"
    assert f"`{advice}`" in warning and report["container_reach"] in warning
    assert text.returncode == 0 and report["host"]["ok"]  # the host reaches it: a warning, not a failure

    # the way it names works: with that gateway in front, a container reaches the server
    gateway = gateway_factory(sample_project, server.url, listen=f"{bridge}:{server.port}")
    settings = Settings(project_root=sample_project, image=test_image, container_prefix=unique_prefix)
    manager = ContainerManager(settings, client=docker_client, extra_labels={TEST_LABEL: "1"})
    manager.launch("claude", command=["sleep", "3600"])
    try:
        through = json.loads(qms_panel("ping", "--json", *common, "--state-dir", str(gateway.state_dir),
                                       "--feed-listen", gateway.feed_listen).stdout)
    finally:
        manager.remove("claude", remove_volume=True)
    assert [(c["where"], c["ok"]) for c in through["containers"]] == [("claude", True)]
    assert through["gateway"]["running"] and through["container_reach"] is None


def test_ping_warns_of_nothing_when_the_server_listens_for_containers(sample_project, devserver_factory, tmp_path):
    server = devserver_factory(sample_project, host="0.0.0.0")
    report = json.loads(qms_panel("ping", "--json", "--project-root", str(sample_project), "--mcp-url", server.url,
                                  "--container-mcp-url", f"http://host.docker.internal:{server.port}/sse",
                                  "--container-prefix", "qmst-none-", "--state-dir", str(tmp_path)).stdout)
    assert report["host"]["ok"] and report["container_reach"] is None


def test_a_permission_denied_keeps_every_line_on_the_command_line(sample_project, devserver):
    done = op("checkout", "CR-002", "qa", sample_project, devserver.url)
    as_json = json.loads(op("checkout", "CR-002", "qa", sample_project, devserver.url, "--json").stdout)

    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("qms-panel: Checkout refused: CR-002 for qa: Permission Denied: 'checkout' command "
                                  "Your role: quality (qa) Required role(s): initiator ")
    assert as_json["reason"].startswith("Permission Denied: 'checkout' command\n\nYour role: quality (qa)\n"
                                        "Required role(s): initiator\n")
    assert as_json["reason"].endswith("Route documents for workflows (Initiator only)")  # to its last line


async def test_an_identity_lock_on_the_command_line_promises_no_wait_and_claims_no_container(sample_project,
                                                                                              devserver_factory):
    server = devserver_factory(sample_project, identity_ttl=60)
    holder = {"X-QMS-Identity": "claude", "X-QMS-Instance": "c0ffee00-2222"}  # any client sending the header
    async with connected(server.url, sample_project, headers=holder) as agent:
        assert (await agent.inbox("claude")).status == "ok"
        done = await anyio.to_thread.run_sync(lambda: op("checkin", "CR-001", "claude", sample_project, server.url))

    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    line = done.stderr
    assert line.startswith("qms-panel: Checkin refused: CR-001 for claude: the server refuses calls as claude without "
                           "an identity header: a client that sends X-QMS-Identity: claude (instance c0ffee00) holds")
    assert "container" not in line and not any(f"{n} s" in line for n in (60, 90, 300))  # no claim, no wait promised
