"""QMS operations on behalf of an agent, through the MCP link, that never lose work.

Each call runs the real tool with ``user=<agent>`` and classifies the reply strictly. The server
answers CLI failures as ordinary text with ``isError`` false (contract 1.5), so the texts of
contract 1.6 decide: ``ok`` only for the exact success form (the success lines, optionally after
the contract's known preamble lines, naming the document asked for), ``refused`` (the server's
reason, every line of a Permission Denied), ``identity-locked`` (contract 1.4, 11), ``error``, and
``unknown`` when a reply was lost and the files cannot tell.

Nothing is lost:

- **Checkout** never lets the server overwrite a workspace copy (it writes one, contract 7a): an
  entry at the target while the document is not checked out is refused with what is there; with
  ``force`` it is first moved aside to ``.qms-panel/displaced/<agent>/<ID>.<utc-stamp>.md`` (a
  folder of qms-panel's own under the project root, outside ``QMS/`` and the workspace, so the
  scanner and ``qms_workspace`` never see it) and the target is checked again right before the call.
- **Checkin** and repair accept only a regular, singly linked file in the real workspace folder,
  read without following links (:func:`core.qms_files.read_copy`), before anything is sent. The
  copy's bytes are kept: after a refusal the copy is verified byte-identical; after a success the
  draft must hold the text that was checked (else the copy changed during the call, and the text
  read is saved aside); after a lost reply (the connection closed, or no reply within the call
  timeout) the truth is read back from the files (meta, draft, copy) and reported as checked in,
  not checked in (copy intact), or unknown, with what to do.
- A checkin whose copy is missing while the meta says it is checked out to the agent (contract 9)
  is refused locally; :meth:`QmsOps.repair` restores the copy from ``ID-draft.md`` and checks it
  in as the holder, undoing its copy if that checkin fails.

File work (reading and hashing the copy, ``.meta``, drafts) runs in a worker thread
(``anyio.to_thread``), never on the event loop. :meth:`OpOutcome.notice` words an outcome once.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
from pydantic import BaseModel

from core.errors import CallTimeout, InvalidDocumentId, McpError, QmsOperationError, ReplyLost, UnsafeCopy
from core.link_state import TransportName
from core.notice import Notice, Severity
from core.qms_files import (
    CopyRead,
    displaced_dir,
    draft_path,
    entry_problem,
    find_meta,
    open_workspace,
    read_copy,
    workspace_copy,
)
from core.settings import check_agent_id

if TYPE_CHECKING:  # the link is handed in: the panel's rows and checks load without the MCP SDK
    from core.mcp_link import McpLink

__all__ = ["OpStatus", "Operation", "OpOutcome", "FileFacts", "QmsOps", "classify", "check_doc_id", "check_agent",
           "run_once", "find_meta", "draft_path"]

OpStatus = Literal["ok", "refused", "identity-locked", "error", "unknown"]
Operation = Literal["checkout", "checkin", "workspace", "inbox", "status", "repair"]

DOC_ID_MAX = 120  # far above any real id (CR-091-ADD-001-VAR-001); keeps file names legal
DOC_ID_RE = re.compile(r"^[A-Z][A-Z0-9]*(?:-[A-Za-z0-9_]+)+$")

_V = r"v\d+\.\d+"
_PREAMBLE: dict[str, tuple[str, ...]] = {  # contract 1.6: lines that may come before the success lines
    "checkout": (rf"Archived: {_V}", rf"Created draft {_V} from effective {_V}", r"Auto-withdrawn: \S+ -> \S+",
                 r"Transitioned from \S+ to \S+", rf"Execution checkout: creating {_V} \(current: {_V}\)",
                 r"Interactive session initialized \(new\)"),
    "checkin": (rf"Archived: {_V}", r"Source saved: \S+\.source\.json"),
}
_SUCCESS: dict[str, tuple[str, ...]] = {  # ``{doc}``: the document asked for
    "checkout": (r"Checked out: {doc}", r"Workspace: \S*/workspace/{doc}\.md"),
    "checkin": (rf"Checked in: {{doc}} \({_V}(?:, interactive)?\)",),
}
_LISTING_HEAD: dict[str, tuple[str, ...]] = {  # the read-only tools: their first line
    "workspace": (r"Workspace is empty", r"Workspace for \S+:"),
    "inbox": (r"Inbox is empty", r"Inbox for \S+:"),
    "status": (r"Document: \S+",),
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
    re.compile(r"^Error: "),
    re.compile(r"^(usage: |qms(\.py)?: error: )"),
)
_TOOL_ERROR = re.compile(r"^Error executing tool \S+: ")
_RETRY = re.compile(r"(?:retry|try again)\D{0,20}?(\d+(?:\.\d+)?)\s*(?:s\b|sec)", re.IGNORECASE)
_IDENTITY_INSTANCE = re.compile(r"container instance (\w+)")


def check_doc_id(doc_id: str) -> str:
    """Return ``doc_id`` if it can be a QMS document id (e.g. CR-001, CR-005-VAR-001), else raise."""
    if isinstance(doc_id, str) and len(doc_id) > DOC_ID_MAX:
        raise InvalidDocumentId(f"a document id of {len(doc_id)} characters is too long (at most {DOC_ID_MAX})")
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
    def of_bytes(cls, path: Path, data: bytes, mtime: float) -> FileFacts:
        return cls(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(), mtime=mtime)

    def same_bytes(self, other: FileFacts | None) -> bool:
        return other is not None and (other.size, other.sha256) == (self.size, self.sha256)

    def brief(self) -> str:
        return f"{self.size} bytes, sha256 {self.sha256[:12]}"


class _Copy(BaseModel):
    """A workspace copy as read: its facts and its bytes (kept so that nothing can be lost)."""

    facts: FileFacts
    data: bytes


_DONE = {"checkout": "Checked out", "checkin": "Checked in", "repair": "Repaired", "status": "Status",
         "workspace": "Workspace", "inbox": "Inbox"}
_SEVERITY: dict[str, Severity] = {"ok": "information", "refused": "warning", "identity-locked": "warning",
                                  "error": "error", "unknown": "error"}


class OpOutcome(BaseModel):
    """What an operation did: ok, refused (the server's reason), identity-locked, error, or unknown."""

    operation: Operation
    doc_id: str | None
    agent: str
    status: OpStatus
    reason: str | None = None  # the server's reason (every line), or ours for local refusals
    text: str = ""  # the server's full reply
    retry_after_s: float | None = None  # only when the server names a delay (it never promises one)
    actions: list[str] = []  # what was done and checked, in order (moves, repair, the checks on the copy)
    advice: str | None = None  # what the operator can do next
    workspace: FileFacts | None = None  # the workspace copy (before a checkin; after a checkout)
    workspace_intact: bool | None = None  # after a failed checkin: the copy is byte-identical
    displaced: Path | None = None  # where a copy was moved (or saved) aside
    reply_lost: bool = False  # the call was sent and its reply never came: the files decided

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def title(self) -> str:
        noun = self.operation.capitalize()
        return {"ok": _DONE[self.operation], "refused": f"{noun} refused", "identity-locked": f"{noun} refused",
                "error": f"{noun} failed", "unknown": f"{noun} outcome unknown"}[self.status]

    def headline(self) -> str:
        """The subject and the reason (a Permission Denied keeps its lines)."""
        subject = f"{self.doc_id} for {self.agent}" if self.doc_id else self.agent
        if self.status == "identity-locked":
            return f"{subject}: {_identity_locked_text(self.agent, self.reason or '')}"
        return f"{subject}: {self.reason}" if self.reason else subject

    def details(self) -> list[str]:
        """What the server said (when it succeeded), what was done and checked, and what to do."""
        said = [line.strip() for line in self.text.splitlines() if line.strip()] if self.ok else []
        return ([f"the server said: {' / '.join(said)}"] if said else []) + self.actions + (
            [self.advice] if self.advice else [])

    def notice(self) -> Notice:
        """The outcome worded once for the operator (texts from agents and servers still need
        :mod:`core.safe_text` before display)."""
        return Notice(title=self.title(), message="\n".join([self.headline(), *self.details()]),
                      severity=_SEVERITY[self.status])

    def one_line(self) -> str:
        """The title and the headline on one line (the details are :meth:`details`)."""
        return f"{self.title()}: {' '.join(self.headline().split())}"


def _identity_locked_text(agent: str, reason: str) -> str:
    instance = _IDENTITY_INSTANCE.search(reason)
    held = f" (instance {instance.group(1)})" if instance else ""
    return (f"the server refuses calls as {agent} without an identity header: a client that sends "
            f"X-QMS-Identity: {agent}{held} holds that identity. The lock is the server's; it ends some time "
            f"after that client's last request (the server's TTL). Retry later, or stop the client that holds it.")


ACTIVE_WORKFLOWS = ("IN_REVIEW", "IN_APPROVAL", "IN_PRE_REVIEW", "IN_PRE_APPROVAL", "IN_POST_REVIEW",
                    "IN_POST_APPROVAL")


def checkout_warning(project_root: Path, doc_id: str, agent: str) -> str | None:
    """What a checkout of ``doc_id`` as ``agent`` does beyond checking it out, said before it is
    asked (contract 7a, [latest]): a document in an active review or approval is withdrawn from
    it by its owner's checkout, and anyone else's is refused. None when there is nothing to say
    (or no metadata to tell from: the server then says what it finds). Reads one file: call it
    in a worker thread."""
    meta = find_meta(project_root, doc_id) or {}
    status, owner = meta.get("status"), meta.get("responsible_user")
    if status not in ACTIVE_WORKFLOWS:
        return None
    stage = status.removeprefix("IN_").lower().replace("_", "-")
    if owner and owner != agent:
        return (f"{doc_id} is {status}, owned by {owner}: the server refuses a checkout by anyone but its owner "
                f"during its {stage}.")
    return (f"{doc_id} is {status}: checking it out withdraws it from {stage} (the workflow ends, its reviewers "
            f"and approvers are cleared, their inbox tasks deleted); it goes through {stage} again only when "
            f"routed anew.")


# --- classification ---------------------------------------------------------------------------


def _is_success(operation: str, lines: list[str], doc_id: str | None) -> bool:
    doc = re.escape(doc_id) if doc_id else r"\S+"
    if operation in _SUCCESS:
        final = [re.compile(p.replace("{doc}", doc)) for p in _SUCCESS[operation]]
        preamble = [re.compile(p) for p in _PREAMBLE.get(operation, ())]
        head, tail = lines[: len(lines) - len(final)], lines[len(lines) - len(final):]
        return (len(tail) == len(final) and all(p.fullmatch(line) for p, line in zip(final, tail))
                and all(any(p.fullmatch(line) for p in preamble) for line in head))
    if operation in _LISTING_HEAD:
        if not lines or not any(re.fullmatch(p, lines[0]) for p in _LISTING_HEAD[operation]):
            return False
        return not any(line.startswith(("Error", "Permission Denied")) for line in lines)
    return False


def classify(operation: str, text: str, is_error: bool, doc_id: str | None = None
             ) -> tuple[OpStatus, str | None, float | None]:
    """Status, reason and retry delay of a tool reply (contract 1.4-1.6, 11).

    ``ok`` only for the exact success form of ``operation`` (for ``doc_id`` when given).
    """
    raw = text.splitlines()
    lines = [line.strip() for line in raw if line.strip()]
    if is_error:
        message = _TOOL_ERROR.sub("", lines[0]) if lines else "the tool failed"
        if message.startswith("IDENTITY LOCKED"):
            match = _RETRY.search(text)
            return "identity-locked", message, float(match.group(1)) if match else None
        return "error", message, None
    if _is_success(operation, lines, doc_id):
        return "ok", None, None
    for i, line in enumerate(lines):
        if any(p.search(line) for p in _REFUSALS):
            if line.startswith("Permission Denied"):  # every line: a blank one precedes "Required role(s)"
                start = next(j for j, r in enumerate(raw) if r.strip() == line)
                return "refused", "\n".join(r.rstrip() for r in raw[start:]).strip(), None
            if " and owned by " in line and i + 1 < len(lines):
                return "refused", f"{line}\n{lines[i + 1]}", None
            return "refused", line, None
    for line in lines:
        if any(p.search(line) for p in _ERRORS):
            return "error", line, None
    first = lines[0] if lines else "(no output)"
    return "error", f"unexpected reply: {first}", None


# --- the files of one document, read in a worker thread ---------------------------------------


def _rel(project_root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(project_root))
    except ValueError:
        return str(path)


def _body(data: bytes) -> str:
    """A document's text without its frontmatter (checkin rewrites the frontmatter, contract 7)."""
    text = data.decode("utf-8", "replace")
    if text.startswith("---"):
        parts = text.split("---", 2)
        if len(parts) == 3:
            text = parts[2]
    return text.strip("\n")


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _describe_entry(st: os.stat_result) -> str:
    kind = entry_problem(st)
    when = datetime.fromtimestamp(st.st_mtime, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{st.st_size} bytes, modified {when}" + (f"; it {kind}" if kind else "")


class QmsOps:
    """Checkout, checkin, status, workspace, inbox and repair for an agent, through ``link``."""

    def __init__(self, link: McpLink, project_root: Path) -> None:
        self.link = link
        self.project_root = Path(project_root)

    def copy_path(self, doc_id: str, agent: str) -> Path:
        return workspace_copy(self.project_root, agent, doc_id)

    async def _call(self, operation: Operation, tool: str, agent: str, doc_id: str | None = None,
                    **arguments: Any) -> OpOutcome:
        args = {"doc_id": doc_id, **arguments, "user": agent} if doc_id else {**arguments, "user": agent}
        try:
            result = await self.link.call_tool(tool, args)
        except (ReplyLost, CallTimeout) as err:
            lost = operation in ("checkout", "checkin")  # the others change nothing: a plain failure
            return OpOutcome(operation=operation, doc_id=doc_id, agent=agent, status="unknown" if lost else "error",
                             reason=str(err), reply_lost=lost)
        except McpError as err:
            return OpOutcome(operation=operation, doc_id=doc_id, agent=agent, status="error", reason=str(err))
        status, reason, retry = classify(operation, result.text, result.is_error, doc_id)
        return OpOutcome(operation=operation, doc_id=doc_id, agent=agent, status=status, reason=reason,
                         text=result.text, retry_after_s=retry)

    def _refuse(self, operation: Operation, doc_id: str, agent: str, reason: str, **extra: Any) -> OpOutcome:
        return OpOutcome(operation=operation, doc_id=doc_id, agent=agent, status="refused", reason=reason,
                         text=reason, **extra)

    async def status(self, doc_id: str, agent: str) -> OpOutcome:
        _check(doc_id, agent)
        return await self._call("status", "qms_status", agent, doc_id)

    async def workspace(self, agent: str) -> OpOutcome:
        check_agent(agent)
        return await self._call("workspace", "qms_workspace", agent)

    async def inbox(self, agent: str) -> OpOutcome:
        check_agent(agent)
        return await self._call("inbox", "qms_inbox", agent)

    # --- checkout -------------------------------------------------------------------------

    async def checkout(self, doc_id: str, agent: str, *, force: bool = False) -> OpOutcome:
        """Check out; an entry at the workspace target is refused, or (``force``) moved aside first."""
        _check(doc_id, agent)
        actions: list[str] = []
        try:
            refusal, displaced = await anyio.to_thread.run_sync(self._clear_target, doc_id, agent, force, actions)
        except (UnsafeCopy, QmsOperationError) as err:
            return self._refuse("checkout", doc_id, agent, err.detail)
        if refusal is not None:
            return refusal
        outcome = await self._call("checkout", "qms_checkout", agent, doc_id)
        outcome.actions[:0] = actions
        outcome.displaced = displaced
        if outcome.reply_lost:
            await anyio.to_thread.run_sync(self._reconcile_checkout, outcome)
        if outcome.ok:
            copy = await anyio.to_thread.run_sync(self._read, doc_id, agent)
            outcome.workspace = copy.facts if copy else None
        return outcome

    def _clear_target(self, doc_id: str, agent: str, force: bool, actions: list[str]
                      ) -> tuple[OpOutcome | None, Path | None]:
        """Make sure the server's checkout cannot overwrite anything (contract 7a writes the copy)."""
        meta = find_meta(self.project_root, doc_id) or {}
        if meta.get("checked_out"):
            return None, None  # the server refuses and does not recreate the copy (7a)
        path = self.copy_path(doc_id, agent)
        rel = _rel(self.project_root, path)
        st = self._lstat(doc_id, agent)
        if st is None:
            return None, None
        aside = _rel(self.project_root, displaced_dir(self.project_root, agent))
        if not force:
            reason = (f"{rel} exists while {doc_id} is checked in ({_describe_entry(st)}); a checkout would "
                      f"overwrite it. Check it in, move it away, or check out with --force to move it aside to "
                      f"{aside}/ first; nothing was changed")
            return self._refuse("checkout", doc_id, agent, reason), None
        dest = self._move_aside(doc_id, agent)
        actions.append(f"moved {rel} ({_describe_entry(st)}) aside to {_rel(self.project_root, dest)}")
        again = self._lstat(doc_id, agent)  # checked again right before the call
        if again is not None:
            reason = (f"{rel} appeared again after it was moved aside ({_describe_entry(again)}); "
                      f"the checkout was not sent")
            return self._refuse("checkout", doc_id, agent, reason, actions=actions, displaced=dest), None
        return None, dest

    def _lstat(self, doc_id: str, agent: str) -> os.stat_result | None:
        ws = open_workspace(self.project_root, agent)
        if ws is None:
            return None
        try:
            return os.stat(f"{doc_id}.md", dir_fd=ws, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(ws)

    def _aside_fd(self, agent: str) -> int:
        folder = displaced_dir(self.project_root, agent)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            raise QmsOperationError(f"cannot use {_rel(self.project_root, folder)} to keep copies aside "
                                    f"({exc.strerror or exc}); nothing was changed") from None

    def _move_aside(self, doc_id: str, agent: str) -> Path:
        """Rename the workspace entry (whatever it is, links included) into the displaced folder."""
        ws = open_workspace(self.project_root, agent)
        if ws is None:
            raise QmsOperationError(f"the workspace of {agent} vanished; nothing was changed")
        aside = self._aside_fd(agent)
        name = f"{doc_id}.{_stamp()}.md"
        try:
            os.rename(f"{doc_id}.md", name, src_dir_fd=ws, dst_dir_fd=aside)
        except OSError as exc:
            why = "another filesystem" if exc.errno == errno.EXDEV else (exc.strerror or str(exc))
            raise QmsOperationError(f"cannot move {_rel(self.project_root, self.copy_path(doc_id, agent))} aside "
                                    f"({why}); nothing was changed") from None
        finally:
            os.close(ws)
            os.close(aside)
        return displaced_dir(self.project_root, agent) / name

    def _save_aside(self, doc_id: str, agent: str, data: bytes) -> Path:
        """Write ``data`` (a copy's text that would otherwise be lost) to a new file in the displaced folder."""
        aside = self._aside_fd(agent)
        name = f"{doc_id}.{_stamp()}.md"
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=aside)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            os.close(aside)
        return displaced_dir(self.project_root, agent) / name

    def _reconcile_checkout(self, outcome: OpOutcome) -> None:
        doc_id, agent = outcome.doc_id or "", outcome.agent
        meta = find_meta(self.project_root, doc_id) or {}
        held = bool(meta.get("checked_out")) and meta.get("responsible_user") == agent
        present = self._lstat(doc_id, agent) is not None
        rel = _rel(self.project_root, self.copy_path(doc_id, agent))
        outcome.actions.append(f"the reply was lost; read back: meta checked_out={bool(meta.get('checked_out'))} "
                               f"(holder {meta.get('responsible_user')}), {rel} {'present' if present else 'absent'}")
        if held and present:
            outcome.status, outcome.reason = "ok", None
            outcome.text = outcome.text or f"Checked out: {doc_id}"
        elif _timed_out(outcome):
            outcome.advice = ("The server may still complete it; check with `qms-panel status` (or the "
                              "Workspace pane) before trying again.")
        else:
            outcome.status = "error"
            outcome.reason = f"not checked out: the reply was lost and the files show no checkout ({outcome.reason})"
            outcome.advice = "Check it out again once the server answers."

    # --- checkin --------------------------------------------------------------------------

    def _read(self, doc_id: str, agent: str) -> _Copy | None:
        found: CopyRead | None = read_copy(self.project_root, agent, doc_id)
        if found is None:
            return None
        path = self.copy_path(doc_id, agent)
        return _Copy(facts=FileFacts.of_bytes(path, found.data, found.mtime.timestamp()), data=found.data)

    async def checkin(self, doc_id: str, agent: str) -> OpOutcome:
        _check(doc_id, agent)
        try:
            before = await anyio.to_thread.run_sync(self._read, doc_id, agent)
        except UnsafeCopy as err:
            return self._refuse("checkin", doc_id, agent, err.detail)
        if before is None:
            stuck = await anyio.to_thread.run_sync(self._stuck, doc_id, agent)
            if stuck is not None:
                return stuck
        outcome = await self._call("checkin", "qms_checkin", agent, doc_id)
        return await anyio.to_thread.run_sync(self._after_checkin, outcome, before)

    def _after_checkin(self, outcome: OpOutcome, before: _Copy | None) -> OpOutcome:
        """Verify the files after a checkin call: what the command says must match them."""
        outcome.workspace = before.facts if before else None
        if before is None:
            return outcome
        if outcome.reply_lost:
            self._reconcile_checkin(outcome, before)
        elif outcome.ok:
            self._verify_checked_in(outcome, before)
        else:
            self._verify_untouched(outcome, before)
        return outcome

    def _draft_body(self, doc_id: str) -> str | None:
        meta = find_meta(self.project_root, doc_id) or {}
        draft = draft_path(self.project_root, doc_id, meta.get("doc_type"))
        try:
            return _body(draft.read_bytes()) if draft else None
        except OSError:
            return None

    def _now(self, doc_id: str, agent: str) -> _Copy | None | str:
        """The copy now: read, None (absent), or why it cannot be read."""
        try:
            return self._read(doc_id, agent)
        except UnsafeCopy as err:
            return err.detail

    def _verify_checked_in(self, outcome: OpOutcome, before: _Copy) -> None:
        doc_id, agent = outcome.doc_id or "", outcome.agent
        if self._draft_body(doc_id) == _body(before.data):
            outcome.actions.append(f"checked the draft: it holds the copy that was checked in ({before.facts.brief()})")
            return
        dest = self._save_aside(doc_id, agent, before.data)
        outcome.displaced = dest
        outcome.status = "error"
        outcome.reason = (f"the server checked {doc_id} in, but the draft does not hold the copy qms-panel checked "
                          f"({before.facts.brief()}): the copy changed during the checkin")
        outcome.actions.append(f"saved the copy as it was read to {_rel(self.project_root, dest)}")
        outcome.advice = "Review the draft (qms_read with draft=true) against the saved copy."

    def _reconcile_checkin(self, outcome: OpOutcome, before: _Copy) -> None:
        """After a lost reply: checked in, not checked in (copy intact), or unknown, from the files."""
        doc_id, agent = outcome.doc_id or "", outcome.agent
        rel = _rel(self.project_root, before.facts.path)
        meta = find_meta(self.project_root, doc_id) or {}
        held = bool(meta.get("checked_out")) and meta.get("responsible_user") == agent
        draft_has_copy = self._draft_body(doc_id) == _body(before.data)
        now = self._now(doc_id, agent)
        intact = isinstance(now, _Copy) and before.facts.same_bytes(now.facts)
        copy_state = ("absent" if now is None else "byte-identical" if intact
                      else now if isinstance(now, str) else f"changed ({now.facts.brief()})")
        outcome.actions.append(f"the reply was lost; read back: meta checked_out={bool(meta.get('checked_out'))}, "
                               f"draft {'holds' if draft_has_copy else 'does not hold'} the copy, {rel} {copy_state}")
        later = "The server may still complete it; check with `qms-panel status` before trying again."
        if now is None and draft_has_copy:
            outcome.status, outcome.reason = "ok", None
            outcome.text = outcome.text or f"Checked in: {doc_id}"
            return
        if now is None:
            dest = self._save_aside(doc_id, agent, before.data)
            outcome.displaced = dest
            outcome.reason = f"{rel} is gone and the draft does not hold it ({outcome.reason})"
            outcome.actions.append(f"saved the copy as it was read ({before.facts.brief()}) to "
                                   f"{_rel(self.project_root, dest)}")
            outcome.advice = later
            return
        if intact and held and not draft_has_copy:
            outcome.workspace_intact = True
            if _timed_out(outcome):
                outcome.advice = later
                return
            outcome.status = "error"
            outcome.reason = f"not checked in: the reply was lost and the files show no checkin ({outcome.reason})"
            outcome.advice = f"The copy is intact; check {doc_id} in again once the server answers."
            return
        outcome.workspace_intact = intact
        outcome.advice = later

    def _stuck(self, doc_id: str, agent: str) -> OpOutcome | None:
        """A local refusal when the meta says checked out to ``agent`` but the copy is missing."""
        meta = find_meta(self.project_root, doc_id) or {}
        if not (meta.get("checked_out") and meta.get("responsible_user") == agent):
            return None
        rel = _rel(self.project_root, self.copy_path(doc_id, agent))
        reason = (f"{rel} is missing although {doc_id} is checked out to {agent}; "
                  f"nothing was changed. Run repair to restore the copy from the current draft and check it in")
        return self._refuse("checkin", doc_id, agent, reason)

    def _verify_untouched(self, outcome: OpOutcome, before: _Copy) -> None:
        now = self._now(outcome.doc_id or "", outcome.agent)
        rel = _rel(self.project_root, before.facts.path)
        outcome.workspace_intact = isinstance(now, _Copy) and before.facts.same_bytes(now.facts)
        if outcome.workspace_intact:
            outcome.actions.append(f"checked {rel}: byte-identical after the failed checkin ({before.facts.brief()})")
            return
        what = ("is gone" if now is None else now if isinstance(now, str)
                else f"changed ({before.facts.brief()} -> {now.facts.brief()})")
        outcome.actions.append(f"{rel} {what} after the failed checkin")
        outcome.reason = f"{rel} {what} after a failed checkin ({outcome.reason})"
        outcome.status = "error"
        if now is None:
            dest = self._save_aside(outcome.doc_id or "", outcome.agent, before.data)
            outcome.displaced = dest
            outcome.actions.append(f"saved the copy as it was read to {_rel(self.project_root, dest)}")

    # --- repair ---------------------------------------------------------------------------

    async def repair(self, doc_id: str, agent: str) -> OpOutcome:
        """Restore a missing workspace copy from the draft and check it in as its holder."""
        _check(doc_id, agent)
        try:
            made = await anyio.to_thread.run_sync(self._restore_copy, doc_id, agent)
        except (UnsafeCopy, QmsOperationError) as err:
            status = "error" if type(err) is QmsOperationError else "refused"
            return OpOutcome(operation="repair", doc_id=doc_id, agent=agent, status=status, reason=err.detail,
                             text=err.detail)
        if isinstance(made, OpOutcome):
            return made
        copy, draft, made_dirs = made
        path = copy.facts.path
        actions = [f"copied {_rel(self.project_root, draft)} to {_rel(self.project_root, path)} ({copy.facts.brief()})"]
        checkin = await self._call("checkin", "qms_checkin", agent, doc_id)
        checkin = await anyio.to_thread.run_sync(self._after_checkin, checkin, copy)
        if checkin.ok:
            actions.append(f"checked in {doc_id} as {agent}: {_first_line(checkin.text, 'Checked in: ')}")
        else:
            actions.append(f"checkin as {agent} failed: {checkin.reason}")
        outcome = checkin.model_copy(update={"operation": "repair", "actions": actions + checkin.actions,
                                             "workspace": copy.facts})
        if outcome.ok or outcome.status == "unknown":
            return outcome
        await anyio.to_thread.run_sync(self._undo_restore, outcome, copy, made_dirs)
        return outcome

    def _restore_copy(self, doc_id: str, agent: str) -> OpOutcome | tuple[_Copy, Path, list[Path]]:
        def refuse(reason: str) -> OpOutcome:
            return self._refuse("repair", doc_id, agent, reason)

        meta = find_meta(self.project_root, doc_id)
        if meta is None:
            return refuse(f"{doc_id} has no metadata (QMS/.meta/*/{doc_id}.json): nothing to repair")
        holder = meta.get("responsible_user")
        if not meta.get("checked_out"):
            return refuse(f"{doc_id} is not checked out: nothing to repair")
        if holder != agent:
            return refuse(f"{doc_id} is checked out by {holder}, not {agent}: repair it as {holder}")
        path = self.copy_path(doc_id, agent)
        rel = _rel(self.project_root, path)
        if (st := self._lstat(doc_id, agent)) is not None:
            return refuse(f"{rel} exists ({_describe_entry(st)}): nothing to repair (check it in instead)")
        draft = draft_path(self.project_root, doc_id, meta.get("doc_type"))
        if draft is None:
            return refuse(f"{doc_id}-draft.md not found under QMS/: no draft to restore the copy from")
        made_dirs = _missing_folders(path.parent, self.project_root)
        try:
            data = draft.read_bytes()
            path.parent.mkdir(parents=True, exist_ok=True)
            ws = open_workspace(self.project_root, agent)
            if ws is None:
                raise FileNotFoundError(errno.ENOENT, "the workspace folder vanished")
            try:  # never overwrite, never through a link: the copy did not exist a moment ago
                fd = os.open(f"{doc_id}.md", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=ws)
                try:
                    os.write(fd, data)
                    mtime = os.fstat(fd).st_mtime
                finally:
                    os.close(fd)
            finally:
                os.close(ws)
        except FileExistsError:
            return refuse(f"{rel} appeared meanwhile: nothing was changed")
        except OSError as exc:
            for folder in made_dirs:
                _rmdir_if_empty(folder)
            raise QmsOperationError(f"cannot restore {rel} ({exc.strerror or exc}); nothing was changed") from None
        return _Copy(facts=FileFacts.of_bytes(path, data, mtime), data=data), draft, made_dirs

    def _undo_restore(self, outcome: OpOutcome, made: _Copy, made_dirs: list[Path]) -> None:
        doc_id, agent = outcome.doc_id or "", outcome.agent
        rel = _rel(self.project_root, made.facts.path)
        now = self._now(doc_id, agent)
        if isinstance(now, _Copy) and made.facts.same_bytes(now.facts):
            ws = open_workspace(self.project_root, agent)
            if ws is not None:
                try:
                    os.unlink(f"{doc_id}.md", dir_fd=ws)
                finally:
                    os.close(ws)
            for folder in made_dirs:
                _rmdir_if_empty(folder)
            outcome.actions.append(f"removed {rel} again: the files are as they were")
        elif now is None:
            outcome.actions.append(f"{rel} is already gone")
        else:
            what = now if isinstance(now, str) else f"it changed since it was copied ({now.facts.brief()})"
            outcome.actions.append(f"kept {rel}: {what}")


def _timed_out(outcome: OpOutcome) -> bool:
    """The lost reply was a timeout: a stalled server may still act on the call."""
    return (outcome.reason or "").startswith(CallTimeout.title)


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
                   work: Callable[[QmsOps], Awaitable[OpOutcome]], *, timeout: float = 10.0,
                   call_timeout: float = 60.0) -> OpOutcome:
    """Open a short-lived link, run one operation, close the link (for the command line)."""
    from core.mcp_link import open_link

    async with open_link(url, transport=transport, timeout=timeout, call_timeout=call_timeout) as link:
        return await work(QmsOps(link, project_root))
