"""The access audit: each container's real mounts, capabilities and live probes against the matrix.

The declared side is :mod:`core.layout` (the only place that spells container paths, and the
capabilities an agent keeps). The actual side comes from :class:`core.containers.ContainerManager`
only: ``inspect`` for the mounts, the capabilities and the environment, one ``exec`` per container
for the live probes (:mod:`core.probes`, ``access.sh``). The probe tries to create and remove a
uniquely named file in every declared directory (and every undeclared mount), lists or reads each
path, and prints the uid, ``HOME``, the capability bounding set and ``/.mcp.json``. It never
leaves a file behind: what it wrote it removes, then checks that the file is gone.

Which containers, and how far: every container the manager lists (ours, and any that mounts the
project root or a path under it). Ours are probed. Containers qms-panel did not make are judged
from the engine's inspect only (no exec at all) unless the caller asks (``probe_unmanaged``); their
rows say "not probed" rather than guess. A container whose agent cannot be told is still judged on
the rows that hold for every agent (``/pipe-dream`` read-only, no writable mount of the project, no
unexpected writable bind, no Docker socket, the capabilities).

Each row holds what was found as data (:class:`MountFact`, :class:`ProbeFact`); the texts are
derived from them. Everything here blocks (Docker SDK calls); the app runs it in a thread worker.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from core import layout, probes
from core.audit_rows import (
    RANK,
    AuditReport,
    AuditRow,
    ContainerAudit,
    MountFact,
    ProbeFact,
    ProbeStatus,
    Severity,
    Verdict,
    rw_word,
)
from core.errors import ContainerNotFound, QmsPanelError
from core.layout import Access, MountKind, PathRule
from core.settings import AGENT_ID_RE

__all__ = ["AuditReport", "AuditRow", "ContainerAudit", "MountFact", "ProbeFact", "ProbeStatus", "Severity", "Verdict",
           "audit_all", "audit_container", "run_probes", "parse_probe_output", "identify_agent"]

if TYPE_CHECKING:
    from core.containers import ContainerDetail, ContainerManager, ContainerRow, MountInfo
    from core.settings import Settings

PROBE_PREFIX = ".qms-panel-probe-"
PROBE_TIMEOUT = 10.0
HOME_ROW = "$HOME"
CAPS_ROW = "capabilities"
_MCP_LIMIT = 65536
NOT_OURS = "not made by qms-panel: no exec into it unless asked (qms-panel audit --probe-unmanaged)"

# Linux capability numbers (include/uapi/linux/capability.h), for the probe's CapBnd mask.
CAPABILITY_BITS = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)
# What the engine grants a container that does not say otherwise (Docker's default set).
DOCKER_DEFAULT_CAPABILITIES = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP", "SETPCAP",
    "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})
# An extra capability of these is high severity: NET_RAW forges packets (another agent's address on
# the bridge, where identity is decided by address); the others reach the host or other processes.
HIGH_RISK_CAPABILITIES = frozenset({
    "NET_RAW", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "SYS_MODULE", "SYS_RAWIO", "DAC_READ_SEARCH", "BPF",
    "PERFMON", "SYS_BOOT", "SYS_TIME", "MAC_ADMIN", "MAC_OVERRIDE", "LINUX_IMMUTABLE", "SYSLOG",
})
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


# --- the probe ----------------------------------------------------------------------------


class PathProbe(BaseModel):
    kind: Literal["dir", "file", "absent"]
    read: bool = False
    write: bool = False  # a probe file was created (dir) / the file is writable (file)
    clash: bool = False  # a file with the probe's name already existed: nothing was written
    left: bool = False  # the probe file could not be removed
    error: str = ""  # why the write was refused


class ProbeOutcome(BaseModel):
    paths: dict[str, PathProbe] = {}
    uid: str | None = None
    home: str | None = None  # None: HOME unset in the exec'd shell
    cap_bounding: int | None = None  # the CapBnd mask of /proc/self/status
    no_new_privs: bool | None = None
    mcp_text: str | None = None  # None: /.mcp.json not readable
    failure: str = ""  # why the probe did not run (exec error, timeout, cut output, not ours)
    probe_name: str = ""


def run_probes(manager: ContainerManager, container: str, paths: list[str], *,
               timeout: float = PROBE_TIMEOUT) -> ProbeOutcome:
    """Probe ``paths`` inside ``container`` with one ``exec`` of ``access.sh``."""
    name = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    argv = ["sh", "-c", probes.program("access.sh"), "sh", name, str(layout.MCP_CONFIG_PATH), str(_MCP_LIMIT), *paths]
    try:
        result = manager.exec(container, argv, timeout=timeout)
    except QmsPanelError as err:
        return ProbeOutcome(failure=f"exec failed: {err}", probe_name=name)
    output = result.output.decode(errors="replace") if isinstance(result.output, bytes) else (result.output or "")
    outcome = parse_probe_output(output)
    outcome.probe_name = name
    if result.timed_out:
        outcome.failure = f"timed out after {timeout:g}s"
    elif "M-END" not in output.splitlines():
        first = next((line for line in output.splitlines() if line.strip()), "no output")
        outcome.failure = f"exec failed (exit {result.exit_code}): {first.strip()}"
    return outcome


def parse_probe_output(output: str) -> ProbeOutcome:
    """Read the lines ``access.sh`` prints."""
    outcome = ProbeOutcome()
    lines = output.replace("\r\n", "\n").split("\n")
    mcp: list[str] | None = None
    for line in lines:
        if mcp is not None:
            if line == "M-OK":
                outcome.mcp_text = "\n".join(mcp)
            if line in ("M-OK", "M-END"):
                mcp = None
            else:
                mcp.append(line)
            continue
        if line == "M-BEGIN":
            mcp = []
            continue
        tag, _, rest = line.partition("\t")
        fields = rest.split("\t")
        if tag == "U":
            outcome.uid = fields[0] or None
        elif tag == "H":
            outcome.home = fields[1] if fields[0] == "set" and len(fields) > 1 else None
        elif tag == "C":
            if re.fullmatch(r"[0-9a-fA-F]{1,16}", fields[0].strip()):
                outcome.cap_bounding = int(fields[0], 16)
            if len(fields) > 1 and fields[1].strip() in ("0", "1"):
                outcome.no_new_privs = fields[1].strip() == "1"
        elif tag == "P" and len(fields) >= 4:
            path, read, write, clean = fields[:4]
            outcome.paths[path] = PathProbe(kind="dir", read=read == "read", write=write == "write",
                                            clash=write == "clash", left=clean == "left",
                                            error=fields[4].strip() if len(fields) > 4 else "")
        elif tag == "F" and len(fields) >= 3:
            outcome.paths[fields[0]] = PathProbe(kind="file", read=fields[1] == "read", write=fields[2] == "write")
        elif tag == "A" and fields[0]:
            outcome.paths[fields[0]] = PathProbe(kind="absent")
    return outcome


def capability_names(mask: int) -> list[str]:
    """The capabilities set in a ``CapBnd``-style mask (unknown bits as ``CAP_<n>``)."""
    return [CAPABILITY_BITS[i] if i < len(CAPABILITY_BITS) else f"CAP_{i}"
            for i in range(mask.bit_length()) if mask >> i & 1]


def launch_capabilities(detail: ContainerDetail) -> list[str]:
    """The capability set a container was created with, from inspect (``["ALL"]`` when privileged)."""
    if detail.privileged:
        return ["ALL"]
    drop, add = _cap_names(detail.cap_drop), _cap_names(detail.cap_add)
    if "ALL" in add:
        return ["ALL"]
    base = set() if "ALL" in drop else set(DOCKER_DEFAULT_CAPABILITIES) - drop
    return sorted(base | add)


def _cap_names(caps: Iterable[str]) -> set[str]:
    """``CAP_NET_RAW`` and ``net_raw`` as ``NET_RAW`` (the engine reports either)."""
    return {c.upper().removeprefix("CAP_") for c in caps}


# --- which agent ---------------------------------------------------------------------------


def identify_agent(row: ContainerRow, detail: ContainerDetail, settings: Settings) -> tuple[str | None, str]:
    """The agent a container runs and how we know: label (ours), QMS_USER, workspace mount, hostname."""
    if row.managed and row.agent:
        return row.agent, "label"
    user = (detail.env or {}).get("QMS_USER", "")
    if AGENT_ID_RE.match(user or ""):
        return user, "QMS_USER"
    pattern = _workspace_pattern(settings)
    for mount in detail.mounts:
        m = pattern.match(_norm(mount.destination))
        if m:
            return m.group(1), "workspace mount"
    host = detail.hostname or ""
    if AGENT_ID_RE.match(host) and not (row.id or "").startswith(host):
        return host, "hostname"
    return None, ""


def _workspace_pattern(settings: Settings) -> re.Pattern:
    """The workspace's container path with the agent id as a group, from the layout itself."""
    sentinel = "qmsagentsentinel"
    lay = layout.resolve(sentinel, settings.project_root, container_prefix=settings.container_prefix)
    target = next(r.container_path for r in lay.rules if r.source == str(lay.workspace_host))
    return re.compile("^" + re.escape(target).replace(sentinel, "([a-z0-9_-]+)") + "$")


# --- verdicts ------------------------------------------------------------------------------


class _Finding:
    def __init__(self, probed: bool = True) -> None:
        self.items: list[tuple[Verdict, Severity, str]] = []
        self.probed = probed

    def add(self, verdict: Verdict, severity: Severity, detail: str) -> None:
        self.items.append((verdict, severity, detail))

    def result(self, ok_detail: str = "") -> tuple[Verdict, Severity, str]:
        bad = [i for i in self.items if i[0] is not Verdict.OK]
        if not bad:
            details = [d for _, _, d in self.items if d] + ([ok_detail] if ok_detail else [])
            return (Verdict.OK if self.probed else Verdict.NOT_PROBED), Severity.OK, "; ".join(details)
        worst = max(bad, key=lambda i: RANK[i[1]])
        return worst[0], worst[1], "; ".join(d for _, _, d in bad)


def _norm(path: str) -> str:
    return str(PurePosixPath(path)) if path else path


def _same_host_path(a: str, b: str) -> bool:
    return os.path.normpath(a) == os.path.normpath(b) or os.path.realpath(a) == os.path.realpath(b)


def _under(path: str, root: Path) -> bool:
    """``path`` (a host path) is ``root`` or inside it."""
    p = Path(os.path.normpath(path))
    return p == root or root in p.parents


def mount_fact(mount: MountInfo, via: str | None = None) -> MountFact:
    source = mount.volume_name if mount.type == "volume" and mount.volume_name else mount.source
    return MountFact(kind=mount.type, rw=mount.rw, source=source or None, via=via)


def describe_mount(mount: MountInfo) -> str:
    """``bind ro /srv/pd``, ``volume rw qms-agent-claude-projects``, ``tmpfs rw``."""
    return mount_fact(mount).text


def _covering(path: str, mounts: dict[str, MountInfo]) -> MountInfo | None:
    """The mount whose destination is the closest ancestor of ``path``."""
    best = None
    for dest, mount in mounts.items():
        if dest != "/" and (path + "/").startswith(dest + "/") and (best is None or len(dest) > len(best[0])):
            best = (dest, mount)
    return best[1] if best else None


def _mounted(path: str, mounts: dict[str, MountInfo]) -> MountFact:
    if path in mounts:
        return mount_fact(mounts[path])
    cover = _covering(path, mounts)
    return mount_fact(cover, via=_norm(cover.destination)) if cover else MountFact(kind="image")


def _probe_fact(probe: PathProbe | None, outcome: ProbeOutcome, declared: Access | None = None) -> ProbeFact:
    if outcome.failure:
        return ProbeFact(status=ProbeStatus.NOT_RUN, error=outcome.failure)
    if probe is None:
        return ProbeFact(status=ProbeStatus.NO_ANSWER)
    if probe.kind == "absent":
        return ProbeFact(status=ProbeStatus.ABSENT)
    if probe.kind == "file":
        return ProbeFact(status=ProbeStatus.FOUND, kind="file", read=probe.read,
                         write=None if declared is Access.BAKED else probe.write)
    return ProbeFact(status=ProbeStatus.FOUND, kind="dir", read=probe.read, write=None if probe.clash else probe.write,
                     clash=probe.clash, removed=(not probe.left) if probe.write else None, error=probe.error)


def _check_mount(rule: PathRule, mount: MountInfo | None, finding: _Finding) -> None:
    where = rule.container_path
    if rule.mount is MountKind.NONE:
        if mount is None:
            return
        same = (rule.source is not None and mount.type == "bind" and _same_host_path(mount.source, rule.source)
                and mount.rw == rule.writable)
        if not same:
            finding.add(Verdict.DRIFT, Severity.HIGH if mount.rw and not rule.writable else Severity.LOW,
                        f"{describe_mount(mount)} is mounted on {where}; the matrix has it "
                        + ("from the image" if rule.source is None else "under its parent mount"))
        return
    declared = " ".join(p for p in (rule.mount.value, rw_word(rule.writable), rule.source) if p)
    if mount is None:
        finding.add(Verdict.MISSING, Severity.LOW, f"nothing mounted on {where} (declared {declared})")
        return
    if mount.type != rule.mount.value:
        finding.add(Verdict.DRIFT, Severity.HIGH if mount.rw and not rule.writable else Severity.LOW,
                    f"a {mount.type} mount, declared {declared}")
    elif rule.mount is MountKind.VOLUME and rule.source is not None and mount.volume_name != rule.source:
        finding.add(Verdict.DRIFT, Severity.HIGH, f"wrong source: volume {mount.volume_name}, declared {rule.source}")
    elif rule.mount is MountKind.BIND and not _same_host_path(mount.source, rule.source or ""):
        finding.add(Verdict.DRIFT, Severity.HIGH, f"wrong source: {mount.source}, declared {rule.source}")
    if mount.rw and not rule.writable:
        production = " (production is writable from the container)" if where == str(layout.CONTAINER_ROOT) else ""
        finding.add(Verdict.DRIFT, Severity.HIGH, f"mounted read-write, declared read-only{production}")
    elif not mount.rw and rule.writable:
        finding.add(Verdict.DRIFT, Severity.LOW, "mounted read-only, declared read-write")


def _check_probe(rule: PathRule, probe: PathProbe | None, outcome: ProbeOutcome,
                 cover: MountInfo | None, finding: _Finding) -> str:
    """Judge the live probe of one rule; returns an ok-detail worth showing, if any."""
    path = rule.container_path
    if not finding.probed:
        return ""
    if outcome.failure:
        finding.add(Verdict.PROBE_FAILED, Severity.LOW, f"probe not run: {outcome.failure}")
        return ""
    if probe is None:
        finding.add(Verdict.PROBE_FAILED, Severity.LOW, "the probe script gave no answer for this path")
        return ""
    if probe.left:
        finding.add(Verdict.PROBE_FAILED, Severity.HIGH,
                    f"probe file {path.rstrip('/')}/{outcome.probe_name} could not be removed")
    if probe.kind == "absent":
        if rule.access is Access.BAKED:
            finding.add(Verdict.MISSING, Severity.LOW, "not in the image")
        elif rule.read_only and rule.mount is MountKind.NONE:
            return "not created yet" + (f"; lies under the {_norm(cover.destination)} mount" if cover else "")
        else:
            finding.add(Verdict.PROBE_FAILED, Severity.LOW, "does not exist in the container")
        return ""
    if (probe.kind == "file") != rule.is_file:
        finding.add(Verdict.PROBE_FAILED, Severity.LOW,
                    f"is a {probe.kind}, declared a {'file' if rule.is_file else 'directory'}")
        return ""
    if not probe.read:
        finding.add(Verdict.PROBE_FAILED, Severity.LOW, "cannot be read")
    if probe.clash:
        finding.add(Verdict.PROBE_FAILED, Severity.LOW, f"a file named {outcome.probe_name} already exists; not touched")
    elif rule.read_only and probe.write:
        how = "is writable" if probe.kind == "file" else "a probe file was created (and removed)"
        finding.add(Verdict.DRIFT, Severity.HIGH, f"declared read-only, but {how}")
    elif rule.writable and not probe.write:
        finding.add(Verdict.PROBE_FAILED, Severity.LOW,
                    f"declared read-write, but writing failed: {probe.error or 'refused'}")
    return ""


def _check_mcp(text: str | None, expected: dict, finding: _Finding) -> str:
    """Judge the /.mcp.json content; returns what the probe saw (server and URL, or what is wrong)."""
    if text is None:
        return "unreadable"
    try:
        data = json.loads(text)
        server = data["mcpServers"][layout.MCP_SERVER_NAME]
        url = server["url"]
    except (ValueError, KeyError, TypeError) as exc:
        kind = "not valid JSON" if isinstance(exc, ValueError) else f"no mcpServers.{layout.MCP_SERVER_NAME}.url"
        finding.add(Verdict.DRIFT, Severity.LOW, f"{layout.MCP_CONFIG_PATH}: {kind}")
        return kind
    if str(url).rstrip("/") != expected["url"].rstrip("/"):
        finding.add(Verdict.DRIFT, Severity.LOW, f"points at {url}, configured container_mcp_url is {expected['url']}")
    elif server.get("type", expected["type"]) != expected["type"]:
        finding.add(Verdict.DRIFT, Severity.LOW, f"type {server.get('type')!r}, expected {expected['type']!r} for {url}")
    return f"{layout.MCP_SERVER_NAME} -> {url}"


def _check_extra(mount: MountInfo, probe: PathProbe | None, outcome: ProbeOutcome, project_root: Path,
                 own_workspace: Path | None, finding: _Finding) -> None:
    """Judge a mount the matrix does not declare: the Docker socket, the project, other writable binds."""
    dest = _norm(mount.destination)
    writable = mount.rw or bool(probe and probe.write)
    source = mount.source or ""
    if dest in DOCKER_SOCKETS or (mount.type == "bind" and os.path.basename(source) == "docker.sock"):
        finding.add(Verdict.EXTRA, Severity.HIGH, "the Docker socket is mounted (read-only does not help): whoever "
                                                  "reaches it controls the engine, every agent and the host")
    elif mount.type == "bind" and _under(source, project_root):
        if own_workspace is not None and _same_host_path(source, str(own_workspace)):
            finding.add(Verdict.EXTRA, Severity.LOW, "the agent's own workspace, mounted a second time")
        elif writable:
            finding.add(Verdict.DRIFT, Severity.HIGH, f"the project ({source}) is writable from the container; "
                                                      "only an agent's own workspace may be")
        else:
            finding.add(Verdict.EXTRA, Severity.LOW, f"a second, read-only mount of the project ({source})")
    else:
        finding.add(Verdict.EXTRA, Severity.HIGH if writable else Severity.LOW,
                    f"not in the access matrix; {'writable' if writable else 'read-only'}")
    if probe and probe.left:
        finding.add(Verdict.PROBE_FAILED, Severity.HIGH, f"probe file {dest}/{outcome.probe_name} could not be removed")


def _check_capabilities(detail: ContainerDetail, outcome: ProbeOutcome | None, finding: _Finding) -> list[str] | None:
    """Judge the capabilities (the probe's bounding set when it ran, else inspect's); returns the
    bounding set the probe saw (None: not seen)."""
    launched = launch_capabilities(detail)
    seen = capability_names(outcome.cap_bounding) if outcome and outcome.cap_bounding is not None else None
    actual = set(seen) if seen is not None else set(CAPABILITY_BITS if launched == ["ALL"] else launched)
    declared = set(layout.AGENT_CAPABILITIES)
    if detail.privileged:
        finding.add(Verdict.DRIFT, Severity.HIGH, "privileged: every capability and every device of the host")
    extra = sorted(actual - declared)
    if extra and not detail.privileged:
        high = [c for c in extra if c in HIGH_RISK_CAPABILITIES]
        why = " (NET_RAW forges packets: another agent's address on the bridge)" if "NET_RAW" in extra else ""
        finding.add(Verdict.DRIFT, Severity.HIGH if high else Severity.LOW,
                    f"has {', '.join(extra)} beyond the declared set{why}")
    missing = sorted(declared - actual)
    if missing:
        finding.add(Verdict.DRIFT, Severity.LOW, f"lacks {', '.join(missing)} (building may fail)")
    nnp = outcome.no_new_privs if outcome else None
    if nnp is None:
        nnp = any(o.split("=")[0].split(":")[0] == "no-new-privileges" and not o.endswith(("false", "=0"))
                  for o in detail.security_opt)
    if not nnp:
        finding.add(Verdict.DRIFT, Severity.LOW, "no-new-privileges is off (setuid binaries can raise privileges)")
    return seen


# --- audits --------------------------------------------------------------------------------


def audit_container(manager: ContainerManager, settings: Settings, row_or_name: ContainerRow | str, *,
                    probe_unmanaged: bool = False) -> ContainerAudit:
    """Audit one container (a row from ``manager.list()``, or its name or id)."""
    row = _find_row(manager, row_or_name) if isinstance(row_or_name, str) else row_or_name
    return _audit(manager, settings, row, probe_unmanaged=probe_unmanaged)


def _audit(manager: ContainerManager, settings: Settings, row: ContainerRow, only_agent: str | None = None, *,
           probe_unmanaged: bool = False) -> ContainerAudit | None:
    """The audit of ``row``; None when ``only_agent`` is given and the container runs another agent."""
    detail = manager.inspect(row.id or row.name)
    agent, source = identify_agent(row, detail, settings)
    if only_agent is not None and agent != only_agent:
        return None
    base = dict(agent=agent, agent_source=source, container=row.name, container_id=row.id,
                managed=row.managed, state=row.state)
    if row.state != "running":
        return ContainerAudit(**base, audited=False, note=f"the container is {row.state}; only running containers are audited",
                              rows=[], ok=True)
    probe = row.managed or probe_unmanaged
    rows, outcome = _audit_rows(manager, settings, row, detail, agent, probe=probe)
    notes = []
    if agent is None:
        notes.append("cannot tell which agent it runs (no qms-panel label, QMS_USER, workspace mount or agent "
                     "hostname): judged on the rows that hold for every agent")
    if not probe:
        notes.append(f"not probed: {NOT_OURS}")
    elif outcome.failure:
        notes.append(f"probes not run: {outcome.failure}")
    return ContainerAudit(**base, audited=True, probed=probe and not outcome.failure, note="; ".join(notes),
                          probe_user=outcome.uid, rows=rows, ok=all(r.ok for r in rows))


def audit_all(manager: ContainerManager, settings: Settings, *, agent: str | None = None,
              rows: Iterable[ContainerRow] | None = None, probe_unmanaged: bool = False) -> AuditReport:
    """Audit every container of ``rows`` (default: one ``manager.list()``); only ``agent``'s when given."""
    audits = []
    for row in manager.list() if rows is None else rows:
        if agent is not None and row.managed and row.agent != agent:
            continue
        try:
            audit = _audit(manager, settings, row, agent, probe_unmanaged=probe_unmanaged)
        except ContainerNotFound:
            continue  # removed between list() and inspect()
        if audit is not None:
            audits.append(audit)
    return AuditReport(containers=audits, ok=all(a.ok for a in audits), generated_at=datetime.now(timezone.utc))


def _find_row(manager: ContainerManager, name_or_id: str) -> ContainerRow:
    for row in manager.list():
        if name_or_id in (row.name, row.id) or (len(name_or_id) >= 6 and row.id.startswith(name_or_id)):
            return row
    raise ContainerNotFound(f"{name_or_id!r} is not an agent container (not made by qms-panel and "
                            f"not mounting the project root)")


def _audit_rows(manager: ContainerManager, settings: Settings, row: ContainerRow, detail: ContainerDetail,
                agent: str | None, *, probe: bool) -> tuple[list[AuditRow], ProbeOutcome]:
    project_root = Path(settings.project_root).expanduser().resolve()
    mounts = {_norm(m.destination): m for m in detail.mounts}
    if agent is not None:
        lay = layout.for_settings(settings, agent)
        rules, own_workspace = list(lay.rules), lay.workspace_host
    else:  # only what holds for every agent, where the container has something mounted
        rules, own_workspace = [r for r in layout.shared_rules(project_root) if r.container_path in mounts], None
    declared_paths = {r.container_path for r in rules}
    extras = [dest for dest in mounts if dest not in declared_paths]
    if probe:
        outcome = run_probes(manager, row.id or row.name, [r.container_path for r in rules] + extras)
    else:
        outcome = ProbeOutcome(failure=NOT_OURS)
    expected_mcp = layout.mcp_config(settings.container_mcp_url)["mcpServers"][layout.MCP_SERVER_NAME]

    def make(path, declared, mount, fact, finding, ok_detail=""):
        verdict, severity, text = finding.result(ok_detail)
        return AuditRow(agent=agent, container=row.name, path=path, declared=declared, mount=mount,
                        probe=fact, verdict=verdict, severity=severity, detail=text)

    rows = []
    for rule in rules:
        path = rule.container_path
        finding = _Finding(probed=probe)
        _check_mount(rule, mounts.get(path), finding)
        found = outcome.paths.get(path)
        ok_detail = _check_probe(rule, found, outcome, _covering(path, mounts), finding)
        fact = _probe_fact(found, outcome, rule.access)
        if rule.container_path == str(layout.MCP_CONFIG_PATH) and not outcome.failure:
            fact.value = _check_mcp(outcome.mcp_text, expected_mcp, finding)
        rows.append(make(path, rule.access, _mounted(path, mounts), fact, finding, ok_detail))
        if path == "/":
            rows.append(_home_row(detail, outcome, probe, make))
    for dest in extras:
        mount, found = mounts[dest], outcome.paths.get(dest)
        finding = _Finding(probed=probe)
        _check_extra(mount, found, outcome, project_root, own_workspace, finding)
        rows.append(make(dest, None, mount_fact(mount), _probe_fact(found, outcome), finding))
    finding = _Finding(probed=probe)
    seen = _check_capabilities(detail, None if outcome.failure else outcome, finding)
    fact = (ProbeFact(status=ProbeStatus.CAPABILITIES, values=seen) if seen is not None
            else _probe_fact(None, outcome))
    rows.append(make(CAPS_ROW, Access.LAUNCH, MountFact(kind="launch", values=launch_capabilities(detail)), fact,
                     finding))
    return rows, outcome


def _home_row(detail: ContainerDetail, outcome: ProbeOutcome, probed: bool, make) -> AuditRow:
    env_home = (detail.env or {}).get("HOME")
    finding = _Finding(probed=probed)
    if env_home != layout.HOME:
        finding.add(Verdict.DRIFT, Severity.LOW, f"HOME is {'unset' if env_home is None else repr(env_home)} "
                                                 f"in the container's environment, declared {layout.HOME!r}")
    elif not outcome.failure and outcome.home != layout.HOME:
        finding.add(Verdict.DRIFT, Severity.LOW, f"a shell in the container sees HOME={outcome.home!r}")
    fact = (ProbeFact(status=ProbeStatus.NOT_RUN, error=outcome.failure) if outcome.failure
            else ProbeFact(status=ProbeStatus.SEEN, value=outcome.home))
    mount = MountFact(kind="env", source="HOME" if env_home is None else f"HOME={env_home}")
    return make(HOME_ROW, Access.BAKED, mount, fact, finding)
