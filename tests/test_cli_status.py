"""`qms-panel status` names the declared agents that have no container (a real engine, a real dev server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.containers import ContainerManager
from core.settings import Settings
from support.docker_env import TEST_LABEL
from test_tui_status import qms_panel


@pytest.mark.docker
def test_status_names_the_declared_agents_without_a_container(sample_project, devserver, test_image, unique_prefix,
                                                              docker_client):
    settings = Settings(project_root=sample_project, agents=["claude"], image=test_image,
                        container_prefix=unique_prefix, mcp_url=devserver.url)
    ContainerManager(settings, extra_labels={TEST_LABEL: "1"}).launch("claude", command=["sleep", "3600"])
    common = ("--project-root", str(sample_project), "--mcp-url", devserver.url, "--container-prefix", unique_prefix,
              "--image", test_image, "--agents", "qa,claude,dev")

    text = qms_panel("status", *common)
    report = json.loads(qms_panel("status", "--json", *common).stdout)

    assert text.returncode == 0, text.stderr
    [line] = [line for line in text.stdout.splitlines() if line.startswith("no container:")]
    assert line.startswith("no container: qa, dev (") and "qms-panel launch AGENT" in line
    assert report["not_launched"] == ["qa", "dev"] and [r["agent"] for r in report["containers"]] == ["claude"]


def test_status_without_an_engine_claims_no_agent_is_without_a_container(sample_project, devserver, tmp_path):
    common = ("--project-root", str(sample_project), "--mcp-url", devserver.url, "--agents", "qa,claude")
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    run = [sys.executable, "-m", "tui.cli", "status"]
    text = subprocess.run([*run, *common], capture_output=True, text=True, env=env, timeout=60)
    report = json.loads(subprocess.run([*run, "--json", *common], capture_output=True, text=True, env=env,
                                       timeout=60).stdout)

    assert "containers: unknown (engine unreachable)" in text.stdout and "no container:" not in text.stdout
    [engine] = [line for line in text.stdout.splitlines() if line.startswith("engine")]
    assert engine.startswith(f"engine   UNREACHABLE  unix://{tmp_path}/no-engine.sock  no socket at ")
    assert engine.lower().count("unreachable") == 1  # said once
    assert report["engine"]["ok"] is False and report["not_launched"] == []
