"""``qms-panel ping / checkout / checkin / repair`` through the real command line, with --json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.containers import ContainerManager
from core.layout import workspace_dir
from core.qms_ops import find_meta
from core.settings import Settings
from support.devserver import free_port
from support.docker_env import TEST_LABEL


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
    assert done.stdout.startswith("Checked in: CR-002")
    assert find_meta(sample_project, "CR-002")["checked_out"] is False


def test_refusal_exits_1_with_the_reason(sample_project, devserver):
    done = op("checkout", "CR-001", "lead", sample_project, devserver.url, "--json")
    assert done.returncode == 1
    outcome = json.loads(done.stdout)
    assert (outcome["status"], outcome["reason"]) == ("refused", "Error: CR-001 is checked out by claude")
    assert done.stderr.strip() == "qms-panel: checkout CR-001 as lead: refused: Error: CR-001 is checked out by claude"


def test_missing_copy_checkin_refused_then_repair(sample_project, devserver):
    (workspace_dir(sample_project, "claude") / "CR-001.md").unlink()
    done = op("checkin", "CR-001", "claude", sample_project, devserver.url, "--json")
    assert done.returncode == 1
    assert "repair" in json.loads(done.stdout)["reason"]

    done = op("repair", "CR-001", "claude", sample_project, devserver.url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("- copied QMS/CR/CR-001/CR-001-draft.md to .claude/users/claude/workspace/CR-001.md")
    assert lines[1].startswith("- checked in CR-001 as claude: Checked in: CR-001")
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
