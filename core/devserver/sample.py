"""A sample QMS project, shaped like one made by ``qms init`` and then used for a while.

Users lead and claude (administrators) and qa (group quality, ``.claude/agents/qa.md``); three
effective SOPs and TEMPLATE-CR with seed-shaped meta and audit lines (contract 2 and 4); and
three change records made through :class:`~core.devserver.store.QmsStore`, so their files are
exactly what the tools write:

- CR-001, owner claude, checked out to claude (workspace copy, CHECKOUT audit line);
- CR-002, owner lead, checked in;
- CR-003, owner claude, routed for pre-review: IN_PRE_REVIEW with a task in qa's inbox.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from pathlib import Path

from core.devserver.store import CliResult, QmsStore, parse_frontmatter, write_minimal
from core.errors import ProjectError

USERS = ("lead", "claude", "qa")

QA_AGENT = """---
name: qa
group: quality
description: Quality Assurance. Reviews and approves controlled documents.
---

You are QA. Review what lands in your inbox against the SOPs; recommend or request updates.
"""

CLAUDE_MD = """# pipe-dream (sample project)

A sample QMS project made by `qms-panel devserver --init`.

- Controlled documents live in `QMS/`; change them only through the QMS tools
  (`qms_checkout`, edit the copy in `.claude/users/<you>/workspace/`, `qms_checkin`).
- Your inbox is `.claude/users/<you>/inbox/`.
"""

SOPS = {
    "SOP-001": ("Document Control", """# SOP-001: Document Control

## 1. Purpose

Defines how controlled documents are created, revised, reviewed, approved and retired.

## 2. Procedure

1. Check a document out with the QMS tools; edit only the workspace copy.
2. Check it in, then route it for review. QA is assigned by default.
3. A document becomes effective when every approver has approved it.

**END OF DOCUMENT**
"""),
    "SOP-002": ("Change Control", """# SOP-002: Change Control

## 1. Purpose

Every change to the system is made under a Change Record (CR).

## 2. Procedure

1. The initiator creates the CR and states scope, rationale and tests.
2. The CR is pre-reviewed and pre-approved before work starts.
3. After execution the CR is post-reviewed, post-approved and closed.

**END OF DOCUMENT**
"""),
    "SOP-003": ("Review and Approval", """# SOP-003: Review and Approval

## 1. Purpose

How reviewers and approvers work through their inbox.

## 2. Procedure

1. Read the document and its history before commenting.
2. Recommend, or request updates with a finding per deficiency.
3. Approve only a document you would sign without comments.

**END OF DOCUMENT**
"""),
}

TEMPLATE_CR = """---
title: Change Record Template
revision_summary: Initial seed
---

<!-- ==============================================================================
TEMPLATE DOCUMENT NOTICE
This is the template for Change Records; `create CR` copies the part below.
============================================================================== -->

---
title: '{{TITLE}}'
revision_summary: Initial draft
---

# CR-XXX: {{TITLE}}

## 1. Purpose

[What this change achieves and why]

## 2. Scope

[What is changed, and what is not]

## 3. Execution

| EI | Task | Outcome |
|----|------|---------|
| EI-1 | [task] | [Pass/Fail] |

**END OF DOCUMENT**
"""

CRS = (
    ("claude", "Add a health check to the agent launcher", """# {id}: Add a health check to the agent launcher

## 1. Purpose

Containers that fail to reach the MCP server should be reported at launch, not at first use.

## 2. Scope

The launcher probes `http://host.docker.internal:8000/sse` once the container is up.

## 3. Execution

| EI | Task | Outcome |
|----|------|---------|
| EI-1 | Add the probe and its timeout | [Pass/Fail] |
| EI-2 | Test with the server stopped | [Pass/Fail] |

**END OF DOCUMENT**
"""),
    ("lead", "Pin the Textual version", """# {id}: Pin the Textual version

## 1. Purpose

Snapshot tests must not change when Textual releases a new version.

## 2. Scope

`pyproject.toml` pins textual exactly; upgrades happen under their own CR.

**END OF DOCUMENT**
"""),
    ("claude", "Document the workspace airlock", """# {id}: Document the workspace airlock

## 1. Purpose

Agents write only to their workspace; the MCP server moves documents in and out.

## 2. Scope

A section in CLAUDE.md and in SOP-001 describing checkout, edit and checkin.

**END OF DOCUMENT**
"""),
)

TASK_BODY = """
# REVIEW REQUEST: {doc_id}

**Workflow:** {workflow}
**Version:** {version}
**Assigned By:** {assigned_by}
**Date:** {today}

## MANDATORY VERIFICATION CHECKLIST

| Item | Status | Evidence |
|------|--------|----------|
| `title:` field present and non-empty | PASS / FAIL | |
| Document follows type-specific template | PASS / FAIL | |
| No placeholder text (TBD, TODO, XXX, FIXME) | PASS / FAIL | |

Submit your review:
```
/qms --user {assignee} review {doc_id} --recommend --comment "[your structured review]"
```
"""


def init_project(root: Path) -> None:
    """Create the sample project in ``root`` (made if missing). Refuses a folder that already has a QMS."""
    root = Path(root)
    for marker in ("QMS", "qms.config.json"):
        if (root / marker).exists():
            raise ProjectError(f"{root / marker} already exists; choose an empty folder for the sample project")
    if root.exists() and not root.is_dir():
        raise ProjectError(f"{root} is not a directory")
    try:
        _write_sample(root)
    except OSError as exc:
        raise ProjectError(f"cannot write the sample project in {root} ({exc.strerror or exc})") from None


def _write_sample(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    (root / "qms.config.json").write_text(
        json.dumps({"version": "1.0", "created": now.isoformat(), "sdlc_namespaces": []}, indent=2), encoding="utf-8")
    (root / "CLAUDE.md").write_text(CLAUDE_MD, encoding="utf-8")
    for folder in (".meta", ".audit", ".archive", "SOP", "CR", "INV", "TEMPLATE"):
        (root / "QMS" / folder).mkdir(parents=True, exist_ok=True)
    for user in USERS:
        for sub in ("workspace", "inbox"):
            (root / ".claude" / "users" / user / sub).mkdir(parents=True, exist_ok=True)
    (root / ".claude" / "agents").mkdir(parents=True, exist_ok=True)
    (root / ".claude" / "agents" / "qa.md").write_text(QA_AGENT, encoding="utf-8")

    store = QmsStore(root)
    for doc_id, (title, body) in SOPS.items():
        _seed(store, doc_id, title, body, now)
    _seed(store, "TEMPLATE-CR", "Change Record Template", TEMPLATE_CR, now)

    for owner, title, body in CRS:
        doc_id = re.match(r"Created: (\S+)", _expect(store.create("CR", title, owner))).group(1)
        write_minimal(store.workspace_path(owner, doc_id), {"title": title, "revision_summary": "Initial draft"},
                      body.format(id=doc_id))
        _expect(store.checkin(doc_id, owner))
    _expect(store.checkout("CR-001", "claude"))
    _route_for_pre_review(store, "CR-003", "claude", assignee="qa")


def _seed(store: QmsStore, doc_id: str, title: str, body: str, now: datetime) -> None:
    """An effective v1.0 document as ``qms init`` seeds it: seed meta and one seed audit line."""
    ref = store.doc_ref(doc_id)
    if body.startswith("---"):
        store.doc_path(ref).write_text(body, encoding="utf-8")
    else:
        write_minimal(store.doc_path(ref), {"title": title, "revision_summary": "Initial seed"}, body)
    store.write_meta(ref, {
        "doc_id": doc_id, "doc_type": ref.doc_type, "version": "1.0", "status": "EFFECTIVE", "executable": False,
        "responsible_user": None, "checked_out": False, "checked_out_date": None, "effective_version": "1.0",
        "supersedes": None, "pending_assignees": [], "pending_reviewers": [], "completed_reviewers": [],
        "review_outcomes": {}, "approval_date": now.strftime("%Y-%m-%d"),
    })
    seed = {"timestamp": now.isoformat(), "action": "seed", "user": "system",
            "details": {"message": "Document seeded during QMS initialization", "version": "1.0", "status": "EFFECTIVE"}}
    store.audit_path(ref).parent.mkdir(parents=True, exist_ok=True)
    store.audit_path(ref).write_text(json.dumps(seed) + "\n", encoding="utf-8")


def _route_for_pre_review(store: QmsStore, doc_id: str, user: str, assignee: str) -> None:
    """What ``qms route ID --review`` does to a checked-in DRAFT CR: status, audit lines, an inbox task."""
    ref = store.doc_ref(doc_id)
    meta = store.read_meta(ref)
    version = meta["version"]
    meta.update(status="IN_PRE_REVIEW", pending_assignees=[assignee])
    store.write_meta(ref, meta)
    store.log(ref, "STATUS_CHANGE", user, version, from_status="DRAFT", to_status="IN_PRE_REVIEW")
    store.log(ref, "ROUTE_REVIEW", user, version, assignees=[assignee], review_type="PRE_REVIEW")
    task_id = f"task-{doc_id}-pre_review-v{version.replace('.', '-')}"
    today = str(date.today())
    title = parse_frontmatter(store.doc_path(ref, draft=True).read_text(encoding="utf-8"))[0].get("title", "")
    # Written as the CLI writes it (an f-string, so date and version are plain YAML scalars).
    frontmatter = (f"---\ntask_id: {task_id}\ntask_type: REVIEW\nworkflow_type: PRE_REVIEW\ndoc_id: {doc_id}\n"
                   f"title: {title}\nstatus: IN_PRE_REVIEW\nresponsible_user: {meta['responsible_user']}\n"
                   f"assigned_by: {user}\nassigned_date: {today}\nversion: {version}\n---\n")
    body = TASK_BODY.format(doc_id=doc_id, workflow="PRE_REVIEW", version=version, assigned_by=user,
                            today=today, assignee=assignee)
    (store.inbox_dir(assignee) / f"{task_id}.md").write_text(frontmatter + body, encoding="utf-8")


def _expect(result: CliResult) -> str:
    if not result.ok:
        raise ProjectError(f"sample project: {result.text}")
    return result.output
