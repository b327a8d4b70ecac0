"""launch, stop, start, restart and remove through the real command line: --json, exit codes 0/1/2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import errors, layout
from support.docker_env import TEST_LABEL
from test_containers import cleanup  # noqa: F401 - a fixture

pytestmark = pytest.mark.docker
AGENT_COMMAND = "sh -c 'trap \"exit 0\" TERM; while true; do sleep 1; done'"


def qms_panel(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QMS_PANEL_")}
    env["PYTHONPATH"] = str(Path(__file__).parent.parent)
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


@pytest.fixture
def cli(project_root, test_image, unique_prefix, tmp_path, cleanup):
    def call(*args: str, root: Path = project_root, image: str = test_image) -> subprocess.CompletedProcess:
        return qms_panel(*args, "--project-root", str(root), "--image", image, "--container-prefix", unique_prefix,
                         cwd=tmp_path)

    return call


def ok_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def refused(proc: subprocess.CompletedProcess, code: int, kind: str) -> dict:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    error = json.loads(proc.stdout)  # {"error": detail, "title": ..., "exit": code}
    assert error["title"] == getattr(errors, kind).title and error["exit"] == code
    return error


def test_lifecycle_through_the_command_line(cli, docker_client, unique_prefix):
    row = ok_json(cli("launch", "claude", "--command", AGENT_COMMAND, "--json"))
    assert (row["agent"], row["name"], row["state"], row["managed"]) == ("claude", f"{unique_prefix}claude",
                                                                         "running", True)
    assert docker_client.containers.get(row["id"]).attrs["Config"]["Cmd"][0] == "sh"

    assert ok_json(cli("stop", "claude", "--json"))["state"] == "exited"
    plain = cli("start", "claude")
    assert plain.returncode == 0 and plain.stdout.startswith(f"started {unique_prefix}claude"), plain.stderr
    restarted = ok_json(cli("restart", "claude", "--json"))
    assert restarted["state"] == "running" and restarted["id"] == row["id"]

    volume = layout.projects_volume(unique_prefix, "claude")
    assert ok_json(cli("remove", "claude", "--json")) == {
        "ok": True, "agent": "claude", "container": f"{unique_prefix}claude", "volume": volume,
        "volume_removed": False}
    assert [v.name for v in docker_client.volumes.list(filters={"name": unique_prefix})] == [volume]
    # no container: nothing is removed, and one line says so (the volume goes with its container)
    for args in (("--volume",), ()):
        error = refused(cli("remove", "claude", *args, "--json"), 1, "ContainerNotFound")
        assert f"no container {unique_prefix}claude" in error["error"] and "nothing removed" in error["error"]
        assert ("docker volume rm " + volume in error["error"]) == bool(args)
    assert [v.name for v in docker_client.volumes.list(filters={"name": unique_prefix})] == [volume]
    ok_json(cli("launch", "claude", "--command", AGENT_COMMAND, "--json"))
    assert ok_json(cli("remove", "claude", "--volume", "--json"))["volume_removed"] is True
    assert docker_client.volumes.list(filters={"name": unique_prefix}) == []


def test_refusals_exit_codes(cli, docker_client, unique_prefix, test_image, tmp_path):
    error = refused(cli("launch", "Bad!", "--json"), 2, "InvalidAgentId")
    assert "[a-z0-9_-]+" in error["error"]

    error = refused(cli("launch", "claude", "--json", image=f"{unique_prefix}missing:none"), 1, "ImageMissing")
    assert "qms-panel image build" in error["error"]

    no_qms = tmp_path / "empty"
    no_qms.mkdir()
    proc = cli("launch", "claude", root=no_qms)
    assert proc.returncode == 2 and "no QMS/ folder" in proc.stderr and "Traceback" not in proc.stderr

    proc = cli("launch", "claude", "--command", "sh -c 'unclosed")
    assert proc.returncode == 2 and "argument --command" in proc.stderr

    name = f"{unique_prefix}claude"
    hand = docker_client.containers.create(test_image, name=name, labels={TEST_LABEL: "1"})
    error = refused(cli("launch", "claude", "--json"), 1, "NameConflict")
    assert "did not make it" in error["error"]
    assert docker_client.containers.get(name).id == hand.id
    assert docker_client.volumes.list(filters={"name": unique_prefix}) == []


def test_another_projects_container_is_refused_naming_whose_it_is(cli, docker_client, unique_prefix, tmp_path):
    other = tmp_path / "srv" / "other"
    (other / "QMS").mkdir(parents=True)
    row = ok_json(cli("launch", "claude", "--command", AGENT_COMMAND, "--json", root=other))
    started = docker_client.api.inspect_container(row["id"])["State"]["StartedAt"]
    for action in ("restart", "stop", "start", "remove", "attach"):
        error = refused(cli(action, "claude", "--json"), 1, "OtherProject")
        assert error["error"].startswith(f"{unique_prefix}claude belongs to the qms-panel project at "
                                          f"{other.resolve()}; qms-panel never "), (action, error)
    state = docker_client.api.inspect_container(row["id"])["State"]
    assert state["Status"] == "running" and state["StartedAt"] == started
