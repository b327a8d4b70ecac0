"""Settings through the real command line: one readable line and exit 2 for each bad value."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def qms_panel(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QMS_PANEL_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**full_env, "PYTHONPATH": str(Path(__file__).parent.parent)},
                          timeout=60)


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "proj" / "QMS").mkdir(parents=True)
    return tmp_path / "proj"


def assert_one_line_exit_2(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_defaults_and_precedence(root, tmp_path):
    (tmp_path / "qms-panel.toml").write_text('project_root = "proj"\nimage = "from-file"\nagents = ["claude", "qa"]\n')
    proc = qms_panel("config", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["image"] == "from-file" and data["agents"] == ["claude", "qa"]
    assert data["mcp_url"] == "http://127.0.0.1:8000/sse"
    assert data["container_mcp_url"] == "http://host.docker.internal:8000/sse"
    assert data["stuck_after"] == 4 * 3600
    # env beats file, flag beats env
    proc = qms_panel("config", "--json", cwd=tmp_path, env={"QMS_PANEL_IMAGE": "from-env", "QMS_PANEL_AGENTS": "a,b"})
    assert json.loads(proc.stdout)["image"] == "from-env"
    assert json.loads(proc.stdout)["agents"] == ["a", "b"]
    proc = qms_panel("config", "--json", "--image", "from-flag", cwd=tmp_path, env={"QMS_PANEL_IMAGE": "from-env"})
    assert json.loads(proc.stdout)["image"] == "from-flag"


def test_missing_project_root(tmp_path):
    proc = qms_panel("config", "--project-root", str(tmp_path / "nope"), cwd=tmp_path)
    assert_one_line_exit_2(proc, "project_root", "does not exist")


def test_project_root_without_qms(tmp_path):
    proc = qms_panel("config", "--project-root", str(tmp_path), cwd=tmp_path)
    assert_one_line_exit_2(proc, "project_root", "no QMS/")


def test_default_project_root_is_cwd_and_checked(tmp_path):
    assert_one_line_exit_2(qms_panel("config", cwd=tmp_path), "project_root")
    # the app itself checks settings before it opens
    assert_one_line_exit_2(qms_panel(cwd=tmp_path), "project_root", "no QMS/")


def test_mcp_url_not_a_url(root, tmp_path):
    proc = qms_panel("config", "--project-root", str(root), "--mcp-url", "localhost:8000", cwd=tmp_path)
    assert_one_line_exit_2(proc, "mcp_url", "not an http(s) URL")


def test_env_value_named(root, tmp_path):
    proc = qms_panel("config", cwd=tmp_path, env={"QMS_PANEL_PROJECT_ROOT": str(root),
                                                  "QMS_PANEL_CONTAINER_MCP_URL": "ftp://x"})
    assert_one_line_exit_2(proc, "container_mcp_url", "QMS_PANEL_CONTAINER_MCP_URL")


def test_unknown_toml_key(root, tmp_path):
    cfg = tmp_path / "custom.toml"
    cfg.write_text(f'project_root = "{root}"\nimgae = "typo"\n')
    proc = qms_panel("config", "--config", str(cfg), cwd=tmp_path)
    assert_one_line_exit_2(proc, "unknown key 'imgae'", str(cfg))


def test_broken_toml(root, tmp_path):
    (tmp_path / "qms-panel.toml").write_text("project_root = \n")
    proc = qms_panel("config", cwd=tmp_path)
    assert_one_line_exit_2(proc, "qms-panel.toml", "not valid TOML")


def test_missing_config_file(tmp_path):
    proc = qms_panel("config", "--config", str(tmp_path / "none.toml"), cwd=tmp_path)
    assert_one_line_exit_2(proc, "does not exist")


@pytest.mark.parametrize("flag,value,needle", [
    ("--agents", "Claude", "agents"),
    ("--agents", "", "agents"),
    ("--stuck-after", "soon", "stuck_after"),
    ("--stuck-after", "-5", "stuck_after"),
    ("--container-prefix", "bad prefix", "container_prefix"),
    ("--mcp-transport", "carrier-pigeon", "mcp_transport"),
])
def test_bad_values(root, tmp_path, flag, value, needle):
    proc = qms_panel("config", "--project-root", str(root), flag, value, cwd=tmp_path)
    assert_one_line_exit_2(proc, needle)


def test_unknown_flag_is_usage_error(tmp_path):
    proc = qms_panel("config", "--no-such-flag", cwd=tmp_path)
    assert_one_line_exit_2(proc, "unrecognized arguments")


def test_durations(root, tmp_path):
    for value, seconds in (("90m", 5400), ("1h30m", 5400), ("3600", 3600), ("2d", 172800)):
        proc = qms_panel("config", "--json", "--project-root", str(root), "--stuck-after", value, cwd=tmp_path)
        assert json.loads(proc.stdout)["stuck_after"] == seconds
