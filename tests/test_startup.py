"""Startup: the panel's first frame needs Textual and the core's light models, nothing slower.

The Docker SDK, the MCP SDK, httpx and requests are loaded by ``build_services`` in a thread
after the first frame (``tui/startup.py``); here they cannot be imported at all, and the panel's
modules (the entry, the app, every screen and pane) must import all the same.
"""

import json
import subprocess
import sys
from pathlib import Path

from support.import_block import import_without

ROOT = Path(__file__).parent.parent
SLOW = ("docker", "mcp", "httpx", "httpx_sse", "requests", "urllib3", "uvicorn", "starlette")
PANEL = ["tui.cli", "tui.launch", "tui.app", "tui.screens.main", "tui.screens.logs", "tui.screens.help"]


def import_blocked(modules: list[str], then: str = "") -> subprocess.CompletedProcess:
    return import_without(SLOW, modules, then=then, test="startup")


def test_the_panel_and_its_entry_import_without_the_slow_libraries():
    # the entry with no command names builds its parser without loading a command module
    proc = import_blocked(PANEL, then="import tui.cli as c; c.build_parser(only='').parse_args(['--agents', 'a'])")
    assert proc.returncode == 0, f"the first frame would wait for a slow library:\n{proc.stderr[-2000:]}"
    assert json.loads(proc.stdout) == []


def test_the_blocker_stops_what_the_services_need():
    """The check can fail: the services' own modules do need the blocked libraries."""
    for module, first_use, library in (("core.mcp_link", "", "httpx"), ("core.containers", "import core.containers; core.containers.docker.errors",
                                                                      "docker")):
        proc = import_blocked([module], then=first_use)
        assert proc.returncode != 0 and f"blocked by the startup test: {library}" in proc.stderr


def test_a_deferred_library_loads_on_first_use():
    proc = subprocess.run([sys.executable, "-c", (
        "import sys, core.engine as e, core.containers, core.doctor\n"
        "from core.lazy_import import loaded\n"
        "before = loaded(e.docker), loaded(e.requests), 'httpx' in sys.modules\n"
        "e.docker.errors.NotFound, e.requests.exceptions.Timeout, core.doctor.httpx.TimeoutException\n"
        "print(before, loaded(e.docker), loaded(e.requests), 'httpx' in sys.modules)\n")],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["(False,", "False,", "False)", "True", "True", "True"]


# --- run_app in a real terminal: prepare after the first frame, before the services -----------

SCRIPT = '''
import sys, time
from pathlib import Path
from core.errors import QmsPanelError
from core.settings import load_settings
import tui.launch

events, release, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

def note(line):
    with events.open("a") as fh:
        fh.write(line + "\\n")

build = tui.launch._build
def recorded_build(settings):  # observed, not replaced: the real services are built
    note("build")
    return build(settings)
tui.launch._build = recorded_build

def prepare(say):
    note("prepare")
    say("preparing: waiting for the test")
    while not release.exists():
        time.sleep(0.05)
    if mode == "fail":
        raise QmsPanelError("port 8000 is in use", title="Demo server failed")
    note("prepared")

def after(say):
    note("after")
    say("after: the panel is live")

settings = load_settings({"project_root": sys.argv[4], "agents": "claude,lead", "mcp_url": "http://127.0.0.1:9/sse"})
code = tui.launch.run_app(settings, prepare=prepare, after=after)
note(f"exit {code}")
'''


class Terminal:
    """A tmux session at 160x46 running one command, on a tmux server of its own; its screen as text."""

    def __init__(self, name: str, command: str) -> None:
        self.name = name
        self.tmux = ["tmux", "-L", name, "-f", "/dev/null"]  # its own server and no config: nothing else touches it
        subprocess.run([*self.tmux, "new-session", "-d", "-s", name, "-x", "160", "-y", "46", command], check=True)
        subprocess.run([*self.tmux, "resize-window", "-t", name, "-x", "160", "-y", "46"], check=True)

    def screen(self) -> str:
        done = subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return done.stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def wait_for(what: str, check, limit: float = 60.0):
    """Poll until ``check()`` is truthy (a liveness bound, not a timing assertion)."""
    import time

    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.1)


def lines(path: Path) -> list[str]:
    return [line.split()[0] if line.startswith(("first-frame", "complete")) else line
            for line in path.read_text().splitlines()] if path.exists() else []


def start_panel(tmp_path, sample_project, mode: str):
    import shutil
    import uuid

    if shutil.which("tmux") is None:
        import pytest

        pytest.skip("tmux is not installed")
    script, events, release = tmp_path / "panel.py", tmp_path / "events", tmp_path / "release"
    script.write_text(SCRIPT)
    command = (f"cd {ROOT} && env -u COLUMNS -u LINES PYTHONPATH={ROOT} QMS_PANEL_READY_FILE={events} TERM=xterm-256color {sys.executable} {script} "
               f"{events} {release} {mode} {sample_project}")
    return Terminal(f"qmst-startup-{uuid.uuid4().hex[:8]}", command), events, release


def test_prepare_runs_after_the_first_frame_and_before_the_services(tmp_path, sample_project):
    term, events, release = start_panel(tmp_path, sample_project, "ok")
    try:
        # prepare holds until released: the layout and its progress line are on screen meanwhile
        try:
            screen = wait_for("the layout and prepare's line", lambda: (s := term.screen()) and "Containers" in s
                              and "preparing: waiting for the test" in s and s)
        except AssertionError:
            raise AssertionError(f"screen:\n{term.screen()}\nevents: {lines(events)}") from None
        assert "Connecting to the Docker engine" in screen and "Workspace" in screen
        assert lines(events) == ["first-frame", "prepare"]  # no services while prepare runs
        release.touch()
        wait_for("after's line", lambda: "after: the panel is live" in term.screen())
        assert lines(events)[:5] == ["first-frame", "prepare", "prepared", "build", "after"]
        term.keys("q")
        wait_for("the exit", lambda: "exit 0" in lines(events))
    finally:
        term.close()


def test_a_failing_prepare_leaves_the_panel_open_with_its_line(tmp_path, sample_project):
    term, events, release = start_panel(tmp_path, sample_project, "fail")
    try:
        wait_for("prepare", lambda: "prepare" in lines(events))
        release.touch()
        screen = wait_for("the failure's line", lambda: (s := term.screen()) and "port 8000 is in use" in s and s)
        assert "Demo server failed" in screen and "Traceback" not in screen
        wait_for("the services, built all the same", lambda: "build" in lines(events))
        term.keys("?")  # still alive: keys work, the help opens
        wait_for("the help screen", lambda: "qms-panel keys" in term.screen())
        term.keys("Escape")  # (alone: an escape followed at once by q would read as alt+q)
        wait_for("the help closed", lambda: "qms-panel keys" not in term.screen())
        term.keys("q")
        wait_for("the exit", lambda: "exit 0" in lines(events))
        assert "after" not in lines(events)  # after is skipped when prepare failed
    finally:
        term.close()
