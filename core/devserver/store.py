"""The QMS file semantics of qms-cli, in process.

The real MCP server runs ``qms-cli/qms.py --user U <command>`` for every tool call. This module
does what that CLI does for the eight commands behind the panel's tools (inbox, workspace,
status, read, history, create, checkout, checkin): the same stdout (contract 1.6) and the same
files (contract sections 2-4, 6, 7). Each command returns a :class:`CliResult`: what the CLI
would print, and whether it would exit 0.

Where the mirror HEAD and the later CLI differ this follows **[latest]**: checkout of an
effective document does not archive it; CLOSED and RETIRED documents refuse checkout; checkout
from an active review/approval is owner-only and auto-withdraws (WITHDRAW event, inbox tasks
removed); PRE_APPROVED -> DRAFT and POST_REVIEWED -> IN_EXECUTION on checkout; an IN_EXECUTION
checkout bumps the minor version and its checkin archives the previous draft; ``X-TP-N-ER-N`` is
type ER; create also writes ``supersedes: null`` as the CLI code does.

Deliberate differences, because this is a development server:

- an id that is not a QMS id (``../x``, ``cr-1``), a user name or a version that is not a plain
  name gives the CLI's "not found" text instead of a traceback, and never reaches a path outside
  the project;
- checkin of a workspace file for a document that does not exist is refused as not found
  (the CLI would create a half-made document);
- VR documents are plain documents (no interactive sessions); create knows SOP, CR, INV,
  TEMPLATE, TP and VAR.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import BaseModel

ADMINS = frozenset({"lead", "claude"})
GROUP_HIERARCHY = ("administrator", "initiator", "quality", "reviewer")  # highest first
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "create": ("initiator",),
    "checkout": ("initiator",),
    "checkin": ("initiator",),
}
OWNER_ONLY = frozenset({"checkin"})
AUTHOR_FIELDS = ("title", "revision_summary")
EXECUTABLE_TYPES = frozenset({"CR", "INV", "TP", "ER", "VAR", "ADD", "VR"})
CREATE_TYPES = ("SOP", "CR", "INV", "TP", "VAR", "TEMPLATE")
BUILTIN_NAMESPACES = {"FLOW": "SDLC-FLOW", "QMS": "SDLC-QMS"}
WITHDRAW_TRANSITIONS = {
    "IN_REVIEW": "DRAFT",
    "IN_APPROVAL": "REVIEWED",
    "IN_PRE_REVIEW": "DRAFT",
    "IN_PRE_APPROVAL": "PRE_REVIEWED",
    "IN_POST_REVIEW": "IN_EXECUTION",
    "IN_POST_APPROVAL": "POST_REVIEWED",
}
CHECKOUT_TRANSITIONS = {"PRE_APPROVED": "DRAFT", "POST_REVIEWED": "IN_EXECUTION"}
TASK_KEYWORDS = ("review", "approval", "pre_review", "pre_approval", "post_review", "post_approval")

GROUP_GUIDANCE = {
    "administrator": """
As an Administrator (lead), you have full system access:
  - All initiator capabilities (create, checkout, checkin, route, release, close)
  - All quality capabilities (assign, review, approve, reject)
  - System configuration and maintenance
""",
    "initiator": """
As an Initiator (claude), you can:
  - Create new documents: qms --user {you} create SOP --title "Title"
  - Check out documents for editing: qms --user {you} checkout DOC-ID
  - Check in edited documents: qms --user {you} checkin DOC-ID
  - Route documents for review/approval: qms --user {you} route DOC-ID --review
  - Release/close executable documents you own

You cannot:
  - Assign additional reviewers (Quality only)
  - Approve or reject documents
""",
    "quality": """
As Quality (qa), you can:
  - Assign reviewers to workflows: qms --user qa assign DOC-ID --assignees tu_ui tu_scene
  - Review documents: qms --user qa review DOC-ID --recommend --comment "..."
  - Approve documents: qms --user qa approve DOC-ID
  - Reject documents: qms --user qa reject DOC-ID --comment "..."

You cannot:
  - Create new documents (Initiator only)
  - Route documents for workflows (Initiator only)
""",
    "reviewer": """
As a Reviewer (TU/BU), you can:
  - Review documents when assigned: qms --user {you} review DOC-ID --recommend --comment "..."
  - Approve documents when assigned: qms --user {you} approve DOC-ID
  - Reject documents when assigned: qms --user {you} reject DOC-ID --comment "..."
  - Check your inbox: qms --user {you} inbox
  - Read any document: qms --user {you} read DOC-ID

You cannot:
  - Create documents (Initiator only)
  - Route documents (Initiator only)
  - Assign reviewers (Quality only)
""",
}

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_VERSION_RE = re.compile(r"^\d+\.\d+$")
_SOP_RE = re.compile(r"^SOP-\d+$")
_TEMPLATE_RE = re.compile(r"^TEMPLATE-[A-Z0-9][A-Z0-9_-]*$")
_SDLC_RE = re.compile(r"^SDLC-(?P<ns>[A-Z0-9]+)-(?P<kind>RS|RTM)$")
_EXEC_RE = re.compile(r"^(?P<top>(?P<kind>CR|INV)-\d+)(?:-(?:TP|ER|VAR|ADD|VR)-\d+)*$")
_LAST_CHILD_RE = re.compile(r"-(TP|ER|VAR|ADD|VR)-\d+$")
_NOTICE_RE = re.compile(r"<!--\s*={70,82}\s*TEMPLATE DOCUMENT NOTICE\s*={70,82}\s*.*?={70,82}\s*-->\s*", re.DOTALL)


class CliResult(BaseModel):
    """What ``qms.py`` would print on stdout, and whether it would exit 0."""

    output: str
    ok: bool

    @property
    def text(self) -> str:
        """The MCP tool text: the output stripped, or ``(no output)``."""
        return self.output.strip() or "(no output)"


@dataclass(frozen=True)
class DocRef:
    """A document id resolved to its type key (the .meta/.audit folder) and its folder under QMS/."""

    doc_id: str
    doc_type: str
    folder: str


class _Exit(Exception):
    """Stop a command with exit code 1, after printing ``text``."""

    def __init__(self, text: str | None = None) -> None:
        super().__init__(text)
        self.text = text


def _command(method: Callable[..., None]) -> Callable[..., CliResult]:
    """Run ``method(self, out, *args)`` like the CLI: ``out`` is print, :class:`_Exit` is exit 1."""

    @functools.wraps(method)
    def run(self: QmsStore, *args: Any, **kwargs: Any) -> CliResult:
        lines: list[str] = []

        def out(text: str = "") -> None:
            lines.append(text)

        try:
            method(self, out, *args, **kwargs)
            ok = True
        except _Exit as stop:
            if stop.text is not None:
                lines.append(stop.text)
            ok = False
        return CliResult(output="".join(f"{line}\n" for line in lines), ok=ok)

    return run


# --- documents: frontmatter, files --------------------------------------------------------


def parse_frontmatter(content: str) -> tuple[dict[str, Any], str]:
    if not content.startswith("---"):
        return {}, content
    parts = content.split("---", 2)
    if len(parts) < 3:
        return {}, content
    try:
        frontmatter = yaml.safe_load(parts[1])
    except yaml.YAMLError:
        return {}, content
    return (frontmatter if isinstance(frontmatter, dict) else {}), parts[2].lstrip("\n")


def write_minimal(path: Path, frontmatter: dict[str, Any], body: str) -> None:
    """Write a document keeping only the author fields (title, revision_summary) in its frontmatter."""
    minimal = {k: v for k, v in frontmatter.items() if k in AUTHOR_FIELDS}
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(minimal, default_flow_style=False, sort_keys=False, allow_unicode=True)
    path.write_text(f"---\n{text}---\n\n{body}", encoding="utf-8")


def has_group_permission(group: str, allowed: tuple[str, ...]) -> bool:
    """A group passes a check for itself and for every group below it (administrator > ... > reviewer)."""
    if group in allowed:
        return True
    rank = GROUP_HIERARCHY.index(group) if group in GROUP_HIERARCHY else len(GROUP_HIERARCHY)
    return any(a in GROUP_HIERARCHY and rank < GROUP_HIERARCHY.index(a) for a in allowed)


def utc_timestamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def format_history(events: list[dict[str, Any]]) -> str:
    """The CLI's rendering of audit events (seed lines come out as ``[?] ? by system - v?``)."""
    lines: list[str] = []
    for e in events:
        ts, kind, user, version = e.get("ts", "?"), e.get("event", "?"), e.get("user", "?"), e.get("version", "?")
        head = f"[{ts}] {kind} by {user} - v{version}"
        if kind == "CREATE":
            lines.append(f'{head} - "{e.get("title", "")}"')
        elif kind == "CHECKOUT" and e.get("from_version"):
            lines.append(f"{head} (from v{e['from_version']})")
        elif kind in ("ROUTE_REVIEW", "ROUTE_APPROVAL"):
            label = e.get("review_type", "REVIEW") if kind == "ROUTE_REVIEW" else e.get("approval_type", "APPROVAL")
            lines.append(f"[{ts}] ROUTE {label} by {user} - v{version} - to: {', '.join(e.get('assignees', []))}")
        elif kind == "REVIEW":
            lines.append(f"{head} - {e.get('outcome', '?')}")
            lines.extend(f"    {line}" for line in (e.get("comment") or "").split("\n") if e.get("comment"))
        elif kind == "REJECT":
            lines.append(head)
            lines.extend(f"    {line}" for line in (e.get("comment") or "").split("\n") if e.get("comment"))
        elif kind == "EFFECTIVE":
            lines.append(f"[{ts}] EFFECTIVE - v{e.get('from_version', '?')} -> v{version}")
        elif kind == "REVERT":
            lines.append(head)
            if e.get("reason"):
                lines.append(f"    Reason: {e['reason']}")
        elif kind == "RETIRE":
            lines.append(f"[{ts}] RETIRE by {user} - v{e.get('from_version', '?')} -> v{version} (RETIRED)")
        elif kind == "STATUS_CHANGE":
            lines.append(f"[{ts}] STATUS by {user} - v{version} - {e.get('from_status', '?')} -> {e.get('to_status', '?')}")
        else:
            lines.append(head)
    return "\n".join(lines)


class QmsStore:
    """One project's QMS: ``root`` holds ``QMS/`` and ``.claude/``.

    The commands are called without ``out`` (the decorator supplies it) and return a CliResult:
    ``store.checkout("CR-001", "claude").text``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.qms = self.root / "QMS"
        self.users = self.root / ".claude" / "users"

    # --- ids and paths ---------------------------------------------------------------------

    def namespaces(self) -> dict[str, str]:
        """SDLC namespace -> folder under QMS/ (built-in FLOW and QMS, plus .meta/sdlc_namespaces.json)."""
        spaces = dict(BUILTIN_NAMESPACES)
        try:
            extra = json.loads((self.qms / ".meta" / "sdlc_namespaces.json").read_text(encoding="utf-8"))
            for ns, conf in extra.items():
                path = str(conf.get("path", f"SDLC-{ns}"))
                if _NAME_RE.match(ns) and _NAME_RE.match(path):
                    spaces[ns] = path
        except (OSError, ValueError, AttributeError):
            pass
        return spaces

    def doc_ref(self, doc_id: str) -> DocRef | None:
        """Resolve a document id, or None if it is not a QMS id (so nothing outside QMS/ is ever named)."""
        if _SOP_RE.match(doc_id):
            return DocRef(doc_id, "SOP", "SOP")
        if _TEMPLATE_RE.match(doc_id):
            return DocRef(doc_id, "TEMPLATE", "TEMPLATE")
        if m := _SDLC_RE.match(doc_id):
            folder = self.namespaces().get(m["ns"])
            return DocRef(doc_id, f"{m['ns']}-{m['kind']}", folder) if folder else None
        if m := _EXEC_RE.match(doc_id):
            child = _LAST_CHILD_RE.search(doc_id)
            return DocRef(doc_id, child.group(1) if child else m["kind"], f"{m['kind']}/{m['top']}")
        return None

    def doc_path(self, ref: DocRef, *, draft: bool = False) -> Path:
        return self.qms / ref.folder / (f"{ref.doc_id}-draft.md" if draft else f"{ref.doc_id}.md")

    def archive_path(self, ref: DocRef, version: str) -> Path:
        return self.qms / ".archive" / ref.folder / f"{ref.doc_id}-v{version}.md"

    def meta_path(self, ref: DocRef) -> Path:
        return self.qms / ".meta" / ref.doc_type / f"{ref.doc_id}.json"

    def audit_path(self, ref: DocRef) -> Path:
        return self.qms / ".audit" / ref.doc_type / f"{ref.doc_id}.jsonl"

    def workspace_path(self, user: str, doc_id: str) -> Path:
        return self.users / user / "workspace" / f"{doc_id}.md"

    def inbox_dir(self, user: str) -> Path:
        return self.users / user / "inbox"

    def agent_path(self, user: str) -> Path:
        return self.root / ".claude" / "agents" / f"{user}.md"

    # --- meta and audit --------------------------------------------------------------------

    def read_meta(self, ref: DocRef) -> dict[str, Any] | None:
        try:
            meta = json.loads(self.meta_path(ref).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def write_meta(self, ref: DocRef, meta: dict[str, Any]) -> None:
        """Write the meta JSON (indent 2) atomically: a temp file in the same folder, then os.replace."""
        path = self.meta_path(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{ref.doc_id}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(meta, fh, indent=2, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def log(self, ref: DocRef, event: str, user: str, version: str, **extra: Any) -> None:
        """Append one audit event line (``ts`` UTC to the second, ``+00:00``)."""
        record = {"ts": utc_timestamp(), "event": event, "user": user, "version": version, **extra}
        path = self.audit_path(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def read_audit(self, ref: DocRef) -> list[dict[str, Any]]:
        try:
            text = self.audit_path(ref).read_text(encoding="utf-8")
        except OSError:
            return []
        events = []
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    # --- users and permissions -------------------------------------------------------------

    def user_group(self, user: str) -> str | None:
        """``administrator`` for lead and claude, else the ``group:`` of ``.claude/agents/<user>.md``."""
        if user in ADMINS:
            return "administrator"
        if not _NAME_RE.match(user):
            return None
        try:
            frontmatter, _ = parse_frontmatter(self.agent_path(user).read_text(encoding="utf-8"))
        except OSError:
            return None
        group = frontmatter.get("group")
        return str(group) if group else None

    def _verify_user(self, user: str) -> str:
        group = self.user_group(user)
        if group in GROUP_HIERARCHY:
            return group
        if group is not None:
            raise _Exit(f"""
Error: Invalid group '{group}' in agent file for user '{user}'.

Valid groups: administrator, initiator, quality, reviewer

Check .claude/agents/{user}.md and ensure the 'group:' frontmatter is valid.
""")
        agent_path = self.agent_path(user) if _NAME_RE.match(user) else f".claude/agents/{user}.md"
        raise _Exit(f"""
Error: User '{user}' not found.

To use qms-cli, you must be either:
  - A hardcoded administrator: lead, claude
  - Defined via an agent file: .claude/agents/{user}.md

To add this user, run:
  python qms-cli/qms.py user --add {user} --group <group>

Or create the agent file manually at:
  {agent_path}

With frontmatter:
  ---
  name: {user}
  group: <administrator|initiator|quality|reviewer>
  ---
""")

    def _permit(self, user: str, command: str, owner: str | None = None) -> None:
        group = self.user_group(user) or "unknown"
        allowed = PERMISSIONS[command]
        if not has_group_permission(group, allowed):
            raise _Exit(f"""
Permission Denied: '{command}' command

Your role: {group} ({user})
Required role(s): {', '.join(allowed)}

{GROUP_GUIDANCE.get(group, '')}
""")
        if command in OWNER_ONLY and owner and owner != user:
            raise _Exit(f"""
Permission Denied: '{command}' command

You ({user}) are not the responsible user for this document.
Responsible user: {owner}

Only the document owner can perform this action.
""")

    def _ref(self, doc_id: str) -> DocRef:
        ref = self.doc_ref(doc_id)
        if ref is None:
            raise _Exit(f"Error: Document not found: {doc_id}")
        return ref

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # --- commands --------------------------------------------------------------------------

    @_command
    def inbox(self, out, user: str) -> None:
        """``qms --user U inbox``: the task files in the user's inbox."""
        self._verify_user(user)
        tasks = sorted(self.inbox_dir(user).glob("*.md"))
        if not tasks:
            out("Inbox is empty")
            return
        out(f"Inbox for {user}:")
        out("-" * 60)
        for task in tasks:
            fm, _ = parse_frontmatter(task.read_text(encoding="utf-8"))
            out(f"  [{fm.get('task_type', '?')}] {fm.get('doc_id', '?')}")
            out(f"    Workflow: {fm.get('workflow_type', '?')}")
            out(f"    From: {fm.get('assigned_by', '?')}")
            out(f"    Date: {fm.get('assigned_date', '?')}")
            out()

    @_command
    def workspace(self, out, user: str) -> None:
        """``qms --user U workspace``: the user's checked-out copies (always ``?`` for version/status)."""
        self._verify_user(user)
        docs = sorted((self.users / user / "workspace").glob("*.md"))
        if not docs:
            out("Workspace is empty")
            return
        out(f"Workspace for {user}:")
        out("-" * 60)
        for doc in docs:
            fm, _ = parse_frontmatter(doc.read_text(encoding="utf-8"))
            out(f"  {fm.get('doc_id', doc.stem)}")
            out(f"    Version: {fm.get('version', '?')}")
            out(f"    Status: {fm.get('status', '?')}")
            out()

    @_command
    def status(self, out, doc_id: str, user: str) -> None:
        """``qms --user U status ID`` (like the CLI, any user may ask)."""
        ref = self._ref(doc_id)
        draft, effective = self.doc_path(ref, draft=True), self.doc_path(ref)
        if draft.exists():
            path, location = draft, "draft"
        elif effective.exists():
            path, location = effective, "effective"
        else:
            raise _Exit(f"Error: Document not found: {doc_id}")
        fm, _ = parse_frontmatter(path.read_text(encoding="utf-8"))
        meta = self.read_meta(ref) or {}
        out(f"Document: {doc_id}")
        out(f"Title: {fm.get('title', 'N/A')}")
        out(f"Version: {meta.get('version', 'N/A')}")
        out(f"Status: {meta.get('status', 'N/A')}")
        out(f"Location: {location}")
        out(f"Type: {ref.doc_type}")
        out(f"Executable: {meta.get('executable', False)}")
        out(f"Responsible User: {meta.get('responsible_user') or 'N/A'}")
        out(f"Checked Out: {meta.get('checked_out', False)}")
        if meta.get("effective_version"):
            out(f"Effective Version: {meta['effective_version']}")
        pending, doc_status = meta.get("pending_assignees") or [], meta.get("status", "")
        if pending and "REVIEW" in doc_status:
            out(f"\nPending Reviewers: {', '.join(pending)}")
        elif pending and "APPROVAL" in doc_status:
            out(f"\nPending Approvers: {', '.join(pending)}")

    @_command
    def read(self, out, doc_id: str, user: str, version: str = "", draft: bool = False) -> None:
        """``qms --user U read ID [--version V] [--draft]``: effective first, else the draft."""
        ref = self._ref(doc_id)
        if version:
            if not _VERSION_RE.match(version):
                raise _Exit(f"Error: Document not found: {doc_id}")
            path = self.archive_path(ref, version)
        elif draft:
            path = self.doc_path(ref, draft=True)
        else:
            path = self.doc_path(ref)
            if not path.exists():
                path = self.doc_path(ref, draft=True)
        if not path.exists():
            raise _Exit(f"Error: Document not found: {doc_id}")
        out(path.read_text(encoding="utf-8"))

    @_command
    def history(self, out, doc_id: str, user: str) -> None:
        """``qms --user U history ID``: the audit trail, rendered."""
        self._verify_user(user)
        ref = self.doc_ref(doc_id)
        events = self.read_audit(ref) if ref else []
        if not events:
            if ref and (self.doc_path(ref, draft=True).exists() or self.doc_path(ref).exists()):
                out(f"Document {doc_id} exists but has no audit log.")
                raise _Exit("Run 'qms migrate' to generate audit logs from frontmatter history.")
            raise _Exit(f"Document not found: {doc_id}")
        out(f"Audit History: {doc_id}")
        out("=" * 70)
        out(format_history(events))

    @_command
    def create(self, out, doc_type: str, title: str, user: str, parent: str = "", name: str = "") -> None:
        """``qms --user U create TYPE --title T [--parent P] [--name N]``: a v0.1 draft, checked out to U."""
        self._verify_user(user)
        self._permit(user, "create")
        doc_type = doc_type.upper()
        if doc_type not in CREATE_TYPES:
            raise _Exit(f"Error: Unknown document type '{doc_type}'\nValid types: {', '.join(CREATE_TYPES)}")
        if doc_type in ("TP", "VAR"):
            doc_id = self._child_id(doc_type, parent)
        elif doc_type == "TEMPLATE":
            if not name:
                raise _Exit(f"""
Error: TEMPLATE documents require --name argument.

Usage: qms --user {user} create TEMPLATE --name TYPE --title "Title"

Examples:
  qms --user claude create TEMPLATE --name CR --title "CR Template"
  qms --user claude create TEMPLATE --name SOP --title "SOP Template"
""")
            doc_id = f"TEMPLATE-{name.upper()}"
        else:
            doc_id = f"{doc_type}-{self._next_number(self.qms / doc_type, doc_type):03d}"
        ref = self.doc_ref(doc_id)
        if ref is None:
            raise _Exit(f"Error: Unknown document type for: {doc_id}")
        draft = self.doc_path(ref, draft=True)
        if draft.exists() or self.doc_path(ref).exists():
            raise _Exit(f"Error: {doc_id} already exists")

        title = title or f"{doc_type} - [Title]"
        frontmatter, body = self._template(doc_type, doc_id, title)
        write_minimal(draft, frontmatter, body)
        self.write_meta(ref, {
            "doc_id": doc_id,
            "doc_type": ref.doc_type,
            "version": "0.1",
            "status": "DRAFT",
            "executable": ref.doc_type in EXECUTABLE_TYPES,
            "execution_phase": "pre_release" if ref.doc_type in EXECUTABLE_TYPES else None,
            "responsible_user": user,
            "checked_out": True,
            "checked_out_date": str(date.today()),
            "effective_version": None,
            "supersedes": None,
            "pending_assignees": [],
        })
        self.log(ref, "CREATE", user, "0.1", title=title)
        workspace = self.workspace_path(user, doc_id)
        workspace.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(draft, workspace)
        out(f"Created: {doc_id} (v0.1, DRAFT)")
        out(f"Location: {self._rel(draft)}")
        out(f"Workspace: {self._rel(workspace)}")
        out(f"Responsible User: {user}")

    @_command
    def checkout(self, out, doc_id: str, user: str) -> None:
        """``qms --user U checkout ID``: contract section 7, [latest] rules."""
        self._verify_user(user)
        self._permit(user, "checkout")
        ref = self._ref(doc_id)
        draft, effective = self.doc_path(ref, draft=True), self.doc_path(ref)
        meta = self.read_meta(ref) or {}
        status = meta.get("status", "DRAFT")
        if status in ("CLOSED", "RETIRED"):
            raise _Exit(f"Error: {doc_id} is {status} and cannot be checked out.")
        workspace = self.workspace_path(user, doc_id)

        if draft.exists():
            if status in WITHDRAW_TRANSITIONS:
                owner = meta.get("responsible_user")
                if owner != user:
                    out(f"Error: {doc_id} is in {status} and owned by {owner or 'unknown'}")
                    raise _Exit("Only the document owner can checkout from an active workflow")
                new_status = WITHDRAW_TRANSITIONS[status]
                self.log(ref, "WITHDRAW", user, meta.get("version", "0.1"), from_status=status, to_status=new_status)
                meta.update(status=new_status, pending_assignees=[], completed_reviewers=[], review_outcomes={})
                self.write_meta(ref, meta)
                self._remove_tasks(doc_id)
                out(f"Auto-withdrawn: {status} -> {new_status}")
                status = new_status
            if meta.get("checked_out"):
                holder = meta.get("responsible_user", "unknown")
                if holder == user:
                    raise _Exit(f"You already have {doc_id} checked out")
                raise _Exit(f"Error: {doc_id} is checked out by {holder}")
            frontmatter, body = parse_frontmatter(draft.read_text(encoding="utf-8"))
            version = meta.get("version", "0.1")
            if status in CHECKOUT_TRANSITIONS:
                target = CHECKOUT_TRANSITIONS[status]
                meta.update(status=target, pending_assignees=[], completed_reviewers=[], review_outcomes={})
                out(f"Transitioned from {status} to {target}")
            if status == "IN_EXECUTION":
                major, minor = str(meta.get("version", "1.0")).split(".")
                meta["version"] = f"{major}.{int(minor) + 1}"
                out(f"Execution checkout: creating v{meta['version']} (current: v{version})")
            meta.update(responsible_user=user, checked_out=True, checked_out_date=str(date.today()))
            self.write_meta(ref, meta)
            self.log(ref, "CHECKOUT", user, version)
            write_minimal(workspace, frontmatter, body)
        elif effective.exists():
            frontmatter, body = parse_frontmatter(effective.read_text(encoding="utf-8"))
            current = str(meta.get("version", "1.0"))
            new_version = f"{current.split('.')[0]}.1"
            meta.update(responsible_user=user, checked_out=True, checked_out_date=str(date.today()),
                        version=new_version, status="DRAFT", effective_version=current)
            self.write_meta(ref, meta)
            self.log(ref, "CHECKOUT", user, new_version, from_version=current)
            write_minimal(draft, frontmatter, body)
            write_minimal(workspace, frontmatter, body)
            out(f"Created draft v{new_version} from effective v{current}")
        else:
            raise _Exit(f"Error: Document not found: {doc_id}")
        out(f"Checked out: {doc_id}")
        out(f"Workspace: {self._rel(workspace)}")

    @_command
    def checkin(self, out, doc_id: str, user: str) -> None:
        """``qms --user U checkin ID``: the workspace copy becomes the draft (contract section 7)."""
        self._verify_user(user)
        self._permit(user, "checkin")
        ref = self._ref(doc_id)
        workspace = self.workspace_path(user, doc_id)
        if not workspace.exists():
            raise _Exit(f"""
Error: {doc_id} not found in your workspace.

Your workspace contains documents you have checked out for editing.
To check out a document: qms --user {user} checkout {doc_id}
To see your workspace: qms --user {user} workspace
""")
        draft = self.doc_path(ref, draft=True)
        meta = self.read_meta(ref)
        if meta is None and not draft.exists() and not self.doc_path(ref).exists():
            raise _Exit(f"Error: Document not found: {doc_id}")
        meta = meta or {}
        self._permit(user, "checkin", owner=meta.get("responsible_user"))
        frontmatter, body = parse_frontmatter(workspace.read_text(encoding="utf-8"))
        version = str(meta.get("version", frontmatter.get("version", "0.1")))
        if meta.get("status") == "IN_EXECUTION" and draft.exists():
            major, minor = version.split(".")
            if int(minor) > 0:
                previous = f"{major}.{int(minor) - 1}"
                archive = self.archive_path(ref, previous)
                archive.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(draft, archive)
                out(f"Archived: v{previous}")
        write_minimal(draft, frontmatter, body)
        meta.update(checked_out=False, checked_out_date=None)
        if meta.get("status") in ("REVIEWED", "PRE_REVIEWED", "POST_REVIEWED"):
            meta.update(status="DRAFT", pending_reviewers=[], completed_reviewers=[], review_outcomes={})
        self.write_meta(ref, meta)
        self.log(ref, "CHECKIN", user, version)
        workspace.unlink()
        out(f"Checked in: {doc_id} (v{version})")

    # --- helpers for create and checkout ---------------------------------------------------

    def _next_number(self, folder: Path, prefix: str) -> int:
        pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)")
        numbers = [0]
        if folder.is_dir():
            for item in folder.iterdir():
                name = (item.stem if item.is_file() else item.name).replace("-draft", "")
                if m := pattern.match(name):
                    numbers.append(int(m.group(1)))
        return max(numbers) + 1

    def _child_id(self, doc_type: str, parent: str) -> str:
        if not parent:
            raise _Exit(f'Error: {doc_type} documents require --parent flag\n'
                        f'Usage: qms create {doc_type} --parent CR-001 --title "..."')
        parent_ref = self.doc_ref(parent)
        if parent_ref is None:
            raise _Exit(f"Error: Unknown document type for: {parent}")
        if doc_type == "TP" and parent_ref.doc_type != "CR":
            raise _Exit("Error: TP documents must have a CR parent")
        if not (self.doc_path(parent_ref).exists() or self.doc_path(parent_ref, draft=True).exists()):
            raise _Exit(f"Error: Parent document {parent} does not exist")
        number = self._next_number(self.qms / parent_ref.folder, f"{parent}-{doc_type}")
        return f"{parent}-{doc_type}-{number:03d}"

    def _template(self, doc_type: str, doc_id: str, title: str) -> tuple[dict[str, Any], str]:
        """The CLI's template loading: the example part of TEMPLATE-<type>, else a minimal body."""
        path = self.qms / "TEMPLATE" / f"TEMPLATE-{doc_type}.md"
        parts = path.read_text(encoding="utf-8").split("---") if path.exists() else []
        if len(parts) < 5:
            body = (f"# {doc_id}: {title}\n\n## 1. Purpose\n\n[Describe the purpose of this document]\n\n---\n\n"
                    "## 2. Scope\n\n[Define what this document covers]\n\n---\n\n## 3. Content\n\n"
                    "[Main content here]\n\n---\n\n**END OF DOCUMENT**\n")
            return {"title": title}, body
        body = _NOTICE_RE.sub("", "---".join(parts[4:]))
        body = body.replace("{{TITLE}}", title).replace(f"{doc_type}-XXX", doc_id)
        return {"title": title, "revision_summary": "Initial draft"}, body.strip() + "\n"

    def _remove_tasks(self, doc_id: str) -> None:
        if not self.users.is_dir():
            return
        for inbox in self.users.glob("*/inbox"):
            for keyword in TASK_KEYWORDS:
                for task in inbox.glob(f"task-{doc_id}-{keyword}*.md"):
                    task.unlink(missing_ok=True)
