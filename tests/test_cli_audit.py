"""`qms-panel audit` through the real command line: JSON, the table, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import layout
from core.containers import ContainerManager
from core.errors import ContainerNotFound, EngineUnreachable
from core.settings import Settings
from support.docker_env import TEST_LABEL

REPO = Path(__file__).parent.parent


def qms_panel(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QMS_PANEL_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**full_env, "PYTHONPATH": str(REPO)}, timeout=120)


@pytest.fixture
def project(project_root, test_image, unique_prefix, docker_client):
    """A project with claude launched by qms-panel and qa started by hand with /pipe-dream writable."""
    settings = Settings(project_root=project_root, image=test_image, container_prefix=unique_prefix)
    ContainerManager(settings, client=docker_client, extra_labels={TEST_LABEL: "1"}).launch(
        "claude", command=["sleep", "3600"])
    yield settings
    for c in docker_client.containers.list(all=True, filters={"name": unique_prefix}):
        c.remove(force=True, v=True)
    for v in docker_client.volumes.list(filters={"name": unique_prefix}):
        v.remove(force=True)


def start_drifted(settings: Settings, docker_client, agent: str = "qa") -> None:
    lay = layout.for_settings(settings, agent)
    lay.workspace_host.mkdir(parents=True, exist_ok=True)
    volumes = {m.source: {"bind": m.target, "mode": "rw"} for m in lay.mounts}  # everything writable
    docker_client.containers.run(settings.image, ["sleep", "3600"], name=f"{settings.container_prefix}{agent}-by-hand",
                                 detach=True, labels={TEST_LABEL: "1"}, volumes=volumes,
                                 environment={"QMS_USER": agent})


def flags(settings: Settings) -> list[str]:
    return ["--project-root", str(settings.project_root), "--image", settings.image,
            "--container-prefix", settings.container_prefix]


@pytest.mark.docker
def test_audit_json_and_exit_codes(project, docker_client, tmp_path):
    proc = qms_panel("audit", "--json", *flags(project), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True and data["generated_at"]
    [claude] = data["containers"]
    assert claude["agent"] == "claude" and claude["managed"] and claude["audited"]
    assert {r["verdict"] for r in claude["rows"]} == {"ok"}

    start_drifted(project, docker_client)
    proc = qms_panel("audit", "--json", *flags(project), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is False
    qa = next(c for c in data["containers"] if c["agent"] == "qa")
    assert not qa["managed"] and qa["agent_source"] == "QMS_USER"
    pd = next(r for r in qa["rows"] if r["path"] == "/pipe-dream")
    assert pd["verdict"] == "drift" and pd["severity"] == "high" and pd["declared"] == "read-only"

    # --agent narrows the audit: claude alone is clean
    proc = qms_panel("audit", "--json", "--agent", "claude", *flags(project), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [c["agent"] for c in json.loads(proc.stdout)["containers"]] == ["claude"]


@pytest.mark.docker
def test_audit_table(project, docker_client, tmp_path):
    start_drifted(project, docker_client)
    proc = qms_panel("audit", *flags(project), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "path" in out and "declared" in out and "mounted" in out and "probe" in out and "verdict" in out
    assert "DRIFT (high)" in out and "mounted read-write, declared read-only" in out
    assert "agent qa (from QMS_USER), NOT made by qms-panel" in out
    assert "not probed: not made by qms-panel" in out  # no exec into it without --probe-unmanaged
    assert f"HIGH: {project.container_prefix}qa-by-hand /pipe-dream: mounted read-write" in out
    assert out.strip().splitlines()[-1].startswith("NOT ok:")
    assert "Traceback" not in proc.stderr

    proc = qms_panel("audit", "--probe-unmanaged", *flags(project), cwd=tmp_path)
    assert proc.returncode == 1 and "a probe file was created" in proc.stdout, proc.stdout


@pytest.mark.docker
def test_audit_hand_made_container_of_unknown_agent(project, docker_client, tmp_path):
    """No label, no QMS_USER, production writable: a high drift (exit 1), not "could not be audited"."""
    docker_client.containers.run(project.image, ["sleep", "3600"], name=f"{project.container_prefix}anon",
                                 detach=True, labels={TEST_LABEL: "1"},
                                 volumes={str(project.project_root): {"bind": "/pipe-dream", "mode": "rw"}})
    proc = qms_panel("audit", "--json", *flags(project), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    anon = next(c for c in data["containers"] if c["container"].endswith("anon"))
    assert anon["agent"] is None and anon["audited"] and not anon["probed"]
    pd = next(r for r in anon["rows"] if r["path"] == "/pipe-dream")
    assert (pd["verdict"], pd["severity"], pd["mount"]["rw"]) == ("drift", "high", True)
    assert any(line.startswith(f"{project.container_prefix}anon /pipe-dream: mounted read-write")
               for line in data["high_drift"])


@pytest.mark.docker
def test_audit_agent_without_container(project, tmp_path):
    proc = qms_panel("audit", "--json", "--agent", "nobody", *flags(project), cwd=tmp_path)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["title"] == ContainerNotFound.title
    assert len(proc.stderr.strip().splitlines()) == 1 and "nobody" in proc.stderr


def test_audit_config_errors_exit_2(project_root, tmp_path):
    proc = qms_panel("audit", "--project-root", str(tmp_path / "missing"), cwd=tmp_path)
    assert proc.returncode == 2 and "project_root" in proc.stderr and "Traceback" not in proc.stderr
    proc = qms_panel("audit", "--agent", "Not-An-Id!", "--project-root", str(project_root), cwd=tmp_path)
    assert proc.returncode == 2 and "Invalid agent id" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_audit_engine_unreachable_exit_1(project_root, tmp_path):
    proc = qms_panel("audit", "--json", "--project-root", str(project_root), cwd=tmp_path,
                     env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["title"] == EngineUnreachable.title
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
