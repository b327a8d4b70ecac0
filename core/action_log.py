"""The operator's action log: who did what through qms-panel, to which agent or document, and how it ended.

Every action the operator takes (checkout, checkin and repair on behalf of an agent; launch,
restart, stop, start and remove of its container) is two JSON lines in ``<state_dir>/actions.jsonl``,
sharing the action's ``id``: an ``intent`` record written *before* the action runs, and a
``result`` record after it with the result as classified (``ok``, ``refused``,
``identity-locked``, ``error``, ``unknown``). If the intent cannot be written the action must not
run (:meth:`ActionLog.begin` raises); if the result cannot be written, :meth:`ActionTicket.finish`
raises an error that says the action happened but is not on record.

One file for every project, each record naming its project root; :meth:`ActionLog.read` and
:meth:`ActionLog.follow` hand out this project's records. One file is one place to audit and back
up, and a project that moves or is renamed keeps its history readable under its old root.

Appending is one ``os.write`` of a whole line on an ``O_APPEND`` descriptor, then ``fsync``: the
kernel appends each write whole, so the lines of concurrent writers (the panel and a command in
another terminal) never interleave. A line torn by a crash (the file does not end in a newline)
is ended before the next record goes in, so it can never swallow that record.

Reading tolerates what it cannot parse: a torn last line or a foreign line is skipped and counted
(:class:`SkippedLine`), never a crash. Records keep agent-controlled text (server replies in
``detail``) as data, JSON-escaped; whoever shows it passes it through :mod:`core.safe_text`.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import pwd
import socket
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Literal, NamedTuple, Protocol, TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, ValidationError, field_serializer
from watchfiles import awatch

from core.errors import ActionLogError, CallTimeout, QmsPanelError

LOG_NAME = "actions.jsonl"
DETAIL_MAX = 2000  # characters of a result's detail kept (a server reply can be long)
ACTIONS = ("checkout", "checkin", "repair", "launch", "restart", "stop", "start", "remove")

Phase = Literal["intent", "result"]
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Operator(BaseModel):
    """Who acted: the OS user of this process and the machine it runs on (and, under sudo, who ran sudo)."""

    model_config = ConfigDict(frozen=True)

    user: str
    host: str
    sudo_user: str | None = None

    @classmethod
    def current(cls) -> Operator:
        uid = os.getuid()
        try:
            user = pwd.getpwuid(uid).pw_name  # by uid: USER/LOGNAME in the environment are not asked
        except KeyError:
            user = str(uid)
        return cls(user=user, host=socket.gethostname(), sudo_user=os.environ.get("SUDO_USER") or None)

    def label(self) -> str:
        who = f"{self.user}@{self.host}"
        return f"{who} (sudo by {self.sudo_user})" if self.sudo_user else who


class ActionRecord(BaseModel):
    """One line of the log: the intent to act, or the result of the action with the same ``id``."""

    model_config = ConfigDict(frozen=True)

    ts: datetime  # UTC
    id: str
    operator: Operator
    project_root: str
    action: str  # one of ACTIONS (a newer qms-panel's actions still read)
    agent: str | None = None
    doc_id: str | None = None
    container: str | None = None
    phase: Phase
    result: str | None = None  # result records only
    detail: str = ""
    reason: str | None = None

    @field_serializer("ts")
    def _ts(self, ts: datetime) -> str:
        return iso_ms(ts)

    def subject(self) -> str:
        """``checkin CR-001 for claude``, ``stop claude`` (plain text; make it safe to show it)."""
        if self.doc_id:
            return f"{self.action} {self.doc_id} for {self.agent}"
        return f"{self.action} {self.agent or self.container or ''}".rstrip()


class ActionEntry(BaseModel):
    """One action: its intent and its result paired by id (either may be missing from the file)."""

    id: str
    action: str
    operator: Operator
    project_root: str
    agent: str | None = None
    doc_id: str | None = None
    container: str | None = None
    reason: str | None = None
    started: datetime | None = None  # the intent's time (None: no intent record)
    finished: datetime | None = None  # the result's time (None: no result recorded)
    result: str | None = None
    detail: str = ""

    @field_serializer("started", "finished")
    def _times(self, ts: datetime | None) -> str | None:
        return iso_ms(ts) if ts else None

    @property
    def time(self) -> datetime:
        return self.started or self.finished  # type: ignore[return-value] - one of them is set

    def target(self) -> str:
        if self.doc_id:
            return f"{self.doc_id} for {self.agent}"
        return self.agent or self.container or "-"


class SkippedLine(BaseModel):
    """A line of the log that is not a record (torn by a crash, or written by something else)."""

    path: Path
    line: int  # 1-based; 0 when the position is not known (following)
    reason: str


class ActionHistory(BaseModel):
    """What :meth:`ActionLog.read` found: the records, in file order, and the lines it skipped."""

    path: Path
    records: list[ActionRecord]
    skipped: list[SkippedLine]

    def entries(self) -> list[ActionEntry]:
        return pair(self.records)


def iso_ms(ts: datetime) -> str:
    """``2026-12-02T17:49:12.345Z``."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pair(records: Iterable[ActionRecord]) -> list[ActionEntry]:
    """Intent and result records -> one entry per action id, in the order the actions began."""
    entries: dict[str, ActionEntry] = {}
    for rec in records:
        entry = entries.get(rec.id)
        if entry is None:
            entry = entries[rec.id] = ActionEntry(
                id=rec.id, action=rec.action, operator=rec.operator, project_root=rec.project_root,
                agent=rec.agent, doc_id=rec.doc_id, container=rec.container, reason=rec.reason)
        if rec.phase == "intent":
            entry.started = rec.ts
        else:
            entry.finished, entry.result, entry.detail = rec.ts, rec.result, rec.detail
    return list(entries.values())


def result_of_error(err: BaseException) -> tuple[str, str]:
    """The result and detail to record when an action raised ``err``.

    A call that timed out may still have been carried out by the server, and so may an action cut
    short (interrupted, cancelled) or ended by an error that is not of the family: those are
    ``unknown``. Every other error of the family ended the action: ``error`` with its one line.
    """
    if isinstance(err, CallTimeout):
        return "unknown", err.one_line()
    if isinstance(err, QmsPanelError):
        return "error", err.one_line()
    if isinstance(err, KeyboardInterrupt):
        return "unknown", "interrupted by the operator"
    if isinstance(err, asyncio.CancelledError):  # the panel runs on asyncio; recorded from a thread
        return "unknown", "cancelled before it finished (the panel closed or gave up on it)"
    return "unknown", f"{type(err).__name__}: {err}"


class Classified(Protocol):
    """An outcome that classified itself (:class:`core.qms_ops.OpOutcome`)."""

    status: str
    reason: str | None
    text: str


def result_of_outcome(outcome: Classified) -> tuple[str, str]:
    """The result and detail to record for a classified outcome: its status, and the server's
    reply when it is ok, else the reason line."""
    detail = outcome.text if outcome.status == "ok" else (outcome.reason or outcome.text)
    return outcome.status, detail


def ok_result(_value: object) -> tuple[str, str]:
    """The result of an action that returned: ``ok``, nothing more to say."""
    return "ok", ""


def one_line(text: str) -> str:
    return " ".join(text.split())[:DETAIL_MAX]


# --- writing ------------------------------------------------------------------------------


def _append_line(path: Path, line: bytes) -> None:
    """Append ``line`` (ending in a newline) with one write, then fsync; raise OSError."""
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n":
            line = b"\n" + line  # end a torn line first: it must not swallow this record
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(errno.EIO, f"short write ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


@dataclass
class ActionTicket:
    """An action whose intent is on record; :meth:`finish` records how it ended (once)."""

    log: ActionLog
    intent: ActionRecord
    result: ActionRecord | None = None

    @property
    def id(self) -> str:
        return self.intent.id

    def finish(self, result: str, detail: str = "") -> ActionRecord:
        """Write the result record; raise :class:`ActionLogError` ("not on record") if that fails."""
        if self.result is not None:
            raise ValueError(f"action {self.id} already finished ({self.result.result})")
        record = self.intent.model_copy(update={"ts": self.log.now(), "phase": "result", "result": result,
                                                "detail": one_line(detail)})
        try:
            self.log.append(record)
        except OSError as exc:
            said = f"{result}: {record.detail}" if record.detail else result
            raise ActionLogError(f"{record.subject()} ran ({said}) but is not on record: cannot write "
                                 f"{self.log.path} ({_why(exc)})", title="Action not on record") from None
        self.result = record
        return record

    def fail(self, err: BaseException) -> ActionRecord:
        """Record the result of an action that raised ``err`` (see :func:`result_of_error`)."""
        return self.finish(*result_of_error(err))


class _Pos(NamedTuple):
    ident: tuple[int, int]  # (st_dev, st_ino): a new inode is a fresh file
    offset: int  # just after the last complete line handed out


class ActionLog:
    """The action log of one project: append, read, follow (see the module docstring).

    ``path_or_dir``: the log file (a name ending in ``.jsonl``) or the state folder that holds
    ``actions.jsonl``. ``operator``: who acts (default: this process's user and host).
    """

    def __init__(self, path_or_dir: Path | str, *, operator: Operator | None = None,
                 project_root: Path | str, now: Callable[[], datetime] | None = None) -> None:
        given = Path(path_or_dir).expanduser()
        self.path = given if given.suffix == ".jsonl" else given / LOG_NAME
        self.project_root = str(Path(project_root).resolve())
        self.operator = operator or Operator.current()
        self.now = now or utc_now

    # --- writing ---

    def begin(self, action: str, *, agent: str | None = None, doc_id: str | None = None,
              container: str | None = None, reason: str | None = None) -> ActionTicket:
        """Write the intent record of ``action``; raise :class:`ActionLogError` if it cannot be
        written (then the action must not run)."""
        if action not in ACTIONS:
            raise ValueError(f"{action!r} is not an action on record ({', '.join(ACTIONS)})")
        record = ActionRecord(ts=self.now(), id=str(uuid.uuid4()), operator=self.operator,
                              project_root=self.project_root, action=action, agent=agent, doc_id=doc_id,
                              container=container, phase="intent", reason=(reason or "").strip() or None)
        try:
            self.append(record)
        except OSError as exc:
            raise ActionLogError(f"cannot write {self.path} ({_why(exc)}); {record.subject()} was not run") from None
        return ActionTicket(self, record)

    def run(self, action: str, work: Callable[[], T], *, result: Callable[[T], tuple[str, str]] = ok_result,
            agent: str | None = None, doc_id: str | None = None, container: str | None = None,
            reason: str | None = None) -> T:
        """Run ``work`` on record: the intent, then ``result(value)`` (default ``ok``) or the error it
        raised (raised on once recorded). Blocking (fsync): the panel calls it in a thread worker.

        Raises :class:`ActionLogError` without running ``work`` if the intent cannot be written,
        and after it ran if its result cannot (the error's line says what happened).
        """
        ticket = self.begin(action, agent=agent, doc_id=doc_id, container=container, reason=reason)
        try:
            value = work()
        except BaseException as err:
            ticket.fail(err)
            raise
        ticket.finish(*result(value))
        return value

    async def run_async(self, action: str, work: Callable[[], Awaitable[T]], *,
                        result: Callable[[T], tuple[str, str]] = ok_result, agent: str | None = None,
                        doc_id: str | None = None, container: str | None = None, reason: str | None = None) -> T:
        """:meth:`run` for an async action (the MCP operations); the records are written in a thread,
        and a cancelled action is still recorded (as ``unknown``)."""
        ticket = await anyio.to_thread.run_sync(partial(self.begin, action, agent=agent, doc_id=doc_id,
                                                        container=container, reason=reason))
        try:
            value = await work()
        except BaseException as err:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(ticket.fail, err)
            raise
        await anyio.to_thread.run_sync(ticket.finish, *result(value))
        return value

    def append(self, record: ActionRecord) -> None:
        """Append ``record`` as one line (raises OSError)."""
        line = json.dumps(record.model_dump(mode="json"), ensure_ascii=True, separators=(",", ":"))
        _append_line(self.path, (line + "\n").encode("ascii"))

    # --- reading ---

    def read(self, *, since: datetime | None = None, agent: str | None = None,
             all_projects: bool = False) -> ActionHistory:
        """This project's records (every project's with ``all_projects``), in file order.

        ``agent``: only actions for that agent. ``since``: only actions with a record at or after
        that time (an action begun before and finished after keeps both records).
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return ActionHistory(path=self.path, records=[], skipped=[])
        except OSError as exc:
            raise ActionLogError(f"cannot read {self.path} ({_why(exc)})", title="Action log unreadable") from None
        records: list[ActionRecord] = []
        skipped: list[SkippedLine] = []
        lines = data.split(b"\n")
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            if number == len(lines):
                skipped.append(SkippedLine(path=self.path, line=number, reason="torn last line (no newline)"))
                break
            parsed = self._parse(raw, number)
            if isinstance(parsed, SkippedLine):
                skipped.append(parsed)
            elif self._wanted(parsed, agent, all_projects):
                records.append(parsed)
        if since is not None:
            recent = {r.id for r in records if r.ts >= since}
            records = [r for r in records if r.id in recent]
        return ActionHistory(path=self.path, records=records, skipped=skipped)

    def _parse(self, raw: bytes, number: int) -> ActionRecord | SkippedLine:
        try:
            return ActionRecord.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "line"
            return SkippedLine(path=self.path, line=number, reason=f"not a record ({where}: {first.get('msg')})")

    def _wanted(self, record: ActionRecord, agent: str | None, all_projects: bool = False) -> bool:
        return ((all_projects or record.project_root == self.project_root)
                and (agent is None or record.agent == agent))

    # --- following ---

    def follow(self, *, check_every_ms: int = 1000) -> AsyncIterator[ActionRecord | SkippedLine]:
        """This project's records appended from now on, as they are appended (for the live stream).

        The position is taken when this is called, so nothing appended after the call is missed.
        A file that is replaced or truncated is read again from its start. The state folder is
        watched (made if missing); it is also looked at every ``check_every_ms``, which covers
        what a watch cannot see. Runs until cancelled; a follow that ends is a failure.
        """
        return self._follow(self._position(), check_every_ms)

    def _position(self) -> _Pos | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return _Pos((st.st_dev, st.st_ino), st.st_size)

    async def _follow(self, pos: _Pos | None, check_every_ms: int) -> AsyncIterator[ActionRecord | SkippedLine]:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ActionLogError(f"cannot make {folder} ({_why(exc)})", title="Action log unreadable") from None
        name = self.path.name
        new, pos = await anyio.to_thread.run_sync(self._read_new, pos)
        for item in new:
            yield item
        async for _ in awatch(folder, watch_filter=lambda _change, path: Path(path).name == name, debounce=200,
                              step=20, rust_timeout=check_every_ms, yield_on_timeout=True, recursive=False):
            new, pos = await anyio.to_thread.run_sync(self._read_new, pos)
            for item in new:
                yield item

    def _read_new(self, pos: _Pos | None) -> tuple[list[ActionRecord | SkippedLine], _Pos | None]:
        try:
            with self.path.open("rb") as fh:
                st = os.fstat(fh.fileno())
                ident = (st.st_dev, st.st_ino)
                # a fresh file (new inode) or a truncated one: everything in it is new
                offset = pos.offset if pos is not None and pos.ident == ident and st.st_size >= pos.offset else 0
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return [], None
        except OSError as exc:
            return [SkippedLine(path=self.path, line=0, reason=f"cannot read: {_why(exc)}")], pos
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for its newline
        out: list[ActionRecord | SkippedLine] = []
        for raw in complete.split(b"\n"):
            if raw.strip():
                parsed = self._parse(raw, 0)
                if isinstance(parsed, SkippedLine) or self._wanted(parsed, None):
                    out.append(parsed)
        return out, _Pos(ident, offset + len(complete))


def for_settings(settings, *, operator: Operator | None = None,
                 now: Callable[[], datetime] | None = None) -> ActionLog:
    """The action log of ``settings``' project, in its ``state_dir``."""
    return ActionLog(settings.state_dir, operator=operator, project_root=settings.project_root, now=now)
