"""`qms-panel logs AGENT [--follow]` through the real command line, on real containers."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from support.docker_env import TEST_LABEL
from test_cli_containers import cli, ok_json, refused  # noqa: F401 - cli is a fixture
from test_containers import cleanup  # noqa: F401 - a fixture

pytestmark = pytest.mark.docker
# the agent writes a terminal title and a screen clear among its lines, then one numbered line at a time
TALKER = ("sh -c 'printf \"hello\\n\\033]0;owned\\007\\033[2Jafter\\n\"; i=0; trap \"exit 0\" TERM; "
          "while true; do i=$((i+1)); echo tick $i; sleep 0.2; done'")


def test_logs_shows_the_containers_lines_made_safe(cli):
    ok_json(cli("launch", "claude", "--command", TALKER, "--json"))

    shown = cli("logs", "claude")
    as_json = cli("logs", "claude", "--json", "--tail", "all")

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[:2] == ["hello", "\\x1b]0;owned\\x07\\x1b[2Jafter"] and lines[2] == "tick 1"
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    objects = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert objects[1] == {"agent": "claude", "line": "\x1b]0;owned\x07\x1b[2Jafter"}  # JSON escapes it
    assert "\x1b" not in as_json.stdout
    last = cli("logs", "claude", "--tail", "1").stdout.splitlines()
    assert len(last) == 1 and last[0].startswith("tick ")


def test_logs_follow_prints_new_lines_until_ctrl_c_and_exits_0(cli, project_root, test_image, unique_prefix,
                                                                tmp_path):
    ok_json(cli("launch", "claude", "--command", TALKER, "--json"))
    seen_before = len(cli("logs", "claude").stdout.splitlines())
    args = ["logs", "claude", "--follow", "--project-root", str(project_root), "--container-prefix", unique_prefix]
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, env=qms_panel_env())
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        got: list[str] = []
        while len(got) < seen_before + 3:  # lines the container wrote after the command started
            got.append(lines.get(timeout=60).rstrip("\n"))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        proc.kill()
    assert got[0] == "hello" and got[-1] == f"tick {len(got) - 2}"
    assert proc.stderr.read() == ""


def test_logs_refuses_what_is_not_there_or_not_ours(cli, docker_client, test_image, unique_prefix):
    error = refused(cli("logs", "claude", "--json"), 1, "ContainerNotFound")
    assert error["error"].startswith(f"no container {unique_prefix}claude for agent 'claude'")
    plain = cli("logs", "claude", "--follow")
    assert plain.returncode == 1 and plain.stdout == "" and len(plain.stderr.splitlines()) == 1

    docker_client.containers.create(test_image, name=f"{unique_prefix}claude", labels={TEST_LABEL: "1"})
    error = refused(cli("logs", "claude", "--json"), 1, "NotManaged")
    assert "never reads the logs of containers it did not make" in error["error"]

    bad = cli("logs", "claude", "--tail", "-3")
    assert bad.returncode == 2 and "--tail" in bad.stderr and len(bad.stderr.splitlines()) == 1


def qms_panel_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QMS_PANEL_")}
    env["PYTHONPATH"] = str(Path(__file__).parent.parent)
    return env
