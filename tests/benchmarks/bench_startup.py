"""Benchmark (a script, not a test): process start to first frame, qms-panel against a bare Textual app.

    python tests/benchmarks/bench_startup.py [--runs 10] [--agents 3]

Side by side in one run, alternating, ``--runs`` times each, both started the same way: a new
``python`` process on a pseudo-terminal of 160x46 (TERM=xterm-256color), its output read by this
script as a terminal would receive it.

1. **bare**: this file with ``--bare``: a Textual app of plain Textual widgets laid out as the
   panel is (a one-line status bar, a DataTable with the Containers columns and a Static for the
   access matrix side by side, a DataTable for the Workspace, a RichLog for the Live stream, the
   Footer), with the panel's pane titles. Plain widgets, not the panel's pane classes: those
   import the core's models (pydantic), so the baseline would already carry part of what is
   measured; this is what Textual alone costs for the same screen.
2. **qms-panel**: ``python -m tui.cli`` on a sample project (``core.devserver.sample``) with the
   dev server running over SSE and, when an engine answers, ``--agents`` containers of the tests'
   busybox image running ``sleep``.

First frame: the moment the output received so far holds the layout (the pane titles
"Containers", "Access matrix", "Workspace" and "Live stream" and the footer's "quit", in any case). First complete frame
(qms-panel): the panel's ``QMS_PANEL_READY_FILE`` line ``complete <epoch>``, written after the
screen refresh that follows the containers' list and the QMS scan (the bare app has nothing to
fill in: its first frame is its complete frame). Times are from just before the spawn. Reports
the medians, and the ratios the issue bounds (first frame <= 2x, complete <= 3x).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLS, ROWS = 160, 46
LAYOUT = (b"containers", b"access matrix", b"workspace", b"live stream", b"quit")  # matched in lower case
LIMIT = 60.0  # seconds a run may take before it is given up


# --- the bare app (run by this file with --bare) ---------------------------------------------

def bare_app() -> int:
    from textual.app import App
    from textual.containers import Horizontal
    from textual.widgets import DataTable, Footer, RichLog, Static

    class Bare(App[None]):
        CSS = """
        #status { height: 1; dock: top; background: $panel; padding: 0 1; }
        #top { height: 14; }
        .pane { border: round $secondary; }
        #containers { width: 2fr; }
        #matrix { width: 1fr; }
        #workspace { height: 12; }
        #stream { height: 1fr; }
        """
        BINDINGS = [("q", "quit", "quit"), ("question_mark", "help", "help")]

        def compose(self):
            yield Static("qms-panel │ MCP ● starting │ Docker ● checking │ Gateway ● not running", id="status")
            with Horizontal(id="top"):
                containers = DataTable(id="containers", classes="pane")
                containers.border_title = "Containers"
                yield containers
                matrix = Static("Select a container to see its access matrix.", id="matrix", classes="pane")
                matrix.border_title = "Access matrix"
                yield matrix
            workspace = DataTable(id="workspace", classes="pane")
            workspace.border_title = "Workspace"
            yield workspace
            stream = RichLog(id="stream", classes="pane")
            stream.border_title = "Live stream"
            yield stream
            yield Footer()

        def on_mount(self) -> None:
            self.query_one("#containers", DataTable).add_columns(
                "AGENT", "STATE", "UP", "RST", "MCP", "LAST CALL", "CALLS", "USAGE", "INBOX", "OURS")
            self.query_one("#workspace", DataTable).add_columns(
                "DOCUMENT", "TITLE", "STATUS", "HELD BY", "HELD SINCE", "LAST EDIT", "STATE")

    Bare().run()
    return 0


# --- spawning on a pseudo-terminal -----------------------------------------------------------

def spawn(argv: list[str], env: dict[str, str], ready_file: Path | None, quit_when) -> dict[str, float | None]:
    """Run ``argv`` on a new pty; the seconds from spawn to the layout on screen and to ``complete``."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    t0_wall, t0 = time.time(), time.perf_counter()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO,
                            start_new_session=True, close_fds=True)
    os.close(slave)
    seen, first, complete, quit_sent = b"", None, None, None
    marks: dict[str, float] = {}
    try:
        while True:
            now = time.perf_counter()
            if now - t0 > LIMIT:
                break
            ready, _, _ = select.select([master], [], [], 0.01)
            if ready:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:
                    break  # the child has gone
                if not chunk:
                    break
                if first is None:
                    seen += chunk.lower()
                    if all(word in seen for word in LAYOUT):
                        first = time.perf_counter() - t0
            if ready_file is not None and complete is None and ready_file.exists():
                for line in ready_file.read_text().splitlines():
                    name, _, stamp = line.partition(" ")
                    if name == "complete":
                        complete = float(stamp) - t0_wall
                    marks[name] = float(stamp) - t0_wall
            if quit_sent is None and quit_when(first, complete):
                os.write(master, b"q")
                quit_sent = time.perf_counter()
            if quit_sent is not None and (proc.poll() is not None or time.perf_counter() - quit_sent > 10):
                break
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        os.close(master)
    return {"first": first, "complete": complete, "marks": marks}


# --- the run ---------------------------------------------------------------------------------

def engine_containers(root: Path, agents: list[str], prefix: str):
    """Launch ``agents`` for the project on the engine (None: no engine answers)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - no engine: the panel is measured without containers
        print(f"no Docker engine ({type(exc).__name__}); qms-panel runs without containers")
        return None, None
    from core.containers import ContainerManager
    from core.settings import Settings
    from support.docker_env import TEST_LABEL, ensure_test_image

    image = ensure_test_image(client)
    settings = Settings(project_root=root, agents=agents, image=image, container_prefix=prefix)
    manager = ContainerManager(settings, extra_labels={TEST_LABEL: "1"})
    for agent in agents:
        manager.launch(agent, command=["sleep", "3600"])
    return client, image


def fmt(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.3f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bare", action="store_true", help="run the bare app (what the benchmark spawns)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--agents", type=int, default=3)
    args = parser.parse_args()
    if args.bare:
        return bare_app()

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests"))
    from core.devserver.sample import init_project
    from support.devserver import DevServer

    tmp = Path(tempfile.mkdtemp(prefix="qms-bench-startup-"))
    root = tmp / "pipe-dream"
    init_project(root)
    server = DevServer(root, log_path=tmp / "devserver.log")
    server.start()
    prefix = f"qmst-bench-{uuid.uuid4().hex[:6]}-"
    agents = [f"agent-{i:02d}" for i in range(args.agents)]
    client = None
    try:
        client, image = engine_containers(root, agents, prefix)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QMS_PANEL_")}
        env |= {"TERM": "xterm-256color", "XDG_STATE_HOME": str(tmp / "state"), "PYTHONPATH": str(REPO)}
        env.pop("COLUMNS", None), env.pop("LINES", None)
        panel = [sys.executable, "-m", "tui.cli", "--project-root", str(root), "--mcp-url", server.url,
                 "--agents", ",".join(agents), "--container-prefix", prefix, "--state-dir", str(tmp / "state")]
        if image:
            panel += ["--image", image]
        bare = [sys.executable, str(Path(__file__).resolve()), "--bare"]
        results: dict[str, list[float]] = {"bare first": [], "panel first": [], "panel complete": []}
        misses = 0
        for i in range(args.runs):
            b = spawn(bare, env, None, lambda first, _c: first is not None)
            ready = tmp / f"ready-{i}"
            p = spawn(panel, env | {"QMS_PANEL_READY_FILE": str(ready)}, ready,
                      (lambda first, c: first is not None and c is not None) if client else
                      (lambda first, _c, t=time.perf_counter(): first is not None and time.perf_counter() - t > 5))
            for key, value in (("bare first", b["first"]), ("panel first", p["first"]),
                               ("panel complete", p["complete"])):
                if value is None:
                    misses += 1
                else:
                    results[key].append(value)
            print(f"run {i + 1:>2}: bare first {fmt(b['first'])}  panel first {fmt(p['first'])}  "
                  f"panel complete {fmt(p['complete'])}")
        med = {k: statistics.median(v) if v else None for k, v in results.items()}
        print()
        for key, value in med.items():
            print(f"{key + ' (median, s)':<34} {value:.3f}" if value is not None else f"{key:<34} n/a")
        if med["bare first"] and med["panel first"]:
            print(f"{'first frame: panel / bare':<34} {med['panel first'] / med['bare first']:.2f}x (bound 2x)")
        if med["bare first"] and med["panel complete"]:
            print(f"{'complete frame: panel / bare':<34} {med['panel complete'] / med['bare first']:.2f}x (bound 3x)")
        if misses:
            print(f"{misses} measurement(s) missing (not reached in {LIMIT:.0f} s)")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if client is not None:
            from support.docker_env import remove_by_prefix

            remove_by_prefix(client, prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
