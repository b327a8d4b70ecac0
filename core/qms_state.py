"""QMS state read from the project's files: who holds which document since when, what sits in
each workspace and inbox, and which checkouts look stuck.

The files are the ones the QMS CLI writes (``../shared/reference/qms-contract.md`` sections 2,
3, 4, 6 and 9). Nothing here writes to the project, and nothing asks the MCP server.

**One row per checked-out document**, with a state; the first that applies wins:

1. ``missing-copy``: the meta says checked out, the holder's workspace has no ``<ID>.md``.
   It comes first because nothing else can be done until it is repaired: the owner can
   neither check it in nor out (contract 9), and checkin-for-the-holder, the cure for the two
   states below, fails on it too.
2. ``orphaned``: the holder has no running container, so nobody works on the copy; checking
   it in on the holder's behalf finishes it. Only when containers are known (``None`` means
   unknown and never orphans).
3. ``stale``: the holder runs, but the copy has not been modified for ``stuck_after``. A hint
   only: the agent may be reading or thinking.
4. ``ok``.

A copy that is not a regular, singly linked file (a symlink, a folder, a fifo, a device, a hard
link) is ``unsafe`` whatever else applies: checkin and repair refuse it, and the scanner never
reads through it (an agent can point a workspace entry at ``/etc/shadow``, or make a fifo that
would block a reader forever): entries are ``lstat``ed, titles read with ``O_NOFOLLOW |
O_NONBLOCK`` (:mod:`core.qms_files`). A workspace or inbox folder that is itself a link is not
listed; that is a warning.

A workspace ``*.md`` with no matching checkout (the document is not checked out, or is held by
someone else) is a row too, ``unmanaged``, held by the workspace's owner.

**Held since** is the UTC time of the holder's last CHECKOUT line in
``QMS/.audit/<TYPE>/<ID>.jsonl``, else of its CREATE line (create logs no CHECKOUT), else the
local midnight of ``checked_out_date`` (``held_since_source`` says which).

**Speed.** A full scan reads every ``.meta`` file (one ``read`` each, the unavoidable part), but
the audit file only of checked-out documents, and that from the end, a block at a time, until
the holder's last CHECKOUT or CREATE. Folders are listed with ``os.scandir``. The snapshot keeps
a small index of every document (type, version, status, meta path) so that
:func:`rescan_paths` re-reads only the files that changed, and :func:`restate` re-derives the
states for a new time or container list without any I/O.

**Bad data never stops the scan**: an unreadable or invalid ``.meta``, audit line, task file or
folder becomes a :class:`ScanWarning` naming the file and the reason. Audit lines are parsed
only where the search needs them (lines that mention CHECKOUT or CREATE), so an invalid line
elsewhere in an audit file goes unreported by the scanner (the watcher reports new ones).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Iterable, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, PrivateAttr

from core.errors import ProjectError, QmsFileUnreadable, UnsafeCopy
from core.qms_files import (
    AUDIT_DIR,
    META_DIR,
    NAMESPACES_FILE,
    SOURCE_SUFFIX,
    USERS_DIR,
    audit_path,
    entry_problem,
    inbox_dir,
    open_folder,
    read_entry,
    workspace_dir,
)

if TYPE_CHECKING:  # the scanner never loads docker: rows are only read
    from core.containers import ContainerRow
from core.settings import AGENT_ID_RE

__all__ = ["AUDIT_DIR", "META_DIR", "USERS_DIR", "RowState", "ScanWarning", "WorkspaceFile", "InboxTask",
           "CheckoutRow", "QmsSnapshot", "AuditRecord", "audit_record", "parse_time", "sha256", "scan",
           "rescan_paths", "restate", "running_agents", "classify_path"]

TAIL_BLOCK = 16 * 1024  # audit files are read backwards in blocks of this size
HEAD_BYTES = 4 * 1024  # a workspace copy's frontmatter (title) sits in its first bytes

_YAML = getattr(yaml, "CBaseLoader", yaml.BaseLoader)  # every scalar stays a string: "1.10" != 1.1
_TASK_NAME = re.compile(r"^task-(?P<doc>.+)-(?P<wf>(?:pre_|post_)?(?:review|approval))-v(?P<ver>[0-9-]+)\.md$")

HeldSinceSource = Literal["checkout", "create", "date"]


# --- internal index ---------------------------------------------------------------------


class _Doc(NamedTuple):
    """What the scan keeps of every document's meta (cheap: 10,000 of these are nothing)."""

    meta_path: str
    type_dir: str
    doc_type: str
    version: str | None
    status: str | None
    checked_out: bool
    holder: str | None
    checked_out_date: date | None


class _Hold(NamedTuple):
    """What the audit tail says about a checked-out document."""

    since: datetime | None
    source: HeldSinceSource | None
    title: str | None  # from the CREATE event, when the tail reached it


class RowState(StrEnum):
    OK = "ok"
    STALE = "stale"
    ORPHANED = "orphaned"
    MISSING_COPY = "missing-copy"
    UNMANAGED = "unmanaged"
    UNSAFE = "unsafe"  # the copy is a link, folder, fifo, device or hard link: never read, never checked in


class ScanWarning(BaseModel):
    """A file (or folder) the scan could not use, and why."""

    model_config = ConfigDict(frozen=True)

    path: Path
    reason: str


class WorkspaceFile(BaseModel):
    """A ``<ID>.md`` in an agent's workspace (the CLI lists only ``*.md``)."""

    model_config = ConfigDict(frozen=True)

    agent: str
    name: str
    doc_id: str
    path: Path
    size: int
    mtime: datetime  # UTC
    title: str | None = None  # from the copy's frontmatter
    unsafe: str | None = None  # why it is not a regular, singly linked file ("is a symlink"), else None

    def sha256(self) -> str:
        return sha256(self.path)


class InboxTask(BaseModel):
    """A ``task-*.md`` in an agent's inbox (contract 6)."""

    model_config = ConfigDict(frozen=True)

    agent: str
    file: str
    task_type: str | None  # REVIEW | APPROVAL
    workflow: str | None  # REVIEW, PRE_REVIEW, ..., POST_APPROVAL
    doc_id: str | None
    from_user: str | None  # assigned_by
    date: date | None  # assigned_date (the server's local day)
    version: str | None
    title: str | None


class CheckoutRow(BaseModel):
    """A checked-out document (or an unmanaged workspace copy) and its state."""

    model_config = ConfigDict(frozen=True)

    doc_id: str
    doc_type: str | None
    version: str | None
    status: str | None
    title: str | None
    holder: str | None  # responsible_user; the workspace owner for an unmanaged copy
    held_since: datetime | None  # UTC
    held_since_source: HeldSinceSource | None
    checked_out_date: date | None
    workspace_file: WorkspaceFile | None
    last_edit: datetime | None  # the workspace copy's mtime (UTC)
    state: RowState


class QmsSnapshot(BaseModel):
    """Everything one scan found. Build with :func:`scan`; update with :func:`rescan_paths`
    (files changed) or :func:`restate` (time passed, containers changed)."""

    model_config = ConfigDict(frozen=True)

    project_root: Path
    checkouts: list[CheckoutRow]
    workspaces: dict[str, list[WorkspaceFile]]
    inboxes: dict[str, list[InboxTask]]
    warnings: list[ScanWarning]
    scanned_at: datetime
    stuck_after: timedelta
    running_agents: frozenset[str] | None  # None: containers unknown

    _docs: dict[str, _Doc] = PrivateAttr(default_factory=dict)
    _holds: dict[str, _Hold] = PrivateAttr(default_factory=dict)
    _given_agents: tuple[str, ...] = PrivateAttr(default=())

    @property
    def agents(self) -> list[str]:
        return list(self.workspaces)

    def inbox_count(self, agent: str) -> int:
        return len(self.inboxes.get(agent, ()))

    def row(self, doc_id: str) -> CheckoutRow | None:
        """The checkout row of ``doc_id``, else its first unmanaged copy, else None."""
        found = [r for r in self.checkouts if r.doc_id == doc_id]
        found.sort(key=lambda r: r.state is RowState.UNMANAGED)
        return found[0] if found else None

    def rows(self, state: RowState | None = None, *, holder: str | None = None) -> list[CheckoutRow]:
        return [
            r for r in self.checkouts
            if (state is None or r.state is state) and (holder is None or r.holder == holder)
        ]


class AuditRecord(NamedTuple):
    """One audit line, either shape (contract 4), normalised."""

    time: datetime | None
    user: str | None
    event: str
    version: str | None
    details: dict[str, Any]


_RECORD_KEYS = frozenset({"ts", "timestamp", "event", "action", "user", "version", "details"})


def audit_record(rec: dict[str, Any]) -> AuditRecord:
    """Normalise ``{"ts","event","user","version",...}`` and the seed's
    ``{"timestamp","action","user","details":{...}}`` into one record."""
    details = {k: v for k, v in rec.items() if k not in _RECORD_KEYS}
    if isinstance(rec.get("details"), dict):
        details.update(rec["details"])
    version = rec.get("version", details.get("version"))
    user = rec.get("user")
    return AuditRecord(
        time=parse_time(rec.get("ts", rec.get("timestamp"))),
        user=user if isinstance(user, str) else None,
        event=str(rec.get("event") or rec.get("action") or "").upper(),
        version=None if version is None else str(version),
        details=details,
    )


def parse_time(value: Any) -> datetime | None:
    """An ISO timestamp as UTC (a naive one is taken as UTC, as the CLI writes UTC), else None."""
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file (a workspace copy), read on demand, never through a link or from a fifo."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with open(fd, "rb") as fh:
            if entry_problem(os.fstat(fd)):
                raise OSError(errno.EINVAL, f"not a regular file ({entry_problem(os.fstat(fd))})")
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        raise QmsFileUnreadable(f"{path}: {exc.strerror or exc}") from None


# --- public entry points ----------------------------------------------------------------


def scan(
    project_root: Path,
    *,
    agents: list[str] | None = None,
    containers: Iterable[ContainerRow] | None = None,
    stuck_after: timedelta,
    now: datetime | None = None,
) -> QmsSnapshot:
    """Read the whole QMS state of ``project_root``.

    ``agents``: ids to report even without a folder; every folder under ``.claude/users`` is
    added. ``containers``: rows with ``.agent`` and ``.state`` (``"running"`` counts); None
    means unknown, and then nothing is orphaned.
    """
    root = Path(project_root).resolve()
    if not (root / "QMS").is_dir():
        raise ProjectError(f"{root} has no QMS/ folder (is it the project root?)")
    warnings: list[ScanWarning] = []
    docs, holds = _scan_metas(root, warnings)
    given = tuple(dict.fromkeys(agents or ()))
    workspaces: dict[str, list[WorkspaceFile]] = {}
    inboxes: dict[str, list[InboxTask]] = {}
    for agent in _agent_ids(root, given, warnings):
        workspaces[agent] = _list_workspace(root, agent, (), warnings)
        inboxes[agent] = _list_inbox(root, agent, warnings)
    return _snapshot(root, docs, holds, workspaces, inboxes, warnings, given,
                     running_agents(containers), stuck_after, now)


def rescan_paths(snapshot: QmsSnapshot, paths: Iterable[Path | str], *, now: datetime | None = None) -> QmsSnapshot:
    """A new snapshot with only what ``paths`` touch re-read.

    A changed meta file re-reads that file (and its audit tail if checked out); an audit file
    re-reads its tail if the document is checked out; anything under an agent's workspace or
    inbox re-lists that folder (unchanged workspace copies are reused, not re-read); a changed
    agent folder re-lists both; a ``.meta/<TYPE>`` folder re-reads the metas in it.
    Paths outside those areas are ignored. Containers are kept from ``snapshot``.
    """
    root = snapshot.project_root
    docs, holds = dict(snapshot._docs), dict(snapshot._holds)
    workspaces, inboxes = dict(snapshot.workspaces), dict(snapshot.inboxes)
    warnings = list(snapshot.warnings)
    meta_files: set[str] = set()
    type_dirs: set[str] = set()
    audit_ids: set[str] = set()
    ws_agents: set[str] = set()
    inbox_agents: set[str] = set()
    for raw in paths:
        path = Path(raw)
        for area, agent in classify_path(root, path):
            if area == "meta":
                depth = len(path.relative_to(root).parts)
                if depth == 4 and path.suffix == ".json":
                    meta_files.add(str(path))
                elif depth == 3 and path.suffix != ".json":
                    type_dirs.add(path.name)  # a type folder came or went
            elif area == "audit" and path.suffix == ".jsonl":
                audit_ids.add(path.stem)
            elif area == "workspace":
                ws_agents.add(agent)
            elif area == "inbox":
                inbox_agents.add(agent)

    for type_dir in sorted(type_dirs):
        warnings = _drop(warnings, os.path.join(root, *META_DIR, type_dir), os.path.join(root, *AUDIT_DIR, type_dir))
        for doc_id in [d for d, doc in docs.items() if doc.type_dir == type_dir]:
            docs.pop(doc_id)
            holds.pop(doc_id, None)
        _scan_type_dir(root, type_dir, docs, holds, warnings)
    for meta_path in sorted(meta_files):
        type_dir, doc_id = Path(meta_path).parent.name, Path(meta_path).stem
        if type_dir in type_dirs:
            continue
        warnings = _drop(warnings, meta_path, _audit_path(root, type_dir, doc_id))
        docs.pop(doc_id, None)
        holds.pop(doc_id, None)
        _read_doc(root, meta_path, type_dir, doc_id, docs, holds, warnings)
    for doc_id in sorted(audit_ids - {Path(p).stem for p in meta_files}):
        doc = docs.get(doc_id)
        if doc is not None and doc.checked_out and doc.type_dir not in type_dirs:
            audit = _audit_path(root, doc.type_dir, doc_id)
            warnings = _drop(warnings, audit)
            holds[doc_id] = _hold(audit, doc, warnings)

    known = set(workspaces)
    for agent in sorted(ws_agents | inbox_agents):
        if not AGENT_ID_RE.match(agent):
            continue
        folder = root.joinpath(*USERS_DIR, agent)
        if not folder.is_dir() and agent not in snapshot._given_agents:
            workspaces.pop(agent, None)
            inboxes.pop(agent, None)
            warnings = _drop(warnings, str(folder))
            continue
        if agent in ws_agents or agent not in known:
            warnings = _drop(warnings, str(workspace_dir(root, agent)))
            workspaces[agent] = _list_workspace(root, agent, workspaces.get(agent, ()), warnings)
        if agent in inbox_agents or agent not in known:
            warnings = _drop(warnings, str(inbox_dir(root, agent)))
            inboxes[agent] = _list_inbox(root, agent, warnings)
    return _snapshot(root, docs, holds, workspaces, inboxes, warnings, snapshot._given_agents,
                     snapshot.running_agents, snapshot.stuck_after, now)


def restate(snapshot: QmsSnapshot, containers: Iterable[ContainerRow] | None, *, now: datetime | None = None) -> QmsSnapshot:
    """The same files, new states: for a new container list (None: unknown) or a later ``now``.
    No I/O."""
    return _snapshot(snapshot.project_root, snapshot._docs, snapshot._holds, snapshot.workspaces,
                     snapshot.inboxes, list(snapshot.warnings), snapshot._given_agents,
                     running_agents(containers), snapshot.stuck_after, now)


def running_agents(containers: Iterable[ContainerRow] | None) -> frozenset[str] | None:
    """Agents with a running container (None: not known)."""
    if containers is None:
        return None
    return frozenset(c.agent for c in containers if c.agent and c.state == "running")


Area = Literal["meta", "audit", "workspace", "inbox"]


def classify_path(root: Path, path: Path | str) -> list[tuple[Area, str | None]]:
    """Which part of the state a changed path belongs to: ``[(area, agent)]``, empty if none.

    An agent folder itself (``.claude/users/<a>``) belongs to both its workspace and inbox.
    """
    try:
        parts = PurePath(path).relative_to(root).parts
    except ValueError:
        return []
    if parts[:2] == META_DIR and len(parts) > 2:
        name = parts[-1]
        if name.endswith(SOURCE_SUFFIX) or (len(parts) == 3 and name == NAMESPACES_FILE):
            return []
        return [("meta", None)]
    if parts[:2] == AUDIT_DIR and len(parts) > 2:
        return [("audit", None)]
    if parts[:2] == USERS_DIR and len(parts) > 2:
        agent = parts[2]
        if len(parts) == 3:
            return [("workspace", agent), ("inbox", agent)]
        if parts[3] in ("workspace", "inbox"):
            return [(parts[3], agent)]  # type: ignore[list-item]
    return []


# --- metas and audit tails --------------------------------------------------------------


def _audit_path(root: Path, type_dir: str, doc_id: str) -> str:
    return str(audit_path(root, type_dir, doc_id))


def _scan_metas(root: Path, warnings: list[ScanWarning]) -> tuple[dict[str, _Doc], dict[str, _Hold]]:
    docs: dict[str, _Doc] = {}
    holds: dict[str, _Hold] = {}
    meta_root = os.path.join(root, *META_DIR)
    try:
        type_dirs = sorted(e.name for e in os.scandir(meta_root) if e.is_dir())
    except FileNotFoundError:
        return docs, holds
    except OSError as exc:
        warnings.append(ScanWarning(path=Path(meta_root), reason=f"cannot list: {exc.strerror or exc}"))
        return docs, holds
    for type_dir in type_dirs:
        _scan_type_dir(root, type_dir, docs, holds, warnings)
    return docs, holds


def _scan_type_dir(root: Path, type_dir: str, docs: dict[str, _Doc], holds: dict[str, _Hold],
                   warnings: list[ScanWarning]) -> None:
    folder = os.path.join(root, *META_DIR, type_dir)
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except FileNotFoundError:
        return
    except OSError as exc:
        warnings.append(ScanWarning(path=Path(folder), reason=f"cannot list: {exc.strerror or exc}"))
        return
    for entry in entries:
        name = entry.name
        if name.endswith(".json") and not name.endswith(SOURCE_SUFFIX):
            _read_doc(root, entry.path, type_dir, name[:-5], docs, holds, warnings)


def _read_doc(root: Path, meta_path: str, type_dir: str, doc_id: str,
              docs: dict[str, _Doc], holds: dict[str, _Hold], warnings: list[ScanWarning]) -> None:
    """Read one meta file into ``docs`` (and ``holds`` if checked out); a missing file is none."""
    try:
        meta = json.loads(_read_small(meta_path).decode())
    except FileNotFoundError:
        return
    except OSError as exc:
        warnings.append(ScanWarning(path=Path(meta_path), reason=f"cannot read: {exc.strerror or exc}"))
        return
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        warnings.append(ScanWarning(path=Path(meta_path), reason=f"not valid JSON: {exc}"))
        return
    if not isinstance(meta, dict):
        warnings.append(ScanWarning(path=Path(meta_path), reason=f"not a JSON object ({type(meta).__name__})"))
        return
    checked_out = meta.get("checked_out") is True
    holder = meta.get("responsible_user")
    holder = holder if isinstance(holder, str) and holder else None
    out_date = meta.get("checked_out_date")
    try:
        out_date = date.fromisoformat(out_date) if isinstance(out_date, str) else None
    except ValueError:
        warnings.append(ScanWarning(path=Path(meta_path), reason=f"checked_out_date {out_date!r} is not YYYY-MM-DD"))
        out_date = None
    version, status = meta.get("version"), meta.get("status")
    doc = _Doc(  # positional: this runs for every document
        meta_path, type_dir, str(meta.get("doc_type") or type_dir), None if version is None else str(version),
        None if status is None else str(status), checked_out, holder, out_date,
    )
    docs[doc_id] = doc
    if checked_out:
        if holder is None:
            warnings.append(ScanWarning(path=Path(meta_path), reason="checked out but responsible_user is empty"))
        holds[doc_id] = _hold(_audit_path(root, type_dir, doc_id), doc, warnings)


def _read_small(path: str) -> bytes:
    """A whole small file with the fewest system calls (no buffered file object)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, 1 << 16)]
        while len(chunks[-1]) == 1 << 16:
            chunks.append(os.read(fd, 1 << 16))
    finally:
        os.close(fd)
    return b"".join(chunks)


def _hold(audit_path: str, doc: _Doc, warnings: list[ScanWarning]) -> _Hold:
    """Held since: the holder's last CHECKOUT, else its CREATE, else the checkout day's local midnight."""
    since, source, title = _tail_hold_event(audit_path, doc.holder, warnings) if doc.holder else (None, None, None)
    if since is None and doc.checked_out_date is not None:
        since, source = datetime.combine(doc.checked_out_date, time()).astimezone(UTC), "date"
    return _Hold(since=since, source=source, title=title)


def _tail_hold_event(path: str, holder: str, warnings: list[ScanWarning]
                     ) -> tuple[datetime | None, HeldSinceSource | None, str | None]:
    """Read ``path`` backwards for ``holder``'s last CHECKOUT or CREATE: (ts, source, title).

    The CREATE title comes along if it lies in the blocks already read (it is the first line,
    so for a typical short file it does). An unterminated last line is being written: used if
    it parses, else skipped without a warning.
    """
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return None, None, None
    except OSError as exc:
        warnings.append(ScanWarning(path=Path(path), reason=f"cannot read: {exc.strerror or exc}"))
        return None, None, None
    found: tuple[datetime, HeldSinceSource] | None = None
    title: str | None = None
    with fh:
        end = fh.seek(0, os.SEEK_END)
        carry = b""
        last_line = True
        while end > 0:
            start = max(0, end - TAIL_BLOCK)
            fh.seek(start)
            lines = (fh.read(end - start) + carry).split(b"\n")
            carry = lines.pop(0) if start > 0 else b""
            for line in reversed(lines):
                partial, last_line = last_line and bool(line), False
                if b"CHECKOUT" not in line and b"CREATE" not in line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError as exc:
                    if not partial:
                        warnings.append(ScanWarning(path=Path(path), reason=f"audit line is not valid JSON: {exc}"))
                    continue
                if not isinstance(rec, dict):
                    continue
                record = audit_record(rec)
                if record.event == "CREATE":
                    title = record.details.get("title") if isinstance(record.details.get("title"), str) else None
                if found is None and record.user == holder and record.event in ("CHECKOUT", "CREATE"):
                    if record.time is None:
                        warnings.append(ScanWarning(path=Path(path), reason=f"{record.event} line has no valid ts"))
                        continue
                    found = (record.time, "checkout" if record.event == "CHECKOUT" else "create")
                if record.event == "CREATE":
                    break
            if found is not None or title is not None:
                break
            end = start
    return (found[0], found[1], title) if found else (None, None, title)


# --- agents, workspaces, inboxes --------------------------------------------------------


def _agent_ids(root: Path, given: tuple[str, ...], warnings: list[ScanWarning]) -> list[str]:
    users = root.joinpath(*USERS_DIR)
    found: list[str] = []
    try:
        with os.scandir(users) as entries:
            found = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    except FileNotFoundError:
        pass
    except OSError as exc:
        warnings.append(ScanWarning(path=users, reason=f"cannot list: {exc.strerror or exc}"))
    agents = []
    for agent in dict.fromkeys((*given, *found)):
        if AGENT_ID_RE.match(agent):
            agents.append(agent)
        else:
            warnings.append(ScanWarning(path=users / agent, reason="not a valid agent id ([a-z0-9_-]+); skipped"))
    return agents


def _list_dir(root: Path, folder: Path, warnings: list[ScanWarning]) -> tuple[int | None, list[os.DirEntry]]:
    """An open descriptor of ``folder`` (reached without following links; the caller closes it)
    and its ``*.md`` entries, by name. (None, []) when it is missing or unusable (a warning)."""
    try:
        fd = open_folder(root, folder)
    except UnsafeCopy as err:
        warnings.append(ScanWarning(path=folder, reason=f"not listed: {err.detail}"))
        return None, []
    except OSError as exc:
        warnings.append(ScanWarning(path=folder, reason=f"cannot list: {exc.strerror or exc}"))
        return None, []
    if fd is None:
        return None, []
    try:
        with os.scandir(fd) as entries:
            return fd, sorted((e for e in entries if e.name.endswith(".md") and not e.name.startswith(".")),
                              key=lambda e: e.name)
    except OSError as exc:
        os.close(fd)
        warnings.append(ScanWarning(path=folder, reason=f"cannot list: {exc.strerror or exc}"))
        return None, []


def _list_workspace(root: Path, agent: str, previous: Iterable[WorkspaceFile],
                    warnings: list[ScanWarning]) -> list[WorkspaceFile]:
    """The agent's ``*.md`` copies; a copy unchanged since ``previous`` (size, mtime) is reused.
    Entries are ``lstat``ed; one that is not a regular file with one link is listed as unsafe."""
    known = {f.name: f for f in previous}
    files = []
    folder = workspace_dir(root, agent)
    fd, entries = _list_dir(root, folder, warnings)
    try:
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone since the listing
            mtime = datetime.fromtimestamp(st.st_mtime, UTC)
            unsafe = entry_problem(st)
            old = known.get(entry.name)
            if old is not None and (old.size, old.mtime, old.unsafe) == (st.st_size, mtime, unsafe):
                files.append(old)
                continue
            files.append(WorkspaceFile(
                agent=agent, name=entry.name, doc_id=entry.name[:-3], path=folder / entry.name,
                size=st.st_size, mtime=mtime, title=None if unsafe or fd is None else _copy_title(fd, entry.name),
                unsafe=unsafe,
            ))
    finally:
        if fd is not None:
            os.close(fd)
    return files


def _frontmatter(text: str) -> dict[str, Any] | None:
    """The YAML block between the leading ``---`` lines, all values as strings; None if absent.
    Raises yaml.YAMLError if the block is not YAML."""
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    data = yaml.load(text[3:end], Loader=_YAML)
    return data if isinstance(data, dict) else None


def _copy_title(dir_fd: int, name: str) -> str | None:
    """The ``title:`` of a workspace copy's frontmatter (read without following links). A plain
    one-line value (what the CLI writes) is taken as is; anything fancier goes through YAML."""
    try:
        read = read_entry(dir_fd, name, limit=HEAD_BYTES)
        if read is None:
            return None
        head = read.data.decode("utf-8", "replace")
        if not head.startswith("---"):
            return None
        for line in head.split("\n")[1:]:
            if line.startswith("---"):
                break
            if line.startswith("title:"):
                value = line[6:].strip()
                if value and value[0] not in "'\"|>&*!{[%@`" and " #" not in value:
                    return value
                front = _frontmatter(head)
                title = front.get("title") if front else None
                return title if isinstance(title, str) else None
    except (OSError, UnsafeCopy, yaml.YAMLError):
        pass  # the copy is the agent's to edit: a broken header is not the panel's alarm
    return None


def _list_inbox(root: Path, agent: str, warnings: list[ScanWarning]) -> list[InboxTask]:
    tasks = []
    folder = inbox_dir(root, agent)
    fd, entries = _list_dir(root, folder, warnings)
    try:
        for entry in entries:
            if entry.name.startswith("task-") and fd is not None:
                tasks.append(_read_task(agent, fd, folder / entry.name, warnings))
    finally:
        if fd is not None:
            os.close(fd)
    return tasks


def _read_task(agent: str, dir_fd: int, path: Path, warnings: list[ScanWarning]) -> InboxTask:
    """A task from its frontmatter (read without following links); what the file name tells
    fills the gaps of a bad one."""
    name = path.name
    front: dict[str, Any] = {}
    try:
        read = read_entry(dir_fd, name)
        front = _frontmatter(read.data.decode("utf-8")) or {} if read else {}
        if not front:
            warnings.append(ScanWarning(path=path, reason="no YAML frontmatter"))
    except UnsafeCopy as err:
        warnings.append(ScanWarning(path=path, reason=f"not read: {err.detail}"))
    except (OSError, UnicodeDecodeError) as exc:
        warnings.append(ScanWarning(path=path, reason=f"cannot read: {getattr(exc, 'strerror', None) or exc}"))
    except yaml.YAMLError as exc:
        warnings.append(ScanWarning(path=path, reason=f"frontmatter is not valid YAML: {exc}".splitlines()[0]))
    m = _TASK_NAME.match(name)

    def field(key: str) -> str | None:
        value = front.get(key)
        return value if isinstance(value, str) and value else None

    assigned = field("assigned_date")
    try:
        assigned_date = date.fromisoformat(assigned) if assigned else None
    except ValueError:
        assigned_date = None
    return InboxTask(
        agent=agent, file=name,
        task_type=field("task_type") or (("APPROVAL" if "approval" in m["wf"] else "REVIEW") if m else None),
        workflow=field("workflow_type") or (m["wf"].upper() if m else None),
        doc_id=field("doc_id") or (m["doc"] if m else None),
        from_user=field("assigned_by"),
        date=assigned_date,
        version=field("version") or (m["ver"].replace("-", ".") if m else None),
        title=field("title"),
    )


# --- rows -------------------------------------------------------------------------------


def _drop(warnings: list[ScanWarning], *places: str) -> list[ScanWarning]:
    """``warnings`` without those about ``places`` (files, or folders and all they hold):
    what is re-read reports its own warnings again."""
    def about(path: Path) -> bool:
        text = str(path)
        return any(text == p or text.startswith(p + os.sep) for p in places)

    return [w for w in warnings if not about(w.path)]


def _state(copy: WorkspaceFile | None, holder: str | None, running: frozenset[str] | None,
           stuck_after: timedelta, now: datetime) -> RowState:
    if copy is None:
        return RowState.MISSING_COPY
    if copy.unsafe:
        return RowState.UNSAFE
    if running is not None and holder not in running:
        return RowState.ORPHANED
    if now - copy.mtime > stuck_after:
        return RowState.STALE
    return RowState.OK


def _rows(docs: dict[str, _Doc], holds: dict[str, _Hold], workspaces: dict[str, list[WorkspaceFile]],
          running: frozenset[str] | None, stuck_after: timedelta, now: datetime) -> list[CheckoutRow]:
    copies = {(f.agent, f.doc_id): f for files in workspaces.values() for f in files}
    rows = []
    for doc_id, hold in holds.items():
        doc = docs[doc_id]
        copy = copies.pop((doc.holder, doc_id), None) if doc.holder else None
        rows.append(CheckoutRow(
            doc_id=doc_id, doc_type=doc.doc_type, version=doc.version, status=doc.status,
            title=(copy.title if copy else None) or hold.title, holder=doc.holder,
            held_since=hold.since, held_since_source=hold.source, checked_out_date=doc.checked_out_date,
            workspace_file=copy, last_edit=copy.mtime if copy else None,
            state=_state(copy, doc.holder, running, stuck_after, now),
        ))
    for (agent, doc_id), copy in copies.items():
        doc = docs.get(doc_id)
        rows.append(CheckoutRow(
            doc_id=doc_id, doc_type=doc.doc_type if doc else None, version=doc.version if doc else None,
            status=doc.status if doc else None, title=copy.title, holder=agent, held_since=None,
            held_since_source=None, checked_out_date=None, workspace_file=copy, last_edit=copy.mtime,
            state=RowState.UNSAFE if copy.unsafe else RowState.UNMANAGED,
        ))
    rows.sort(key=lambda r: (r.doc_id, r.state is RowState.UNMANAGED, r.holder or ""))
    return rows


def _snapshot(root: Path, docs: dict[str, _Doc], holds: dict[str, _Hold],
              workspaces: dict[str, list[WorkspaceFile]], inboxes: dict[str, list[InboxTask]],
              warnings: list[ScanWarning], given: tuple[str, ...], running: frozenset[str] | None,
              stuck_after: timedelta, now: datetime | None) -> QmsSnapshot:
    now = now or datetime.now(UTC)
    snap = QmsSnapshot(
        project_root=root, checkouts=_rows(docs, holds, workspaces, running, stuck_after, now),
        workspaces=workspaces, inboxes=inboxes, warnings=warnings, scanned_at=now,
        stuck_after=stuck_after, running_agents=running,
    )
    snap._docs, snap._holds, snap._given_agents = docs, holds, given
    return snap
