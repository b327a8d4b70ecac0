"""`qms-panel status [--json]` through the real command line (a subprocess), over real parts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.containers import ContainerManager
from core.settings import Settings
from support.docker_env import TEST_LABEL


def qms_panel(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.docker
def test_status_json_reports_containers_checkouts_and_the_link(sample_project, devserver, test_image,
                                                                unique_prefix, docker_client):
    settings = Settings(project_root=sample_project, agents=["claude"], image=test_image,
                        container_prefix=unique_prefix, mcp_url=devserver.url)
    ContainerManager(settings, extra_labels={TEST_LABEL: "1"}).launch("claude", command=["sleep", "3600"])

    out = qms_panel("status", "--json", "--project-root", str(sample_project), "--mcp-url", devserver.url,
                    "--container-prefix", unique_prefix, "--image", test_image, "--agents", "claude")

    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True
    assert report["engine"]["ok"] is True and report["engine"]["version"]
    [row] = report["containers"]
    assert (row["agent"], row["name"], row["state"], row["managed"]) == (
        "claude", f"{unique_prefix}claude", "running", True)
    assert report["link"]["status"] == "connected" and "qms_checkin" in report["link"]["tools"]
    [doc] = report["checkouts"]
    assert (doc["doc_id"], doc["holder"], doc["state"]) == ("CR-001", "claude", "ok")
    assert doc["workspace_file"]["size"] > 0
    assert report["inboxes"]["qa"] == 1


def test_status_text_with_the_server_down_says_so_and_exits_1(sample_project, devserver):
    url = devserver.url
    devserver.stop()

    out = qms_panel("status", "--project-root", str(sample_project), "--mcp-url", url, "--timeout", "3",
                    "--container-prefix", "qmst-none-")

    assert out.returncode == 1
    lines = out.stdout.splitlines()
    mcp = next(line for line in lines if line.startswith("mcp"))
    assert "DOWN" in mcp and "refused" in mcp
    # checkouts come from the files, so they are reported without the server
    assert any(line.split()[:1] == ["CR-001"] and "claude" in line for line in lines)
    assert "Traceback" not in out.stderr


def test_status_with_a_bad_project_root_is_a_usage_error(tmp_path):
    out = qms_panel("status", "--json", "--project-root", str(tmp_path / "nowhere"))

    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "project_root" in out.stderr


@pytest.mark.docker
def test_status_says_what_each_agent_is_doing_from_the_gateways_feed(sample_project, devserver, gateway_factory,
                                                                     agent_container, unique_prefix):
    manager, row = agent_container
    gw = gateway_factory(sample_project, devserver.url)
    url = f"http://host.docker.internal:{gw.telemetry_listen.rsplit(':', 1)[1]}/hooks"
    hook = {"hook_event_name": "PostToolUse", "session_id": "s1", "tool_name": "Bash",
            "tool_input": {"command": "npm test"}, "tool_response": {"stdout": "ok"}}
    done = manager.exec(row.name, ["wget", "-q", "-O", "-", "--header", "Content-Type: application/json",
                                   "--post-data", json.dumps(hook), url], timeout=30)
    assert done.exit_code == 0, done.output
    common = ["--project-root", str(sample_project), "--mcp-url", devserver.url, "--container-prefix", unique_prefix,
              "--image", "unused", "--agents", "claude", "--state-dir", str(gw.state_dir)]

    out = qms_panel("status", "--json", "--feed-listen", gw.feed_listen, *common)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["gateway"]["ok"] is True and report["gateway"]["telemetry_listen"] == gw.telemetry_listen
    claude = report["activity"]["claude"]
    assert (claude["state"], claude["last_tool"], claude["container"]) == ("working", "Bash", row.name)

    text = qms_panel("status", "--feed-listen", gw.feed_listen, *common)
    line = next(ln for ln in text.stdout.splitlines() if row.name in ln)
    assert "working Bash" in line, text.stdout
    assert any(ln.startswith("gateway  up") for ln in text.stdout.splitlines()), text.stdout

    gw.stop()  # no gateway: said on its line, and the report still passes
    gone = qms_panel("status", "--feed-listen", gw.feed_listen, "--timeout", "3", *common)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    gateway_line = next(ln for ln in gone.stdout.splitlines() if ln.startswith("gateway"))
    assert "NOT READ" in gateway_line and "is `qms-panel gateway` running?" in gateway_line
    assert "Up " in next(ln for ln in gone.stdout.splitlines() if row.name in ln)  # the container's own state
