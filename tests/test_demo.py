"""The live demo: `qms-panel --demo` in a real terminal (tmux), with and without an engine.

Its agents (busybox containers from the demo image, or host routines without an engine) do QMS
work through the demo's gateway to its dev server; the operator sees their calls, a document
turning stale, checks it in with ``c``; and every way out (q, ctrl+c, SIGTERM, a closed terminal)
leaves no container, volume, routine or folder of the demo behind. Each demo runs with its own
TMPDIR, so its folder is known and another demo on the machine is never mistaken for it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.containers import LABEL_MANAGED, LABEL_PROJECT_ROOT

QMS_PANEL = str(Path(sys.executable).with_name("qms-panel"))
SOCKET = f"qms-panel-demo-test-{os.getpid()}"
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux gives the demo a real terminal")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout


class Demo:
    """One `qms-panel --demo` in a tmux session of 160x46."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.tmp, self.done = tmp, tmp / "exit-code"
        tmp.mkdir(parents=True, exist_ok=True)
        prefix = " ".join(f"{k}={v}" for k, v in {"TMPDIR": str(tmp), **(env or {})}.items())
        tmux("new-session", "-d", "-s", "demo", "-x", "160", "-y", "46",
             # pytest-textual-snapshot sets COLUMNS/LINES (80x24) in pytest's environment: not the pane's size
             f"env -u COLUMNS -u LINES {prefix} {QMS_PANEL} --demo {' '.join(args)}; echo $? > {self.done}; sleep 120")

    def screen(self) -> str:
        return tmux("capture-pane", "-p", "-t", "demo")

    def keys(self, *keys: str) -> None:
        tmux("send-keys", "-t", "demo", *keys)

    def wait(self, predicate, what: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = predicate()
            if got:
                return got
            time.sleep(0.5)
        try:
            screen = self.screen()
        except subprocess.CalledProcessError:
            screen = "(the terminal is gone)"
        raise AssertionError(f"no {what} within {timeout:.0f} s; the screen:\n{screen}")

    @property
    def folder(self) -> Path:
        """The demo's temporary folder (its sample project is ``pipe-dream`` in it)."""
        return self.wait(lambda: next(iter(self.tmp.glob("qms-panel-demo-*")), None), "demo folder")

    def pid(self) -> int:
        """The demo's own process (the child of the pane's shell)."""
        pane = int(tmux("display-message", "-p", "-t", "demo", "#{pane_pid}").strip())
        return int(self.wait(lambda: subprocess.run(["pgrep", "-P", str(pane), "-f", "qms-panel"],
                                                    capture_output=True, text=True).stdout.split(), "demo process")[0])

    def exit_code(self) -> str:
        return self.wait(lambda: self.done.exists() and self.done.read_text().strip(), "exit", 60)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)


@pytest.fixture
def demo_factory(tmp_path):
    made: list[Demo] = []

    def make(*args: str, env: dict[str, str] | None = None) -> Demo:
        demo = Demo(tmp_path / f"demo{len(made)}", *args, env=env)
        made.append(demo)
        return demo

    yield make
    for demo in made:
        demo.close()


def ours(docker_client, root: Path) -> tuple[list[dict], list[dict]]:
    """The containers and volumes qms-panel made for the demo's project root."""
    labels = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_PROJECT_ROOT}={root.resolve()}"]}
    return (docker_client.api.containers(all=True, filters=labels),
            docker_client.api.volumes(filters=labels).get("Volumes") or [])


def running(docker_client, root: Path) -> list[str]:
    return [c["Names"][0].lstrip("/") for c in ours(docker_client, root)[0] if c["State"] == "running"]


STREAM_CALL = re.compile(r"agents\s+(claude|lead|qa)(?:@h\S*)?\s+qms_\w+")
STALE_ROW = re.compile(r"(CR-\d+)\s.*\bstale\b")
DIALOG_DOC = re.compile(r"Document\s+(CR-\d+)")


def callers(screen: str) -> set[str]:
    return set(STREAM_CALL.findall(screen))


def check_in_the_stale_one(demo: Demo, root: Path) -> str:
    """Press c on the stale document (moving down the Workspace pane until the dialog names it),
    confirm, and return its id once the panel says it is checked in."""
    stale = demo.wait(lambda: STALE_ROW.search(demo.screen()), "stale document").group(1)
    for _ in range(6):  # to the Workspace pane: the target line above the footer then offers a check-in
        if re.search(r"c check in CR-\d+", demo.screen()):
            break
        demo.keys("Tab")
        time.sleep(0.5)
    for _ in range(12):
        demo.keys("c")
        named = demo.wait(lambda: DIALOG_DOC.search(demo.screen()), "check-in dialog", 15).group(1)
        if named == stale:
            demo.keys("Enter")
            demo.wait(lambda: not meta(root, stale)["checked_out"], f"{stale} checked in")
            return stale
        demo.keys("Escape")
        time.sleep(0.5)
        demo.keys("Down")
    raise AssertionError(f"the dialog never named {stale}:\n{demo.screen()}")


def meta(root: Path, doc_id: str) -> dict:
    return json.loads((root / "QMS" / ".meta" / "CR" / f"{doc_id}.json").read_text())


@pytest.mark.docker
@pytest.mark.slow
def test_the_demo_shows_agents_at_work_a_stale_document_is_checked_in_and_q_leaves_nothing(demo_factory,
                                                                                          docker_client):
    demo = demo_factory()
    folder = demo.folder
    root = folder / "pipe-dream"
    agents = demo.wait(lambda: len(running(docker_client, root)) >= 3 and running(docker_client, root),
                       "three running demo agents")
    assert all(re.fullmatch(r"qms-demo-[0-9a-f]{6}-(claude|lead|qa)", name) for name in agents), agents
    demo.wait(lambda: len(callers(demo.screen())) >= 2, "agents' calls in the stream")
    doc = check_in_the_stale_one(demo, root)
    assert not meta(root, doc)["checked_out"]
    # the rogue was refused by the gateway and by the read-only mount; its log says so
    qa = next(name for name in agents if name.endswith("-qa"))
    log = demo.wait(lambda: (text := docker_client.api.logs(qa).decode()) and "read-only" in text
                    and "refused" in text and text, "the rogue's refusals in its log")
    assert "qms_inbox -> refused" in log and "claude" in log
    demo.keys("q")
    assert demo.exit_code() == "0"
    said = demo.screen()
    assert re.search(r"removed 3 container\(s\), 3 volume\(s\), 0 host routine\(s\)", said), said
    assert ours(docker_client, root) == ([], [])
    assert not folder.exists()


@pytest.mark.slow
def test_without_an_engine_the_demo_runs_simulated_agents_on_the_host(demo_factory):
    demo = demo_factory(env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    folder = demo.folder
    root = folder / "pipe-dream"
    demo.wait(lambda: "Start dockerd" in demo.screen(), "how to get an engine")
    demo.wait(lambda: len(callers(demo.screen())) >= 2, "simulated agents' calls in the stream")
    assert "@h" in demo.screen()  # a host client's call names the agent it called as, marked as the host's
    routines = subprocess.run(["pgrep", "-P", str(demo.pid()), "-f", f"routine.sh simulated-.* {root}"],
                              capture_output=True, text=True).stdout.split()  # the demo's children, not their subshells
    assert len(routines) == 3
    doc = check_in_the_stale_one(demo, root)
    assert not meta(root, doc)["checked_out"]
    demo.keys("q")
    assert demo.exit_code() == "0"
    assert "removed 0 container(s), 0 volume(s), 3 host routine(s)" in demo.screen()
    assert not any(Path(f"/proc/{pid}").exists() for pid in routines)
    assert not subprocess.run(["pgrep", "-f", f"routine.sh simulated-.* {root}"], capture_output=True).stdout
    assert not folder.exists()


@pytest.mark.docker
@pytest.mark.parametrize("way_out", ["ctrl+c", "SIGTERM", "closed terminal"])
def test_every_way_out_removes_what_the_demo_made_even_a_container_launched_from_it(demo_factory, docker_client,
                                                                                    way_out):
    demo = demo_factory("--agents", "claude,lead,qa,extra")
    root = demo.folder / "pipe-dream"
    demo.wait(lambda: len(running(docker_client, root)) >= 3, "three running demo agents")
    demo.keys("Down", "Down", "Down")  # extra: declared, no container; s launches it as the panel launches any agent
    demo.wait(lambda: re.search(r"extra\s+not created", demo.screen()), "extra's row")
    demo.keys("s")
    demo.wait(lambda: len(running(docker_client, root)) == 4, "extra launched from the demo")
    folder, pid = demo.folder, demo.pid()
    if way_out == "ctrl+c":
        demo.keys("C-c")
        assert demo.exit_code() == "0"
    elif way_out == "SIGTERM":
        os.kill(pid, signal.SIGTERM)
    else:
        demo.close()  # the terminal goes: SIGHUP
    demo.wait(lambda: not Path(f"/proc/{pid}").exists(), "the demo to end", 90)
    assert ours(docker_client, root) == ([], [])
    assert not folder.exists()


@pytest.mark.docker
def test_the_demo_image_is_made_here_and_cached(docker_client):
    from core.demo.image import DEMO_IMAGE_REPO, demo_image_recipe, ensure_demo_image

    tag, _, _ = demo_image_recipe()
    assert tag.startswith(DEMO_IMAGE_REPO + ":") and demo_image_recipe()[0] == tag  # the tag is the content's
    said: list[str] = []
    assert ensure_demo_image(docker_client, said.append) == tag
    again: list[str] = []
    assert ensure_demo_image(docker_client, again.append) == tag and again == []  # cached: nothing to build
    config = docker_client.api.inspect_image(tag)["Config"]
    assert config["Cmd"] == ["/bin/sh", "/bin/qms-demo-routine"] and "HOME=/" in config["Env"]
