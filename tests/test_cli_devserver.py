"""`qms-panel devserver`, `python -m core.devserver` and `qms-panel --demo` through the real command line."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from support.devserver import free_port

# the script of this interpreter's install (a `qms-panel` earlier on PATH may be another checkout's)
QMS_PANEL = str(Path(sys.executable).with_name("qms-panel"))


def qms_panel(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([QMS_PANEL, *args], capture_output=True, text=True, timeout=timeout)


def start(*cmd: str) -> tuple[subprocess.Popen, queue.Queue]:
    """A long-running command, and a queue that receives its stdout lines."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def next_line(proc: subprocess.Popen, lines: queue.Queue, timeout: float = 60) -> str:
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        proc.kill()
        pytest.fail(f"no output within {timeout} s")
    if not line:
        pytest.fail(f"exited with {proc.wait()}: {proc.stderr.read()}")
    return line


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("did not stop")


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_init_creates_the_sample_project_once(tmp_path):
    root = tmp_path / "sample"
    done = qms_panel("devserver", "--init", str(root))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"qms devserver: sample project created in {root.resolve()}"
    assert (root / "qms.config.json").is_file() and (root / ".claude/agents/qa.md").is_file()
    assert sorted(p.name for p in (root / "QMS/SOP").iterdir()) == ["SOP-001.md", "SOP-002.md", "SOP-003.md"]
    checked_out = json.loads((root / "QMS/.meta/CR/CR-001.json").read_text())
    assert (checked_out["checked_out"], checked_out["responsible_user"]) == (True, "claude")
    assert (root / ".claude/users/claude/workspace/CR-001.md").is_file()
    assert [p.name for p in (root / ".claude/users/qa/inbox").iterdir()] == ["task-CR-003-pre_review-v0-1.md"]
    seed = json.loads((root / "QMS/.audit/SOP/SOP-001.jsonl").read_text())
    assert (seed["action"], seed["user"]) == ("seed", "system")

    again = qms_panel("devserver", "--init", str(root), "--json")
    assert again.returncode == 1
    assert "already exists" in one_line(again.stderr)
    assert json.loads(again.stdout) == {"error": f"{root / 'QMS'} already exists; choose an empty folder for the "
                                                 "sample project", "title": "Bad project", "exit": 1}


def test_bad_project_root_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    cases = {tmp_path / "missing": "does not exist", tmp_path: "has no QMS/ folder"}
    for root, reason in cases.items():
        done = qms_panel("devserver", "--project-root", str(root), "--port", str(free_port()))
        assert done.returncode == 2, root
        assert reason in one_line(done.stderr)
    cases[tmp_path / "file.txt"] = "is not a directory"
    for root, reason in cases.items():
        module = subprocess.run([sys.executable, "-m", "core.devserver", "--project-root", str(root)],
                                capture_output=True, text=True, timeout=60)
        assert module.returncode == 2, root
        assert one_line(module.stderr).startswith("qms devserver: Bad project: ") and reason in module.stderr


def test_usage_errors_exit_2(sample_project):
    for args in (["devserver"], ["devserver", "--project-root", str(sample_project), "--identity-ttl", "0"]):
        done = qms_panel(*args)
        assert done.returncode == 2, args
        assert one_line(done.stderr).startswith("qms-panel: ")


def test_port_in_use_is_one_line_and_exit_1(devserver):
    done = qms_panel("devserver", "--project-root", str(devserver.project_root), "--port", str(devserver.port))
    assert done.returncode == 1
    assert one_line(done.stderr) == (
        f"qms-panel: Port in use: 127.0.0.1:{devserver.port} is already in use (another server running?)")


async def test_serve_announces_then_stops_on_sigint(sample_project):
    port = free_port()
    proc, lines = start(QMS_PANEL, "devserver", "--project-root", str(sample_project), "--port", str(port),
                        "--transport", "streamable-http")
    try:
        line = next_line(proc, lines)
        url = f"http://127.0.0.1:{port}/mcp"
        assert line == f"qms devserver: streamable-http on {url} (project {sample_project.resolve()})"
        with anyio.fail_after(30):
            async with streamable_http_client(url) as (read, write, _), ClientSession(read, write) as session:
                await session.initialize()
                result = await session.call_tool("qms_status", {"doc_id": "CR-001", "user": "claude"})
        assert "Checked Out: True" in result.content[0].text
    finally:
        code = stop(proc)
    assert code == 0
    err = proc.stderr.read()
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[qms-mcp\] INFO: Tool invocation: user=claude, "
                     r"args=\['status', 'CR-001'\]$", err, re.M), err
    assert "[qms-mcp] INFO: Tool result: status success=True" in err


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", "qms-panel-test", *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is needed to give the demo a real terminal")
def test_demo_opens_the_panel_on_a_sample_and_a_server_and_cleans_up(tmp_path):
    """`qms-panel --demo` in a real terminal (tmux): the panel shows the sample, q quits, all is removed."""
    done = tmp_path / "exit-code"
    tmux("new-session", "-d", "-s", "demo", "-x", "160", "-y", "46",
         f"{QMS_PANEL} --demo; echo $? > {done}; sleep 60")  # Textual draws on stderr: no redirect
    try:
        deadline = time.monotonic() + 90
        screen = ""
        while time.monotonic() < deadline:
            screen = tmux("capture-pane", "-p", "-t", "demo")
            if "connected" in screen and "claude" in screen:
                break
            time.sleep(0.5)
        assert "connected" in screen and "claude" in screen, screen
        gateways = subprocess.run(["pgrep", "-f", "tui.cli gateway --json --quiet --project-root .*qms-panel-demo-"],
                                  capture_output=True, text=True).stdout.split()
        assert len(gateways) == 1, "the demo runs one gateway of its own"
        tmux("send-keys", "-t", "demo", "q")
        while time.monotonic() < deadline and not done.exists():
            time.sleep(0.2)
        after = tmux("capture-pane", "-p", "-t", "demo")
        assert done.read_text().strip() == "0", after
    finally:
        subprocess.run(["tmux", "-L", "qms-panel-test", "kill-server"], capture_output=True)
    assert not Path(f"/proc/{gateways[0]}").exists(), "the demo's gateway stopped with it"
    removed = re.search(r"qms-panel demo: stopped; removed .* and (\S+)", after.replace("\n", ""))
    assert removed, after
    assert "qms-panel-demo-" in removed.group(1) and not Path(removed.group(1)).exists()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is needed to give the demo a real terminal")
@pytest.mark.parametrize("way_out", ["closed terminal", "SIGTERM"])
def test_the_demo_leaves_nothing_behind_when_its_terminal_closes_or_it_is_killed(way_out):
    """A closed terminal (SIGHUP) or SIGTERM: the demo's dev server, its gateway and its folder go too."""
    tmux("new-session", "-d", "-s", "demo", "-x", "160", "-y", "46", f"{QMS_PANEL} --demo")
    try:
        deadline = time.monotonic() + 60
        children: list[str] = []
        while time.monotonic() < deadline and len(children) < 2:
            children = subprocess.run(["pgrep", "-f", "project-root .*qms-panel-demo-"], capture_output=True,
                                      text=True).stdout.split()
            time.sleep(0.3)
        assert len(children) == 2, "the demo's dev server and gateway"
        folder = re.search(r"(/tmp/qms-panel-demo-\w+)", Path(f"/proc/{children[0]}/cmdline").read_text()).group(1)
        if way_out == "SIGTERM":
            demo = subprocess.run(["pgrep", "-f", f"^{re.escape(sys.executable)}.*qms-panel --demo|qms-panel --demo$"],
                                  capture_output=True, text=True).stdout.split()
            for pid in demo:
                os.kill(int(pid), signal.SIGTERM)
        else:
            subprocess.run(["tmux", "-L", "qms-panel-test", "kill-server"], capture_output=True)
        while time.monotonic() < deadline and (Path(folder).exists() or any(Path(f"/proc/{p}").exists()
                                                                               for p in children)):
            time.sleep(0.2)
        assert not Path(folder).exists() and not any(Path(f"/proc/{p}").exists() for p in children)
    finally:
        subprocess.run(["tmux", "-L", "qms-panel-test", "kill-server"], capture_output=True)
