"""Every action of the command line on record: the real CLI against the real dev server (both transports)
and the real engine, then ``qms-panel history``; an action whose intent cannot be written does not run."""

from __future__ import annotations

import json
import os
import pwd
import socket
from pathlib import Path

import pytest

from core.action_log import LOG_NAME, ActionLog
from core.layout import workspace_dir
from core.qms_ops import find_meta
from test_cli_containers import AGENT_COMMAND, cli  # noqa: F401 - a fixture
from test_cli_mcp import op, qms_panel
from test_containers import cleanup  # noqa: F401 - a fixture

ME = pwd.getpwuid(os.getuid()).pw_name


def history(root: Path, state: Path, *args: str) -> list[dict]:
    done = qms_panel("history", "--json", "--project-root", str(root), "--state-dir", str(state), *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def broken_state(tmp_path: Path) -> Path:
    """A state folder whose log cannot be written (its name is taken by a folder; tests run as root, so
    permissions would not stop them)."""
    state = tmp_path / "broken-state"
    (state / LOG_NAME).mkdir(parents=True)
    return state


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
def test_qms_operations_are_on_record(sample_project, devserver_factory, tmp_path, transport):
    server = devserver_factory(sample_project, transport=transport)
    state = tmp_path / "state"
    flags = ("--state-dir", str(state))
    assert op("checkout", "CR-002", "claude", sample_project, server.url, *flags, "--reason", "review").returncode == 0
    assert op("checkin", "CR-002", "claude", sample_project, server.url, *flags).returncode == 0
    refused = op("checkout", "CR-001", "lead", sample_project, server.url, *flags, "--reason", "take over")
    assert refused.returncode == 1

    entries = history(sample_project, state)
    assert [(e["action"], e["doc_id"], e["agent"], e["result"], e["reason"]) for e in entries] == [
        ("checkout", "CR-002", "claude", "ok", "review"), ("checkin", "CR-002", "claude", "ok", None),
        ("checkout", "CR-001", "lead", "refused", "take over")]
    assert entries[1]["detail"].startswith("Checked in: CR-002")
    assert entries[2]["detail"] == "Error: CR-001 is checked out by claude"
    assert all(e["operator"]["user"] == ME and e["operator"]["host"] == socket.gethostname() for e in entries)
    assert all(e["started"] <= e["finished"] for e in entries)
    assert [e["action"] for e in history(sample_project, state, "--agent", "lead")] == ["checkout"]
    assert len(history(sample_project, state, "--since", "1h")) == 3
    assert history(sample_project, state, "--since", "2999-01-01T00:00") == []

    text = qms_panel("history", "--project-root", str(sample_project), "--state-dir", str(state))
    assert text.returncode == 0, text.stderr
    header, *rows = text.stdout.splitlines()
    assert header.split() == ["TIME", "(UTC)", "OPERATOR", "ACTION", "TARGET", "RESULT", "REASON"]
    assert len(rows) == 3 and f"{ME}@" in rows[0] and "CR-002 for claude" in rows[0] and rows[0].endswith("review")
    assert "refused (Error: CR-001 is checked out by claude)" in rows[2]


def test_a_checkin_whose_intent_cannot_be_written_does_not_run(sample_project, devserver, tmp_path):
    copy = workspace_dir(sample_project, "claude") / "CR-001.md"
    before = copy.read_bytes()
    done = op("checkin", "CR-001", "claude", sample_project, devserver.url, "--state-dir", str(broken_state(tmp_path)),
              "--json")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("qms-panel: Action log unwritable: cannot write ")
    assert done.stderr.strip().endswith("(Is a directory); checkin CR-001 for claude was not run")
    assert json.loads(done.stdout)["title"] == "Action log unwritable"
    assert find_meta(sample_project, "CR-001")["checked_out"] is True  # still checked out: nothing ran
    assert copy.read_bytes() == before

    (tmp_path / "a-file").write_text("")
    done = op("checkin", "CR-001", "claude", sample_project, devserver.url, "--state-dir", str(tmp_path / "a-file/x"))
    assert done.returncode == 2 and "state_dir: " in done.stderr and "is not a directory" in done.stderr
    assert find_meta(sample_project, "CR-001")["checked_out"] is True


def test_history_of_nothing_and_of_a_log_with_garbage(sample_project, tmp_path):
    state = tmp_path / "state"
    done = qms_panel("history", "--project-root", str(sample_project), "--state-dir", str(state))
    assert done.returncode == 0 and done.stdout.startswith("no actions on record for ")
    state.mkdir()
    (state / LOG_NAME).write_bytes(b"\x1b]0;owned\x07 not a record\n")
    done = qms_panel("history", "--json", "--project-root", str(sample_project), "--state-dir", str(state))
    assert done.returncode == 0 and json.loads(done.stdout) == []
    assert done.stderr.count("\n") == 1 and "1 line(s) of " in done.stderr and "\x1b" not in done.stderr
    ActionLog(state, project_root=sample_project).begin("checkin", agent="claude", doc_id="CR-001").finish(
        "refused", "Error: \x1b[2J\x1b]0;owned\x07 no")  # a hostile server reply, kept as data
    done = qms_panel("history", "--project-root", str(sample_project), "--state-dir", str(state))
    assert done.returncode == 0 and "\x1b" not in done.stdout
    assert "refused (Error: \\x1b[2J\\x1b]0;owned\\x07 no)" in done.stdout
    for bad, code in (("--since", "soon"), ("--agent", "Bad!")):
        done = qms_panel("history", "--project-root", str(sample_project), "--state-dir", str(state), bad, code)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.docker
def test_container_actions_are_on_record(cli, docker_client, unique_prefix, project_root, tmp_path):  # noqa: F811
    state = tmp_path / "state"
    flags = ("--state-dir", str(state))
    assert cli("launch", "claude", "--command", AGENT_COMMAND, *flags, "--reason", "new task").returncode == 0
    assert cli("stop", "claude", *flags).returncode == 0
    assert cli("restart", "qa", *flags).returncode == 1  # no such container: on record as an error
    assert cli("remove", "claude", "--volume", *flags, "--reason", "done").returncode == 0

    entries = history(project_root, state)
    name = f"{unique_prefix}claude"
    assert [(e["action"], e["agent"], e["container"], e["result"], e["reason"]) for e in entries] == [
        ("launch", "claude", name, "ok", "new task"), ("stop", "claude", name, "ok", None),
        ("restart", "qa", f"{unique_prefix}qa", "error", None), ("remove", "claude", name, "ok", "done")]
    assert entries[2]["detail"].startswith("No such agent container: ")
    assert entries[3]["detail"].endswith("removed")

    done = cli("launch", "claude", "--command", AGENT_COMMAND, "--state-dir", str(broken_state(tmp_path)))
    assert done.returncode == 1 and "launch claude was not run" in done.stderr
    assert docker_client.containers.list(all=True, filters={"name": unique_prefix}) == []  # not launched
