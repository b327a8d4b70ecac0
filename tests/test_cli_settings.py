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


def _text_values(stdout: str) -> dict[str, str]:
    settings_part = stdout.split("\naccess matrix for", 1)[0]
    return {key: rest.strip() for key, _, rest in (line.partition(" ") for line in settings_part.splitlines())}


def test_config_text_is_written_as_the_settings_are(root, tmp_path):
    (tmp_path / "qms-panel.toml").write_text(
        'project_root = "proj"\nagents = ["claude", "qa"]\nstuck_after = "1h30m"\ncall_timeout = 90\n'
        'gateway_allow_host = true\n[keymap]\n"container.restart" = "ctrl+r"\n')
    proc = qms_panel("config", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = _text_values(proc.stdout)
    assert shown["stuck_after"] == "1h30m" and shown["call_timeout"] == "1m30s"
    assert shown["agents"] == "claude,qa" and shown["gateway_allow_host"] == "true"
    assert shown["deploy_key"] == "" and shown["feed_token_file"] == "" and shown["gateway_listen"] == ""
    assert "None" not in proc.stdout and ":00" not in proc.stdout.split("\naccess matrix")[0]
    # every value said is one the loader takes back: as environment variables, they make the same settings
    env = {f"QMS_PANEL_{key.upper()}": value for key, value in shown.items() if value}
    again = qms_panel("config", "--json", cwd=tmp_path / "proj", env=env)
    first = qms_panel("config", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(first.stdout)
    assert json.loads(first.stdout)["call_timeout"] == 90 and json.loads(first.stdout)["deploy_key"] is None


def test_config_json_is_taken_back(root, tmp_path):
    first = json.loads(qms_panel("config", "--json", "--project-root", str(root), "--stuck-after", "2d",
                                 "--call-timeout", "0.5", cwd=tmp_path).stdout)
    toml = "".join(f"{key} = {json.dumps(value)}\n" for key, value in first.items()
                   if value is not None and not isinstance(value, (dict, list)))
    (tmp_path / "back.toml").write_text(toml)
    again = qms_panel("config", "--json", "--config", str(tmp_path / "back.toml"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == first and first["stuck_after"] == 172800
