"""Bad input gets one line and the right exit code; with --json, also exactly one JSON object.

The sweep over every command runs ``tui.cli.main`` in this process (all commands in seconds);
the cases of the issue run the real command line in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tui import cli

ROOT = Path(__file__).parent.parent

# the shortest command line that gets past the parser, for each command
ARGV = {
    "attach": ["attach", "claude"], "audit": ["audit"], "checkin": ["checkin", "CR-001", "--agent", "claude"],
    "checkout": ["checkout", "CR-001", "--agent", "claude"], "config": ["config"], "image": ["image", "build"],
    "launch": ["launch", "claude"], "ping": ["ping"], "remove": ["remove", "claude"],
    "repair": ["repair", "CR-001", "--agent", "claude"], "restart": ["restart", "claude"],
    "start": ["start", "claude"], "status": ["status"], "stop": ["stop", "claude"],
    "devserver": ["devserver", "--project-root", "PROJECT"], "history": ["history"],
    "gateway": ["gateway"], "watch": ["watch"], "logs": ["logs", "claude"],
}


def qms_panel(*args: str, cwd: Path | None = None, env: dict | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QMS_PANEL_")}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**clean, **(env or {}), "PYTHONPATH": str(ROOT)}, timeout=timeout)


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("qms-panel: "), stderr
    return lines[0]


def the_object(stdout: str) -> dict:
    """stdout is one JSON object with exactly the error keys (json.loads refuses anything after it)."""
    data = json.loads(stdout)
    assert set(data) == {"error", "title", "exit"}, data
    return data


@pytest.fixture
def in_process(monkeypatch, capsys, tmp_path):
    """``main(argv)`` here: (exit code, stdout, stderr). Library logging is left as pytest has it."""
    monkeypatch.setattr(cli, "quiet_library_logs", lambda: None)
    monkeypatch.chdir(tmp_path)

    def run(argv: list[str]) -> tuple[int, str, str]:
        code = cli.main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_the_sweep_covers_every_command():
    assert sorted(ARGV) == cli.command_names()


@pytest.mark.parametrize("name", sorted(ARGV))
def test_a_usage_error_is_one_line_and_one_object(in_process, name):
    code, out, err = in_process([*ARGV[name], "--json", "--no-such-flag"])
    assert code == 2
    line = one_line(err)
    data = the_object(out)
    assert data["title"] == "Usage" and data["exit"] == 2
    assert "unrecognized arguments: --no-such-flag" in data["error"] and data["error"] in line


def test_a_usage_error_without_a_command_is_json_too(in_process):
    code, out, err = in_process(["--json", "--no-such-flag"])
    assert code == 2 and the_object(out)["exit"] == 2 and one_line(err)


@pytest.mark.parametrize("name", sorted(ARGV))
def test_a_configuration_error_is_one_line_and_one_object(in_process, tmp_path, name):
    missing = str(tmp_path / "no-such-project")
    argv = [missing if a == "PROJECT" else a for a in ARGV[name]]
    if name not in ("devserver", "image"):
        argv += ["--project-root", missing]
    else:  # no settings: the devserver's own root check, the image's URL check
        argv += ["--mcp-url", "not-a-url"] if name == "image" else []
    code, out, err = in_process([*argv, "--json"])
    assert code == 2, err
    data = the_object(out)
    assert data["exit"] == 2 and data["title"] in ("Bad configuration", "Bad project", "Usage")
    assert one_line(err) == f"qms-panel: {data['title']}: {data['error']}"


def test_an_internal_error_is_one_line_and_one_object(in_process, monkeypatch, tmp_path):
    (tmp_path / "QMS").mkdir()

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr("tui.commands.config.run", broken)
    code, out, err = in_process(["config", "--json"])
    assert code == 1
    assert the_object(out) == {"error": "RuntimeError: a bug", "title": "Internal error", "exit": 1}
    assert one_line(err) == "qms-panel: internal error: RuntimeError: a bug (set QMS_PANEL_DEBUG=1 for the traceback)"


# --- the cases of the issue, through the real command line -----------------------------------


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "QMS").mkdir()
    return tmp_path


def test_a_toml_file_that_is_not_utf8(project):
    (project / "qms-panel.toml").write_bytes(b'image = "caf\xe9"\n')
    text = qms_panel("config", cwd=project)
    assert text.returncode == 2 and "qms-panel.toml: not UTF-8 text" in one_line(text.stderr)
    as_json = qms_panel("config", "--json", cwd=project)
    assert as_json.returncode == 2 and "not UTF-8" in the_object(as_json.stdout)["error"]


def test_a_keymap_environment_value_that_is_not_json(project):
    done = qms_panel("config", "--json", cwd=project, env={"QMS_PANEL_KEYMAP": "container.restart=ctrl+r"})
    assert done.returncode == 2
    assert "keymap: QMS_PANEL_KEYMAP is not valid JSON" in one_line(done.stderr)
    assert the_object(done.stdout)["title"] == "Bad configuration"


@pytest.mark.parametrize("command", ["config", "status"])
def test_an_unknown_keymap_id_is_refused_before_the_panel(project, command):
    done = qms_panel(command, "--container-prefix", "qmst-none-", "--mcp-url", "http://127.0.0.1:9/sse",
                     cwd=project, env={"QMS_PANEL_KEYMAP": '{"container.reboot": "ctrl+r"}'})
    assert done.returncode == 2
    assert "keymap: unknown binding id 'container.reboot'" in one_line(done.stderr)
    assert done.stdout == ""


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_devserver_port_out_of_range_is_a_usage_error(project, port):
    done = qms_panel("devserver", "--project-root", str(project), "--port", port, "--json")
    assert done.returncode == 2
    assert "is not a TCP port" in one_line(done.stderr)
    assert the_object(done.stdout)["exit"] == 2


@pytest.mark.parametrize("path", ["sse", "mcp"])
def test_status_against_a_server_that_never_answers_says_why(sample_project, silent_server, path):
    url = f"http://127.0.0.1:{silent_server}/{path}"
    done = qms_panel("status", "--project-root", str(sample_project), "--mcp-url", url, "--timeout", "1",
                     "--container-prefix", "qmst-none-")
    assert done.returncode == 1
    mcp = next(line for line in done.stdout.splitlines() if line.startswith("mcp"))
    assert "CONNECTING" in mcp and "None" not in mcp
    assert "no answer within 1 s" in mcp and "handshake did not complete" in mcp
    as_json = qms_panel("status", "--json", "--project-root", str(sample_project), "--mcp-url", url,
                        "--timeout", "1", "--container-prefix", "qmst-none-")
    assert "no answer within 1 s" in json.loads(as_json.stdout)["link"]["reason"]
