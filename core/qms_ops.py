"""QMS operations on behalf of an agent, through the MCP link, that never lose work.

Each call runs the real tool with ``user=<agent>`` and classifies the reply. The server
answers CLI failures as ordinary text with ``isError`` false (contract 1.5), so the texts of
contract 1.6 decide: ``ok``, ``refused`` (with the server's reason line), ``error``, or
``identity-locked`` (contract 1.4: a live agent session holds the identity; retry after its
90 s TTL).

Nothing is lost: a checkin first records the workspace copy's size and hash and, after a
refusal or an error, checks the copy is byte-identical and says so. A checkin whose copy is
missing while the meta says it is checked out to the agent (contract 9) is refused locally,
without calling the server; :meth:`QmsOps.repair` restores the copy from ``ID-draft.md`` and checks it in as the
holder, undoing its copy if that checkin fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from core.errors import InvalidDocumentId, McpError, QmsOperationError
from core.layout import workspace_dir
from core.mcp_link import McpLink, TransportName, open_link
from core.settings import check_agent_id

OpStatus = Literal["ok", "refused", "identity-locked", "error"]
Operation = Literal["checkout", "checkin", "workspace", "inbox", "status", "repair"]

IDENTITY_TTL_S = 90.0  # contract 1.4
DOC_ID_RE = re.compile(r"^[A-Z][A-Z0-9]*(?:-[A-Za-z0-9_]+)+$")
CHILD_TYPES = frozenset({"TP", "ER", "VAR", "ADD", "VR"})
_TOP_FOLDER_TYPES = frozenset({"CR", "INV"})
_FLAT_TYPES = frozenset({"SOP", "TEMPLATE"})

_OK_LINES: dict[str, tuple[str, ...]] = {
    "checkout": ("Checked out: ",),
    "checkin": ("Checked in: ",),
    "workspace": ("Workspace is empty", "Workspace for "),
    "inbox": ("Inbox is empty", "Inbox for "),
    "status": ("Document:",),
}
_REFUSALS = (
    re.compile(r"^You already have \S+ checked out"),
    re.compile(r"^Error: \S+ is checked out by "),
    re.compile(r"^Error: \S+ is still checked out by "),
    re.compile(r"^Error: Document not found"),
    re.compile(r"^Error: \S+ is (CLOSED|RETIRED) and cannot be checked out"),
    re.compile(r"^Error: \S+ is in \S+ and owned by "),
    re.compile(r"^Error: \S+ not found in your workspace"),
    re.compile(r"^Permission Denied: "),
    re.compile(r"^Error: User '.*' not found"),
)
_ERRORS = (
    re.compile(r"^Error: Could not find QMS root directory"),
    re.compile(r"^Error: QMS CLI not found at "),
    re.compile(r"^Error: Command timed out after "),
    re.compile(r"^(usage: |qms(\.py)?: error: )"),
)
_TOOL_ERROR = re.compile(r"^Error executing tool \S+: ")
_RETRY = re.compile(r"(?:retry|try again|expires?)\D{0,20}?(\d+(?:\.\d+)?)\s*(?:s\b|sec)", re.IGNORECASE)


def check_doc_id(doc_id: str) -> str:
    """Return ``doc_id`` if it can be a QMS document id (e.g. CR-001, CR-005-VAR-001), else raise."""
    if not isinstance(doc_id, str) or not DOC_ID_RE.fullmatch(doc_id):
        raise InvalidDocumentId(f"{doc_id!r} is not a QMS document id (like CR-001, SOP-003 or CR-005-VAR-001)")
    return doc_id


def check_agent(agent: str) -> str:
    """:func:`core.settings.check_agent_id` (kept as the ops module's name for it)."""
    return check_agent_id(agent)


def _check(doc_id: str, agent: str) -> None:
    check_doc_id(doc_id)
    check_agent(agent)


class FileFacts(BaseModel):
    """A file's size, hash and modification time, to prove it did not change."""

    path: Path
    size: int
    sha256: str
    mtime: float

    @classmethod
    def of(cls, path: Path) -> FileFacts | None:
        try:
            data = path.read_bytes()
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise QmsOperationError(f"cannot read {path} ({exc.strerror or exc})") from None
        return cls(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(), mtime=mtime)

    @classmethod
    def of_bytes(cls, path: Path, data: bytes) -> FileFacts:
        """The facts of ``path`` just written with ``data``."""
        return cls(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(), mtime=path.stat().st_mtime)

    def same_bytes(self, other: FileFacts | None) -> bool:
        return other is not None and (other.size, other.sha256) == (self.size, self.sha256)

    def brief(self) -> str:
        return f"{self.size} bytes, sha256 {self.sha256[:12]}"


class OpOutcome(BaseModel):
    """What an operation did: ok, refused (the server's reason), identity-locked, or error."""

    operation: Operation
    doc_id: str | None
    agent: str
    status: OpStatus
    reason: str | None = None  # the server's reason line (or ours, for local refusals)
    text: str = ""  # the server's full reply
    retry_after_s: float | None = None
    actions: list[str] = []  # what was done, in order (repair, and the checks on the copy)
    workspace: FileFacts | None = None  # the workspace copy (before a checkin; after a checkout)
    workspace_intact: bool | None = None  # after a failed checkin: the copy is byte-identical

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def one_line(self) -> str:
        subject = (f"{self.operation} {self.doc_id} as {self.agent}" if self.doc_id
                   else f"{self.operation} of {self.agent}")
        if self.ok:
            return f"{subject}: ok"
        return f"{subject}: {self.status}: {self.reason}"


def classify(operation: str, text: str, is_error: bool) -> tuple[OpStatus, str | None, float | None]:
    """Status, reason line and retry delay of a tool reply (contract 1.4-1.6)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if is_error:
        message = _TOOL_ERROR.sub("", lines[0]) if lines else "the tool failed"
        if message.startswith("IDENTITY LOCKED"):
            match = _RETRY.search(text)
            return "identity-locked", message, float(match.group(1)) if match else IDENTITY_TTL_S
        return "error", message, None
    if any(line.startswith(_OK_LINES.get(operation, ("\0",))) for line in lines):
        return "ok", None, None
    for i, line in enumerate(lines):
        if any(p.search(line) for p in _REFUSALS):
            follow = lines[i + 1] if i + 1 < len(lines) else ""
            if line.startswith("Permission Denied") or " and owned by " in line:
                return "refused", f"{line} {follow}".strip(), None
            return "refused", line, None
    for line in lines:
        if any(p.search(line) for p in _ERRORS):
            return "error", line, None
    first = lines[0] if lines else "(no output)"
    return "error", f"unexpected reply: {first}", None


# --- files of the project (contract 2 and 3) ----------------------------------------------


def find_meta(project_root: Path, doc_id: str) -> dict[str, Any] | None:
    """The ``QMS/.meta/<TYPE>/<ID>.json`` of ``doc_id``, or None."""
    meta_root = Path(project_root) / "QMS" / ".meta"
    try:
        folders = [e for e in os.scandir(meta_root) if e.is_dir()]
    except FileNotFoundError:
        return None
    for folder in folders:
        path = Path(folder.path) / f"{doc_id}.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                data.setdefault("doc_type", folder.name)
                return data
    return None


def _namespace_folder(qms: Path, namespace: str) -> str:
    try:
        spaces = json.loads((qms / ".meta" / "sdlc_namespaces.json").read_text(encoding="utf-8"))
        return str(spaces[namespace]["path"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"SDLC-{namespace}"


def draft_path(project_root: Path, doc_id: str, doc_type: str | None) -> Path | None:
    """Where ``ID-draft.md`` lives (contract 2), or None if it is not there."""
    qms = Path(project_root) / "QMS"
    name = f"{doc_id}-draft.md"
    parts = doc_id.split("-")
    candidates: list[Path] = []
    if doc_type in _FLAT_TYPES:
        candidates.append(qms / doc_type / name)
    elif doc_type in _TOP_FOLDER_TYPES:
        candidates.append(qms / doc_type / doc_id / name)
    elif doc_type in CHILD_TYPES and len(parts) > 2 and parts[0] in _TOP_FOLDER_TYPES:
        candidates.append(qms / parts[0] / f"{parts[0]}-{parts[1]}" / name)
    elif doc_type and doc_type.endswith(("-RS", "-RTM")):
        candidates.append(qms / _namespace_folder(qms, doc_type.rsplit("-", 1)[0]) / name)
    for path in candidates:
        if path.is_file():
            return path
    found = [p for p in qms.rglob(name) if not any(part.startswith(".") for part in p.relative_to(qms).parts)]
    return found[0] if len(found) == 1 else None


def _rel(project_root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(project_root))
    except ValueError:
        return str(path)


# --- the operations -------------------------------------------------------------------------


class QmsOps:
    """Checkout, checkin, status, workspace, inbox and repair for an agent, through ``link``."""

    def __init__(self, link: McpLink, project_root: Path) -> None:
        self.link = link
        self.project_root = Path(project_root)

    def copy_path(self, doc_id: str, agent: str) -> Path:
        return workspace_dir(self.project_root, agent) / f"{doc_id}.md"

    async def _call(self, operation: Operation, tool: str, agent: str, doc_id: str | None = None,
                    **arguments: Any) -> OpOutcome:
        args = {"doc_id": doc_id, **arguments, "user": agent} if doc_id else {**arguments, "user": agent}
        try:
            result = await self.link.call_tool(tool, args)
        except McpError as err:
            return OpOutcome(operation=operation, doc_id=doc_id, agent=agent, status="error", reason=str(err))
        status, reason, retry = classify(operation, result.text, result.is_error)
        return OpOutcome(operation=operation, doc_id=doc_id, agent=agent, status=status, reason=reason,
                         text=result.text, retry_after_s=retry)

    async def status(self, doc_id: str, agent: str) -> OpOutcome:
        _check(doc_id, agent)
        return await self._call("status", "qms_status", agent, doc_id)

    async def workspace(self, agent: str) -> OpOutcome:
        check_agent(agent)
        return await self._call("workspace", "qms_workspace", agent)

    async def inbox(self, agent: str) -> OpOutcome:
        check_agent(agent)
        return await self._call("inbox", "qms_inbox", agent)

    async def checkout(self, doc_id: str, agent: str) -> OpOutcome:
        _check(doc_id, agent)
        outcome = await self._call("checkout", "qms_checkout", agent, doc_id)
        if outcome.ok:
            outcome.workspace = FileFacts.of(self.copy_path(doc_id, agent))
        return outcome

    async def checkin(self, doc_id: str, agent: str) -> OpOutcome:
        _check(doc_id, agent)
        path = self.copy_path(doc_id, agent)
        before = FileFacts.of(path)
        if before is None and (stuck := self._stuck(doc_id, agent, path)) is not None:
            return stuck
        outcome = await self._call("checkin", "qms_checkin", agent, doc_id)
        outcome.workspace = before
        if before is not None and not outcome.ok:
            self._verify_untouched(outcome, before)
        return outcome

    async def repair(self, doc_id: str, agent: str) -> OpOutcome:
        """Restore a missing workspace copy from the draft and check it in as its holder."""
        _check(doc_id, agent)

        def refuse(reason: str) -> OpOutcome:
            return OpOutcome(operation="repair", doc_id=doc_id, agent=agent, status="refused", reason=reason,
                             text=reason)

        meta = find_meta(self.project_root, doc_id)
        if meta is None:
            return refuse(f"{doc_id} has no metadata (QMS/.meta/*/{doc_id}.json): nothing to repair")
        holder = meta.get("responsible_user")
        if not meta.get("checked_out"):
            return refuse(f"{doc_id} is not checked out: nothing to repair")
        if holder != agent:
            return refuse(f"{doc_id} is checked out by {holder}, not {agent}: repair it as {holder}")
        path = self.copy_path(doc_id, agent)
        if path.exists():
            return refuse(f"{_rel(self.project_root, path)} exists: nothing to repair (check it in instead)")
        draft = draft_path(self.project_root, doc_id, meta.get("doc_type"))
        if draft is None:
            return refuse(f"{doc_id}-draft.md not found under QMS/: no draft to restore the copy from")

        actions: list[str] = []
        made_dirs = _missing_folders(path.parent, self.project_root)
        try:
            data = draft.read_bytes()
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("xb") as fh:  # never overwrite: the copy did not exist a moment ago
                fh.write(data)
        except OSError as exc:
            if isinstance(exc, FileExistsError):
                return refuse(f"{_rel(self.project_root, path)} appeared meanwhile: nothing was changed")
            path.unlink(missing_ok=True)
            for folder in made_dirs:
                _rmdir_if_empty(folder)
            reason = f"cannot restore {_rel(self.project_root, path)} ({exc.strerror or exc}); nothing was changed"
            return OpOutcome(operation="repair", doc_id=doc_id, agent=agent, status="error", reason=reason,
                             text=reason)
        made = FileFacts.of_bytes(path, data)
        actions.append(f"copied {_rel(self.project_root, draft)} to {_rel(self.project_root, path)} ({made.brief()})")

        checkin = await self._call("checkin", "qms_checkin", agent, doc_id)
        outcome = checkin.model_copy(update={"operation": "repair", "actions": actions, "workspace": made})
        if checkin.ok:
            actions.append(f"checked in {doc_id} as {agent}: {_first_line(checkin.text, 'Checked in: ')}")
            return outcome
        actions.append(f"checkin as {agent} failed: {checkin.reason}")
        now = FileFacts.of(path)
        if made.same_bytes(now):
            path.unlink()
            for folder in made_dirs:
                _rmdir_if_empty(folder)
            actions.append(f"removed {_rel(self.project_root, path)} again: the files are as they were")
        elif now is None:
            actions.append(f"{_rel(self.project_root, path)} is already gone")
        else:
            actions.append(f"kept {_rel(self.project_root, path)}: it changed since it was copied ({now.brief()})")
        return outcome

    # --- the copy's safety checks -------------------------------------------------------

    def _stuck(self, doc_id: str, agent: str, path: Path) -> OpOutcome | None:
        """A local refusal when the meta says checked out to ``agent`` but the copy is missing."""
        meta = find_meta(self.project_root, doc_id) or {}
        if not (meta.get("checked_out") and meta.get("responsible_user") == agent):
            return None
        reason = (f"{_rel(self.project_root, path)} is missing although {doc_id} is checked out to {agent}; "
                  f"nothing was changed. Run repair to restore the copy from the current draft and check it in")
        return OpOutcome(operation="checkin", doc_id=doc_id, agent=agent, status="refused", reason=reason,
                         text=reason)

    def _verify_untouched(self, outcome: OpOutcome, before: FileFacts) -> None:
        after = FileFacts.of(before.path)
        rel = _rel(self.project_root, before.path)
        outcome.workspace_intact = before.same_bytes(after)
        if outcome.workspace_intact:
            outcome.actions.append(f"checked {rel}: byte-identical after the failed checkin ({before.brief()})")
            return
        what = "is gone" if after is None else f"changed ({before.brief()} -> {after.brief()})"
        outcome.actions.append(f"{rel} {what} after the failed checkin")
        outcome.reason = f"{rel} {what} after a failed checkin ({outcome.reason})"
        outcome.status = "error"


def _first_line(text: str, prefix: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip().startswith(prefix)), text.strip())


def _missing_folders(folder: Path, stop: Path) -> list[Path]:
    """The folders from ``folder`` up to (not including) ``stop`` that do not exist, deepest first."""
    missing = []
    while folder != stop and not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


async def run_once(url: str, transport: TransportName | None, project_root: Path,
                   work: Callable[[QmsOps], Awaitable[OpOutcome]], *, timeout: float = 10.0) -> OpOutcome:
    """Open a short-lived link, run one operation, close the link (for the command line)."""
    async with open_link(url, transport=transport, timeout=timeout) as link:
        return await work(QmsOps(link, project_root))
