"""The action log on real files: records, pairing, torn and foreign lines, concurrent writers, following,
the state_dir setting, the commands' helper when a record cannot be written, and the panel's side (the
confirmation dialog's reason, the stream's ops lines)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import anyio
import pytest
from textual.app import App

from core.action_log import LOG_NAME, ActionLog, ActionRecord, Operator, SkippedLine, result_of_outcome
from core.errors import ActionLogError, CallTimeout, ContainerNotFound, SettingsError
from core.services import build_services
from core.settings import load_settings
from tui.commands._record import recorded
from tui.screens.confirm import Confirmation, ConfirmScreen
from tui.widgets.stream import LineMaker, StreamPane

ROOT = Path(__file__).parent.parent
OPERATOR = Operator(user="alice", host="ops-1")


@pytest.fixture
def log(project_root, tmp_path) -> ActionLog:
    return ActionLog(tmp_path / "state", operator=OPERATOR, project_root=project_root)


def lines(log: ActionLog) -> list[dict]:
    return [json.loads(line) for line in log.path.read_text().splitlines()]


def test_intent_then_result_one_json_line_each(log, project_root):
    ticket = log.begin("checkin", agent="claude", doc_id="CR-001", reason="  stuck since Monday ")
    assert [r["phase"] for r in lines(log)] == ["intent"]  # on record before the action runs
    done = ticket.finish("refused", "Error: CR-001 is checked out by\n lead \x1b[2J")

    intent, result = lines(log)
    assert intent["id"] == result["id"] == ticket.id
    assert intent["operator"] == {"user": "alice", "host": "ops-1", "sudo_user": None}
    assert (intent["project_root"], intent["action"], intent["agent"], intent["doc_id"]) == (
        str(project_root.resolve()), "checkin", "claude", "CR-001")
    assert (intent["result"], intent["reason"], result["reason"]) == (None, "stuck since Monday", "stuck since Monday")
    assert (result["result"], result["detail"]) == ("refused", "Error: CR-001 is checked out by lead \x1b[2J")
    assert datetime.fromisoformat(result["ts"]) >= datetime.fromisoformat(intent["ts"])
    assert result["ts"].endswith("Z") and len(result["ts"]) == len("2026-12-02T17:49:12.345Z")
    assert b"\x1b" not in log.path.read_bytes()  # stored as data, JSON-escaped: the file is safe to cat
    assert done.result == "refused" and log.path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError):
        ticket.finish("ok")  # one result per action


def test_read_pairs_filters_and_survives_restarts(log, project_root, tmp_path):
    log.begin("launch", agent="claude", container="qms-agent-claude").finish("ok", "running")
    log.begin("checkout", agent="qa", doc_id="CR-002").finish("ok", "Checked out: CR-002")
    log.begin("stop", agent="claude", container="qms-agent-claude")  # never finished
    other = tmp_path / "other"
    (other / "QMS").mkdir(parents=True)
    ActionLog(log.path, operator=OPERATOR, project_root=other).begin("remove", agent="claude").finish("ok")

    again = ActionLog(log.path.parent, project_root=project_root)  # a new process reads what the old one wrote
    entries = again.read().entries()
    assert [(e.action, e.target(), e.result) for e in entries] == [
        ("launch", "claude", "ok"), ("checkout", "CR-002 for qa", "ok"), ("stop", "claude", None)]
    assert entries[2].finished is None and entries[2].started is not None
    assert [e.action for e in again.read(agent="qa").entries()] == ["checkout"]
    assert len(again.read(all_projects=True).entries()) == 4
    assert again.read(since=datetime.now(UTC) + timedelta(minutes=1)).records == []
    assert len(again.read(since=datetime.now(UTC) - timedelta(hours=1)).entries()) == 3


def test_torn_and_foreign_lines_are_skipped_and_counted_and_never_swallow_a_record(log):
    log.begin("restart", agent="claude").finish("ok")
    with open(log.path, "ab") as fh:
        fh.write(b'not json at all\n{"ts": "yesterday"}\n[1, 2]\n{"ts":"2026-12-02T17:49:12.345Z","id":"x","op')
    history = log.read()
    assert len(history.records) == 2
    assert [s.line for s in history.skipped] == [3, 4, 5, 6]
    assert history.skipped[-1].reason == "torn last line (no newline)"

    log.begin("start", agent="claude").finish("ok")  # after a crash left a torn line
    history = log.read()
    assert [r.action for r in history.records] == ["restart", "restart", "start", "start"]
    assert len(history.skipped) == 4 and "torn" not in history.skipped[-1].reason


def test_an_unwritable_log_refuses_the_intent_and_says_so(project_root, tmp_path):
    (tmp_path / "state" / LOG_NAME).mkdir(parents=True)  # the log's name taken by a folder
    log = ActionLog(tmp_path / "state", operator=OPERATOR, project_root=project_root)
    with pytest.raises(ActionLogError) as caught:
        log.begin("checkin", agent="claude", doc_id="CR-001")
    assert str(caught.value) == (f"Action log unwritable: cannot write {tmp_path}/state/{LOG_NAME} (Is a directory); "
                                 "checkin CR-001 for claude was not run")

    (tmp_path / "file").write_text("")
    with pytest.raises(ActionLogError, match="was not run"):
        ActionLog(tmp_path / "file" / "state", project_root=project_root).begin("stop", agent="claude")


WRITER = """
import sys
from core.action_log import ActionLog, Operator
log = ActionLog(sys.argv[1], operator=Operator(user=sys.argv[2], host="h"), project_root=sys.argv[3])
for i in range(int(sys.argv[4])):
    log.begin("restart", agent="claude", reason=sys.argv[2] * 3000).finish("ok", str(i) * 1500)
"""


def test_two_processes_appending_at_once_never_interleave(log, project_root):
    count = 150
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(log.path), user, str(project_root), str(count)],
                                env=env) for user in ("a", "b")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    history = log.read()
    assert history.skipped == []
    assert len(history.records) == 2 * 2 * count  # intent and result of every action, each line whole
    for user in ("a", "b"):
        mine = [e for e in history.entries() if e.operator.user == user]
        assert len(mine) == count and all(e.result == "ok" and e.reason == user * 3000 for e in mine)


async def next_items(follower, count: int) -> list[ActionRecord | SkippedLine]:
    out = []
    with anyio.fail_after(15):  # a guard against a hang, not a timing assertion
        async for item in follower:
            out.append(item)
            if len(out) == count:
                return out
    return out


async def test_follow_hands_out_new_records_fresh_files_and_completed_lines(log, project_root, tmp_path):
    log.begin("launch", agent="old").finish("ok")  # before the follow: not handed out
    follower = log.follow(check_every_ms=200)
    log.begin("stop", agent="claude").finish("ok")  # after the call, before the watch exists: not missed
    got = await next_items(follower, 2)
    assert [(r.action, r.phase) for r in got] == [("stop", "intent"), ("stop", "result")]

    other = tmp_path / "other"
    (other / "QMS").mkdir(parents=True)
    ActionLog(log.path, project_root=other).begin("stop", agent="elsewhere").finish("ok")  # another project
    with open(log.path, "ab") as fh:
        fh.write(b"garbage\n")
        record = ActionRecord(ts=datetime.now(UTC), id="1", operator=OPERATOR, project_root=log.project_root,
                              action="start", agent="claude", phase="intent").model_dump_json().encode()
        fh.write(record[:20])  # a line still being written
        fh.flush()
        got = await next_items(follower, 1)
        assert isinstance(got[0], SkippedLine) and "not a record" in got[0].reason
        fh.write(record[20:] + b"\n")
    got = await next_items(follower, 1)
    assert (got[0].action, got[0].agent) == ("start", "claude")

    log.path.unlink()  # rotated away: the fresh file is read from its start
    log.begin("remove", agent="claude")
    got = await next_items(follower, 1)
    assert got[0].action == "remove"
    await follower.aclose()


# --- the commands' helper -----------------------------------------------------------------


def settings_for(project_root: Path, state: Path):
    return load_settings({"project_root": project_root, "state_dir": state})


def test_recorded_writes_the_error_an_action_raised(project_root, tmp_path):
    settings = settings_for(project_root, tmp_path / "state")

    def missing():
        raise ContainerNotFound("no container named qms-agent-claude")

    with pytest.raises(ContainerNotFound):
        recorded(argparse.Namespace(reason="wedged"), settings, "restart", missing, agent="claude")

    def timed_out():
        raise CallTimeout("checkin CR-001: no reply in 60 s")

    with pytest.raises(CallTimeout):
        recorded(argparse.Namespace(reason=None), settings, "checkin", timed_out, agent="claude", doc_id="CR-001")
    entries = ActionLog(settings.state_dir, project_root=project_root).read().entries()
    assert [(e.action, e.result, e.detail, e.reason) for e in entries] == [
        ("restart", "error", "No such agent container: no container named qms-agent-claude", "wedged"),
        ("checkin", "unknown", "MCP call timed out: checkin CR-001: no reply in 60 s", None)]


def test_recorded_says_loudly_when_the_action_ran_but_its_result_is_not_on_record(project_root, tmp_path):
    settings = settings_for(project_root, tmp_path / "state")
    log_file = settings.state_dir / LOG_NAME

    def stop_while_the_log_breaks():
        log_file.unlink()
        log_file.mkdir()  # the result cannot be written now
        return "stopped"

    with pytest.raises(ActionLogError) as caught:
        recorded(argparse.Namespace(reason=None), settings, "stop", stop_while_the_log_breaks, agent="claude",
                 result=lambda value: ("ok", value))
    assert caught.value.title == "Action not on record"
    assert caught.value.detail.startswith("stop claude ran (ok: stopped) but is not on record: cannot write ")


# --- the state_dir setting ------------------------------------------------------------------


def test_state_dir_defaults_to_xdg_state_home(project_root, tmp_path, monkeypatch):
    monkeypatch.delenv("QMS_PANEL_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert load_settings({"project_root": project_root}).state_dir == tmp_path / "xdg" / "qms-panel"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_settings({"project_root": project_root}).state_dir == tmp_path / "home/.local/state/qms-panel"


def test_state_dir_from_env_and_toml_relative_to_the_file(project_root, tmp_path, monkeypatch):
    monkeypatch.setenv("QMS_PANEL_STATE_DIR", str(tmp_path / "from-env"))
    assert load_settings({"project_root": project_root}).state_dir == tmp_path / "from-env"
    monkeypatch.delenv("QMS_PANEL_STATE_DIR")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "qms-panel.toml").write_text(f'project_root = "{project_root}"\nstate_dir = "records"\n')
    assert load_settings(config=tmp_path / "conf" / "qms-panel.toml").state_dir == tmp_path / "conf" / "records"


@pytest.mark.parametrize("where, why", [
    ("QMS/records", "is inside"), ("link/records", "is inside"), (".claude/users/claude/x", "agents' folders"),
    ("a-file/records", "is not a directory"), ("a-file", "is not a directory"), ("", "is empty")])
def test_state_dir_refused_inside_the_qms_or_where_it_cannot_be_a_folder(project_root, where, why):
    (project_root / "link").symlink_to(project_root / "QMS")  # links resolved
    (project_root / "a-file").write_text("")
    with pytest.raises(SettingsError) as caught:
        load_settings({"project_root": project_root, "state_dir": str(project_root / where) if where else ""})
    assert str(caught.value).startswith("Bad configuration: state_dir: ") and why in str(caught.value)
    assert "--state-dir / QMS_PANEL_STATE_DIR" in str(caught.value)


# --- the panel's side: the dialog's reason, the stream's "ops" lines -------------------------


class DialogApp(App):
    def __init__(self, **dialog) -> None:
        super().__init__()
        self.dialog = dialog
        self.answers: list[Confirmation] = []

    def on_mount(self) -> None:
        self.push_screen(ConfirmScreen("Check in CR-001 for claude", "What will happen.", confirm="Check in",
                                       blink=False, **self.dialog), self.answers.append)


@pytest.mark.parametrize("keys, answer", [
    (["s", "t", "u", "c", "k", "enter"], Confirmation(True, "stuck")),
    (["y", "e", "s", "tab", "tab", "enter"], Confirmation(True, "yes")),  # "y" in the field is text
    (["enter"], Confirmation(True, None)),
    (["n", "o", "escape"], Confirmation(False, None)),
])
async def test_the_confirmation_dialog_carries_the_reason(keys, answer):
    app = DialogApp(reason=True)
    async with app.run_test() as pilot:
        await pilot.press(*keys)
        await pilot.pause()
        assert app.answers == [answer]
        assert bool(app.answers[0]) is answer.confirmed  # callers that test the answer's truth still work


async def test_the_confirmation_dialog_without_a_reason_field_answers_as_before():
    app = DialogApp()
    async with app.run_test() as pilot:
        await pilot.press("y")
        await pilot.pause()
        assert app.answers == [Confirmation(True, None)] and not app.screen.query("#confirm-reason")


class StreamApp(App):
    def compose(self):
        yield StreamPane(maxlen=100)


async def test_followed_records_become_safe_ops_lines_in_the_stream(log):
    follower = log.follow(check_every_ms=200)
    ticket = log.begin("checkin", agent="claude", doc_id="CR-001", reason="stuck")
    ticket.finish("refused", "Error: \x1b]0;owned\x07 checked out by lead")
    with open(log.path, "ab") as fh:
        fh.write(b"foreign\n")
    maker = LineMaker()
    lines = [maker.action(item, datetime.now(UTC)) for item in await next_items(follower, 3)]
    await follower.aclose()
    assert [(ln.source, ln.agent, ln.level) for ln in lines] == [
        ("ops", "claude", "info"), ("ops", "claude", "warning"), ("ops", "panel", "warning")]
    assert lines[0].summary == "alice@ops-1: checkin CR-001 for claude (reason: stuck)"
    assert lines[1].summary == "checkin CR-001 for claude: refused: Error: \\x1b]0;owned\\x07 checked out by lead"
    assert lines[1].payload["id"] == ticket.id and "not a record" in lines[2].summary

    app = StreamApp()
    async with app.run_test() as pilot:
        pane = app.query_one(StreamPane)
        pane.extend(lines)
        await pilot.pause()
        assert pane.view.shown == 3  # the new source is shown beside the others


async def test_run_async_records_the_outcome_and_a_cancelled_action(log, project_root):
    class Outcome:
        status, reason, text = "ok", None, "Checked out: CR-002 (v0.1)\n  more"

    async def checkout():
        await anyio.sleep(0)
        return Outcome()

    assert isinstance(await log.run_async("checkout", checkout, result=result_of_outcome, agent="claude",
                                          doc_id="CR-002"), Outcome)
    started = anyio.Event()

    async def hangs():
        started.set()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(log.run_async, "checkin", hangs, agent="claude", doc_id="CR-002"))
        await started.wait()
        tg.cancel_scope.cancel()
    assert [(e.action, e.result, e.detail) for e in log.read().entries()] == [
        ("checkout", "ok", "Checked out: CR-002 (v0.1) more"),
        ("checkin", "unknown", "cancelled before it finished (the panel closed or gave up on it)")]


def test_the_services_bundle_carries_the_projects_log(project_root, tmp_path):
    settings = settings_for(project_root, tmp_path / "state")
    services = build_services(settings)
    assert services.actions.path == tmp_path / "state" / LOG_NAME
    assert services.actions.project_root == str(project_root.resolve()) and not services.actions.path.exists()
