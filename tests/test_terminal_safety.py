"""Nothing an agent, a file, a container or a server wrote drives the terminal or is read as markup.

A real project whose workspace holds a file named with ``ESC[2J``, an OSC title sequence and
Rich markup, whose ``.meta`` holder and status carry control characters, and whose copy's title
is markup; the real dev server (its replies echo those fields); a real container that prints
escapes. The command line runs in a subprocess (its output has no control byte but newlines);
the panel runs under Textual's pilot, and every screen it shows is exported and read.
"""

from __future__ import annotations

import ast
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.containers import ContainerManager
from core.services import build_services
from core.settings import Settings
from support.docker_env import TEST_LABEL
from test_tui_pilot import until
from tui import cli
from tui.app import make_app

ROOT = Path(__file__).parent.parent
SIZE = (160, 46)
ESC_NAME = "\x1b[2J\x1b]0;owned\x07[bold red]x"  # a file name cannot hold "/": the markup stays open
HOLDER = "claude\x1b]0;owned\x07\x1b[2J[bold red]x[/]\u202e"  # and a bidi override
TITLE = "x [bold red]x[/] \x1b]0;owned\x07"
RAW = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")  # controls but \n; bidi


def hostile(root: Path) -> Path:
    """The sample project, with agent-written text everywhere an agent can write it."""
    workspace = root / ".claude" / "users" / "claude" / "workspace"
    (workspace / f"{ESC_NAME}.md").write_text("an agent's file\n")
    copy = workspace / "CR-001.md"
    copy.write_text(re.sub(r"^title: .*$", f"title: {TITLE}", copy.read_text(), count=1, flags=re.M))
    meta_path = root / "QMS" / ".meta" / "CR" / "CR-001.json"
    meta = json.loads(meta_path.read_text())
    meta |= {"responsible_user": HOLDER, "status": "DRAFT\x1b[31m"}
    meta_path.write_text(json.dumps(meta))
    return root


def qms_panel(*args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QMS_PANEL_")}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True,
                          env={**clean, "PYTHONPATH": str(ROOT)}, timeout=60)


def assert_shown_not_sent(text: str, *visible: str) -> None:
    raw = sorted(set(RAW.findall(text)))
    assert not raw, f"raw control characters {raw!r} in:\n{text}"
    for needle in visible:
        assert needle in text, f"{needle!r} not shown in:\n{text}"


def test_the_panes_helpers_show_text_visibly_and_keep_styles():
    from rich.text import Text

    from tui.formats import plain, safe_rich, short

    assert plain("[bold red]x[/]\x1b[2J").plain == "[bold red]x[/]\\x1b[2J"
    assert plain("[bold red]x[/]").spans == []  # the markup is text, not style
    mixed = Text.assemble(("doc\x1b[2J", "bold"), " by ", (HOLDER, "red"), "\nnext\x07line")
    clean = safe_rich(mixed)  # (Rich itself drops BEL, BS, VT, FF and CR when a Text is made)
    assert clean.plain == "doc\\x1b[2J by claude\\x1b]0;owned\\x1b[2J[bold red]x[/]\\u202e\nnextline"
    assert [(clean.plain[s.start:s.end], s.style) for s in clean.spans] == [
        ("doc\\x1b[2J", "bold"), ("claude\\x1b]0;owned\\x1b[2J[bold red]x[/]\\u202e", "red")]
    already = Text("safe", style="green")
    assert safe_rich(already) is already  # nothing to clean: the same object, no cost
    assert short(ESC_NAME, 12) == "\\x1b[2J\\x1b…"


# --- the command line ------------------------------------------------------------------------


def test_status_text_shows_agent_written_names_visibly(sample_project):
    root = hostile(sample_project)
    done = qms_panel("status", "--project-root", str(root), "--mcp-url", "http://127.0.0.1:9/sse",
                     "--timeout", "1", "--container-prefix", "qmst-none-")
    assert done.returncode == 1  # no server: the report is printed all the same
    assert_shown_not_sent(done.stdout + done.stderr, "\\x1b[2J\\x1b]0;owned\\x07[bold red]x",
                          "claude\\x1b]0;owned\\x07\\x1b[2J[bold red]x[/]\\u202e", "DRAFT\\x1b[31m")


def test_status_json_stays_exact(sample_project):
    root = hostile(sample_project)
    done = qms_panel("status", "--json", "--project-root", str(root), "--mcp-url", "http://127.0.0.1:9/sse",
                     "--timeout", "1", "--container-prefix", "qmst-none-")
    assert not RAW.search(done.stdout)  # the encoder escaped them...
    report = json.loads(done.stdout)  # ...and they decode to exactly what is on disk
    assert {c["holder"] for c in report["checkouts"]} >= {HOLDER}
    assert ESC_NAME in {c["doc_id"] for c in report["checkouts"]}


def test_a_server_reply_on_the_command_line_shows_visibly(sample_project, devserver_factory):
    root = hostile(sample_project)
    server = devserver_factory(root)
    done = qms_panel("checkout", "CR-001", "--agent", "claude", "--project-root", str(root),
                     "--mcp-url", server.url)
    assert done.returncode == 1  # the server says it is checked out by the hostile holder
    assert_shown_not_sent(done.stdout + done.stderr, "claude\\x1b]0;owned\\x07\\x1b[2J")


@pytest.mark.parametrize("name", cli.command_names())
def test_every_command_prints_through_the_safe_streams(monkeypatch, capsys, name):
    """Whatever a command prints, on stdout or stderr, reaches the terminal made safe."""
    module = cli._load(name)

    def run(args) -> int:
        print(f"{ESC_NAME} out")
        print(f"{ESC_NAME} err", file=sys.stderr)
        sys.stdout.writelines([f"{HOLDER}\n"])
        return 0

    monkeypatch.setattr(module, "run", run)
    monkeypatch.setattr(cli, "quiet_library_logs", lambda: None)
    argv = {"attach": ["claude"], "checkin": ["X-1", "--agent", "a"], "checkout": ["X-1", "--agent", "a"],
            "repair": ["X-1", "--agent", "a"], "image": ["build"], "launch": ["a"], "remove": ["a"],
            "restart": ["a"], "start": ["a"], "stop": ["a"], "devserver": ["--init", "x"], "logs": ["a"]}.get(name, [])
    assert cli.main([name, *argv]) == 0
    out, err = capsys.readouterr()
    assert_shown_not_sent(out + err, "\\x1b[2J\\x1b]0;owned\\x07[bold red]x out", "[bold red]x err", "[/]")


def test_no_command_writes_around_the_safe_streams():
    """A guard: the safe streams are sys.stdout / sys.stderr; nothing in the command line may
    write to the process's original streams, their byte buffers or the file descriptors."""
    files = [ROOT / "tui" / "cli.py", *sorted((ROOT / "tui" / "commands").glob("*.py"))]
    bypass = re.compile(r"sys\.__std(out|err)__|\.buffer\b|os\.write\(|sys\.stdout\.fileno|open\(['\"]/dev/tty")
    found = [f"{path.name}:{i}: {line.strip()}" for path in files
             for i, line in enumerate(path.read_text().splitlines(), 1)
             if bypass.search(line) and "devnull" not in line]
    assert not found, found
    for path in files:  # print(..., file=X) only to sys.stdout / sys.stderr
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                for kw in node.keywords:
                    if kw.arg == "file":
                        assert ast.unparse(kw.value) in ("sys.stdout", "sys.stderr"), f"{path.name}: {ast.unparse(node)}"


# --- the panel ---------------------------------------------------------------------------------


def screen_text(app) -> str:
    """What the terminal shows, read from the exported screen (SVG text, unescaped)."""
    svg = app.export_screenshot()
    text = "\n".join(re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S))
    return html.unescape(re.sub(r"<[^>]+>", "", text)).replace("\xa0", " ")


def echoes(line) -> bool:
    """The stream line of the server's reply that carries the hostile holder."""
    return line.source == "mcp" and "]0;owned" in json.dumps(line.payload)


@pytest.mark.docker
async def test_the_panel_shows_agent_written_text_visibly_in_every_pane(sample_project, devserver_factory,
                                                                         test_image, unique_prefix):
    root = hostile(sample_project)
    server = devserver_factory(root)
    settings = Settings(project_root=root, agents=["claude"], image=test_image, mcp_url=server.url,
                        container_prefix=unique_prefix)
    ContainerManager(settings, extra_labels={TEST_LABEL: "1"}).launch("claude", command=[
        "sh", "-c", r"printf '\033[2J\033]0;owned\007 [bold red]log[/]\n'; sleep 3600"])
    services = build_services(settings, extra_labels={TEST_LABEL: "1"})
    app = make_app(settings, services)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.main.scanned and len(app.main.checkouts) >= 3, "the scan")
            await until(pilot, lambda: app.main.link is not None and app.main.link.status == "connected", "the link")
            await until(pilot, lambda: app.main.container_row("claude") is not None, "claude's container")
            # a server reply that echoes the holder, in the live stream
            reply = await services.link.call_tool("qms_status", {"doc_id": "CR-001", "user": "lead"})
            assert "\x1b]0;owned" in reply.text
            await until(pilot, lambda: any(echoes(line) for line in app.main.stream.view.lines()), "the reply in the stream")
            await pilot.pause(0.2)
            main = screen_text(app)
            assert_shown_not_sent(main, "\\x1b[2J\\x1b]0;", "claude\\x", "x [bold red]x[/] \\x1b")

            # the reply's payload screen
            app.main.stream.view.focus()
            await pilot.press("end")
            view = app.main.stream.view
            while view.selected is not None and not echoes(view.selected):
                await pilot.press("up")
            await pilot.press("enter")
            await until(pilot, lambda: type(app.screen).__name__ == "PayloadScreen", "the payload screen")
            await pilot.pause(0.2)
            assert_shown_not_sent(screen_text(app), "claude\\u001b]0;owned\\u0007", "[/]\\u202e")
            await pilot.press("escape")

            # the repair dialog of the document whose holder has no workspace (a missing copy)
            app.main.workspace.focus()
            await until(pilot, lambda: app.main.workspace.selected is not None, "a selected document")
            for _ in range(len(app.main.checkouts)):
                if app.main.workspace.selected.holder == HOLDER:
                    break
                await pilot.press("down")
            await pilot.press("R")
            await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", "the repair dialog")
            await pilot.pause(0.2)
            assert_shown_not_sent(screen_text(app), "for claude\\x1b]0;owned",
                                  "claude\\x1b]0;owned\\x07\\x1b[2J[bold red]x[/]\\u202e")
            await pilot.press("escape")

            # the logs screen of a container that prints escapes
            app.main.containers_pane.focus()
            await pilot.press("l")
            await until(pilot, lambda: type(app.screen).__name__ == "LogsScreen", "the logs screen")
            await until(pilot, lambda: "[bold red]log[/]" in screen_text(app), "the container's line")
            assert_shown_not_sent(screen_text(app), "\\x1b[2J\\x1b]0;owned\\x07 [bold red]log[/]")
    finally:
        services.close()
