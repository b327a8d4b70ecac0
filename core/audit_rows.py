"""The access audit's findings as plain data: one row per path or container fact, one audit per container.

Each row holds what the engine said (:class:`MountFact`) and what the live probe found
(:class:`ProbeFact`); the texts (``mounted``, ``probed``) are derived from them, so a reader (the
matrix pane, the command line, a header) works from the fields and never parses a display string.
No I/O here: :mod:`core.access_audit` makes these; widgets may import them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, computed_field

from core.layout import Access

__all__ = ["RANK", "rw_word", "Severity", "Verdict", "MountFact", "ProbeStatus", "ProbeFact", "AuditRow", "ContainerAudit",
           "AuditReport"]


class Severity(StrEnum):
    OK = "ok"
    LOW = "low"
    HIGH = "high"


RANK = {Severity.OK: 0, Severity.LOW: 1, Severity.HIGH: 2}


class Verdict(StrEnum):
    OK = "ok"
    DRIFT = "drift"  # differs from the matrix: writable where read-only, wrong source, wrong value
    MISSING = "missing"  # a declared mount or baked file is not there
    EXTRA = "extra"  # a mount the matrix does not declare
    PROBE_FAILED = "probe failed"  # the live probe could not confirm the declared access
    NOT_PROBED = "not probed"  # the engine's facts match; no probe ran (a container qms-panel did not make)


class MountFact(BaseModel):
    """What the engine says is at a row's path.

    ``kind`` is the mount's type (``bind``, ``volume``, ``tmpfs``), ``image`` when nothing is
    mounted there, ``env`` for an environment variable (``source`` holds ``NAME=value``, or ``NAME``
    when unset) and ``launch`` for the capabilities the container was created with (``values``).
    """

    kind: str
    rw: bool | None = None
    source: str | None = None  # host path, volume name, or the env fact
    via: str | None = None  # the destination of the parent mount this path lies under
    values: list[str] = []  # the capabilities (kind "launch"); ["ALL"] when privileged

    @property
    def text(self) -> str:
        """``bind ro /srv/pd``, ``via /pipe-dream: bind ro /srv/pd``, ``image``, ``env HOME=/``."""
        if self.kind == "image":
            return "image"
        if self.kind == "env":
            return f"env {self.source}" if self.source and "=" in self.source else f"env {self.source} unset"
        if self.kind == "launch":
            return "privileged: every capability" if self.values == ["ALL"] else "caps " + " ".join(self.values)
        own = " ".join(p for p in (self.kind, None if self.rw is None else rw_word(self.rw), self.source) if p)
        return f"via {self.via}: {own}" if self.via else own


class ProbeStatus(StrEnum):
    NOT_RUN = "not run"  # ``error`` says why
    NO_ANSWER = "no answer"
    ABSENT = "absent"
    FOUND = "found"  # a directory or file; see read / write
    SEEN = "seen"  # HOME as the shell saw it (``value``)
    CAPABILITIES = "capabilities"  # the capability bounding set the probe saw (``values``)


class ProbeFact(BaseModel):
    """What the live probe found at a row's path."""

    status: ProbeStatus
    kind: Literal["dir", "file"] | None = None
    read: bool | None = None
    write: bool | None = None  # None: not judged (a baked file), or skipped on a name clash
    clash: bool = False  # a file with the probe's name already existed: nothing was written
    removed: bool | None = None  # the probe file was removed (when written)
    error: str = ""  # why the write was refused, or why the probe did not run
    value: str | None = None  # HOME as the shell saw it (None: unset); the MCP server and URL
    values: list[str] = []  # the capability bounding set

    @property
    def text(self) -> str:
        if self.status is ProbeStatus.NOT_RUN:
            return f"not run ({self.error})"
        if self.status in (ProbeStatus.NO_ANSWER, ProbeStatus.ABSENT):
            return self.status.value
        if self.status is ProbeStatus.CAPABILITIES:
            return "bounding set " + (" ".join(self.values) or "empty")
        if self.status is ProbeStatus.SEEN:
            return "sh: HOME unset" if self.value is None else f"sh: HOME={self.value}"
        read = "read ok" if self.read else "read refused"
        if self.kind == "file":
            text = read if self.write is None else f"{read}; {'writable' if self.write else 'not writable'}"
        elif self.clash:
            text = f"{read}; write skipped (name clash)"
        elif self.write:
            text = f"{read}; write ok, {'removed' if self.removed else 'NOT removed'}"
        else:
            text = f"{read}; write refused" + (f" ({_short_error(self.error)})" if self.error else "")
        return f"{text}; {self.value}" if self.value else text


class AuditRow(BaseModel):
    """One path (or container fact) of one container: declared vs mounted vs probed, and the verdict."""

    agent: str | None
    container: str
    path: str
    declared: Access | None  # None: not in the matrix (an extra mount)
    mount: MountFact
    probe: ProbeFact
    verdict: Verdict
    severity: Severity
    detail: str = ""

    @computed_field
    @property
    def mounted(self) -> str:
        return self.mount.text

    @computed_field
    @property
    def probed(self) -> str:
        return self.probe.text

    @property
    def ok(self) -> bool:
        """No problem found (a row of a container that was not probed is ok when its mounts are)."""
        return self.verdict in (Verdict.OK, Verdict.NOT_PROBED)


class ContainerAudit(BaseModel):
    """The audit of one container. A stopped container is not audited (``audited`` False, ``ok`` True)."""

    agent: str | None
    agent_source: str  # how the agent id was found: "label", "QMS_USER", "workspace mount", "hostname", ""
    container: str
    container_id: str
    managed: bool
    state: str
    audited: bool
    probed: bool = False  # the live probes ran (False: from the engine's facts only, or not audited)
    note: str = ""
    probe_user: str | None = None  # uid the probes ran as
    rows: list[AuditRow]
    ok: bool

    @property
    def problems(self) -> list[AuditRow]:
        return [r for r in self.rows if not r.ok]

    @property
    def severity(self) -> Severity:
        return max((r.severity for r in self.rows), key=RANK.__getitem__, default=Severity.OK)


class AuditReport(BaseModel):
    containers: list[ContainerAudit]
    ok: bool
    generated_at: datetime

    @property
    def problems(self) -> list[AuditRow]:
        return [r for c in self.containers for r in c.problems]

    @computed_field
    @property
    def high_drift(self) -> list[str]:
        """One line per high-severity problem (``container path: detail``), for a header or a summary."""
        return [f"{r.container} {r.path}: {r.detail}" for r in self.problems if r.severity is Severity.HIGH]


def rw_word(flag: bool) -> str:
    """``rw`` or ``ro``, as the engine and ``docker run -v`` spell a mount's mode."""
    return "rw" if flag else "ro"


def _short_error(error: str) -> str:
    """``touch: /x/.qms-panel-probe-..: Read-only file system`` -> ``Read-only file system``."""
    return error.rsplit(": ", 1)[-1].strip() if ": " in error else error.strip()
