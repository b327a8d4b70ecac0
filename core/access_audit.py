"""The access audit: each agent container's real mounts and live probes against the matrix.

The declared side is :mod:`core.layout` (the only place that spells container paths). The
actual side comes from :class:`core.containers.ContainerManager` only: ``inspect`` for the
mounts and the environment, one ``exec`` per container for the live probes. The probe script
tries to create and remove a uniquely named file in every declared directory (and every
undeclared mount), lists or reads each path, and prints ``HOME`` and ``/.mcp.json``. It never
leaves a file behind: what it wrote it removes, then checks that the file is gone.

Everything here blocks (Docker SDK calls); the app runs it in a thread worker.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from core import layout
from core.errors import ContainerNotFound, QmsPanelError
from core.layout import Access, MountKind, PathRule
from core.settings import AGENT_ID_RE

if TYPE_CHECKING:
    from core.containers import ContainerDetail, ContainerManager, ContainerRow, MountInfo
    from core.settings import Settings

PROBE_PREFIX = ".qms-panel-probe-"
PROBE_TIMEOUT = 10.0
HOME_ROW = "$HOME"
_MCP_LIMIT = 65536

Severity = Literal["ok", "low", "high"]
_RANK = {"ok": 0, "low": 1, "high": 2}


class Verdict(StrEnum):
    OK = "ok"
    DRIFT = "drift"  # differs from the matrix: writable where read-only, wrong source, wrong value
    MISSING = "missing"  # a declared mount or baked file is not there
    EXTRA = "extra"  # a mount the matrix does not declare
    PROBE_FAILED = "probe failed"  # the live probe could not confirm the declared access


class AuditRow(BaseModel):
    """One path (or image fact) of one container, declared vs mounted vs probed."""

    agent: str | None
    container: str
    path: str
    declared: Access | None  # None: not in the matrix (an extra mount)
    mounted: str  # "bind ro /srv/pd", "volume rw qms-agent-claude-projects", "image", "env HOME=/"
    probe: str
    verdict: Verdict
    severity: Severity
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


class ContainerAudit(BaseModel):
    """The audit of one container. A stopped container is not audited (``audited`` False, ``ok`` True)."""

    agent: str | None
    agent_source: str  # how the agent id was found: "label", "QMS_USER", "workspace mount", "hostname", ""
    container: str
    container_id: str
    managed: bool
    state: str
    audited: bool
    note: str = ""
    probe_user: str | None = None  # uid the probes ran as
    rows: list[AuditRow]
    ok: bool

    @property
    def problems(self) -> list[AuditRow]:
        return [r for r in self.rows if not r.ok]


class AuditReport(BaseModel):
    containers: list[ContainerAudit]
    ok: bool
    generated_at: datetime

    @property
    def problems(self) -> list[AuditRow]:
        return [r for c in self.containers for r in c.problems]


# --- the probe ----------------------------------------------------------------------------

# POSIX sh (dash, busybox ash). $1 is the probe file name, the rest are paths. One line per path:
#   P<TAB>path<TAB>read|noread<TAB>write|nowrite|clash<TAB>clean|left<TAB>error   (a directory)
#   F<TAB>path<TAB>read|noread<TAB>write|nowrite                              (a file; never written)
#   A<TAB>path                                                                 (absent)
PROBE_SCRIPT = r"""
name=$1; shift
printf 'U\t%s\n' "$(id -u 2>/dev/null)"
printf 'H\t%s\t%s\n' "${HOME+set}" "${HOME-}"
for p in "$@"; do
  if [ -d "$p" ]; then
    if ls "$p" >/dev/null 2>&1; then r=read; else r=noread; fi
    case $p in */) f=$p$name ;; *) f=$p/$name ;; esac
    if [ -e "$f" ] || [ -L "$f" ]; then printf 'P\t%s\t%s\tclash\t\t\n' "$p" "$r"; continue; fi
    if err=$(touch "$f" 2>&1); then
      rm -f "$f" 2>/dev/null
      if [ -e "$f" ] || [ -L "$f" ]; then c=left; else c=clean; fi
      printf 'P\t%s\t%s\twrite\t%s\t\n' "$p" "$r" "$c"
    else
      printf 'P\t%s\t%s\tnowrite\t\t%s\n' "$p" "$r" "$(printf '%s' "$err" | tr '\t\n' '  ')"
    fi
  elif [ -e "$p" ]; then
    if cat "$p" >/dev/null 2>&1; then r=read; else r=noread; fi
    if [ -w "$p" ]; then w=write; else w=nowrite; fi
    printf 'F\t%s\t%s\t%s\n' "$p" "$r" "$w"
  else
    printf 'A\t%s\n' "$p"
  fi
done
printf 'M-BEGIN\n'
head -c @LIMIT@ @MCP@ 2>/dev/null && printf '\nM-OK\n'
printf 'M-END\n'
""".replace("@LIMIT@", str(_MCP_LIMIT)).replace("@MCP@", str(layout.MCP_CONFIG_PATH))


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
    mcp_text: str | None = None  # None: /.mcp.json not readable
    failure: str = ""  # why the probe did not run (exec error, timeout, cut output)
    probe_name: str = ""


def run_probes(manager: ContainerManager, container: str, paths: list[str], *,
               timeout: float = PROBE_TIMEOUT) -> ProbeOutcome:
    """Probe ``paths`` inside ``container`` with one ``exec`` of :data:`PROBE_SCRIPT`."""
    name = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        result = manager.exec(container, ["sh", "-c", PROBE_SCRIPT, "sh", name, *paths], timeout=timeout)
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
    """Read the lines :data:`PROBE_SCRIPT` prints."""
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


# --- which agent ---------------------------------------------------------------------------


def identify_agent(row: ContainerRow, detail: ContainerDetail, settings: Settings) -> tuple[str | None, str]:
    """The agent a container runs and how we know: label (managed), QMS_USER, workspace mount, hostname."""
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
    def __init__(self) -> None:
        self.items: list[tuple[Verdict, Severity, str]] = []

    def add(self, verdict: Verdict, severity: Severity, detail: str) -> None:
        self.items.append((verdict, severity, detail))

    def result(self, ok_detail: str = "") -> tuple[Verdict, Severity, str]:
        bad = [i for i in self.items if i[0] is not Verdict.OK]
        if not bad:
            return Verdict.OK, "ok", "; ".join([d for _, _, d in self.items if d] + ([ok_detail] if ok_detail else []))
        worst = max(bad, key=lambda i: _RANK[i[1]])
        return worst[0], worst[1], "; ".join(d for _, _, d in bad)


def _norm(path: str) -> str:
    return str(PurePosixPath(path)) if path else path


def _same_host_path(a: str, b: str) -> bool:
    return os.path.normpath(a) == os.path.normpath(b) or os.path.realpath(a) == os.path.realpath(b)


def _rw(flag: bool) -> str:
    return "rw" if flag else "ro"


def describe_mount(mount: MountInfo) -> str:
    """``bind ro /srv/pd``, ``volume rw qms-agent-claude-projects``, ``tmpfs rw``."""
    source = mount.volume_name if mount.type == "volume" and mount.volume_name else mount.source
    return " ".join(p for p in (mount.type, _rw(mount.rw), source or "") if p)


def _covering(path: str, mounts: dict[str, MountInfo]) -> MountInfo | None:
    """The mount whose destination is the closest ancestor of ``path``."""
    best = None
    for dest, mount in mounts.items():
        if dest != "/" and (path + "/").startswith(dest + "/") and (best is None or len(dest) > len(best[0])):
            best = (dest, mount)
    return best[1] if best else None


def _mounted(path: str, mounts: dict[str, MountInfo]) -> str:
    if path in mounts:
        return describe_mount(mounts[path])
    cover = _covering(path, mounts)
    return f"via {_norm(cover.destination)}: {describe_mount(cover)}" if cover else "image"


def _describe_probe(probe: PathProbe | None, outcome: ProbeOutcome, declared: Access | None = None) -> str:
    if outcome.failure:
        return f"not run ({outcome.failure})"
    if probe is None:
        return "no answer"
    if probe.kind == "absent":
        return "absent"
    read = "read ok" if probe.read else "read refused"
    if probe.kind == "file":
        return read if declared is Access.BAKED else f"{read}; {'writable' if probe.write else 'not writable'}"
    if probe.clash:
        return f"{read}; write skipped (name clash)"
    if probe.write:
        return f"{read}; write ok, {'NOT removed' if probe.left else 'removed'}"
    return f"{read}; write refused" + (f" ({_short_error(probe.error)})" if probe.error else "")


def _short_error(error: str) -> str:
    """``touch: /x/.qms-panel-probe-..: Read-only file system`` -> ``Read-only file system``."""
    return error.rsplit(": ", 1)[-1].strip() if ": " in error else error.strip()


def _check_mount(rule: PathRule, mount: MountInfo | None, finding: _Finding) -> None:
    where = rule.container_path
    if rule.mount is MountKind.NONE:
        if mount is None:
            return
        same = (rule.source is not None and mount.type == "bind" and _same_host_path(mount.source, rule.source)
                and mount.rw == rule.writable)
        if not same:
            finding.add(Verdict.DRIFT, "high" if mount.rw and not rule.writable else "low",
                        f"{describe_mount(mount)} is mounted on {where}; the matrix has it "
                        + ("from the image" if rule.source is None else "under its parent mount"))
        return
    declared = f"{rule.mount.value} {_rw(rule.writable)} {rule.source}"
    if mount is None:
        finding.add(Verdict.MISSING, "low", f"nothing mounted on {where} (declared {declared})")
        return
    if mount.type != rule.mount.value:
        finding.add(Verdict.DRIFT, "high" if mount.rw and not rule.writable else "low",
                    f"a {mount.type} mount, declared {declared}")
    elif rule.mount is MountKind.VOLUME and mount.volume_name != rule.source:
        finding.add(Verdict.DRIFT, "high", f"wrong source: volume {mount.volume_name}, declared {rule.source}")
    elif rule.mount is MountKind.BIND and not _same_host_path(mount.source, rule.source or ""):
        finding.add(Verdict.DRIFT, "high", f"wrong source: {mount.source}, declared {rule.source}")
    if mount.rw and not rule.writable:
        finding.add(Verdict.DRIFT, "high", "mounted read-write, declared read-only")
    elif not mount.rw and rule.writable:
        finding.add(Verdict.DRIFT, "low", "mounted read-only, declared read-write")


def _check_probe(rule: PathRule, probe: PathProbe | None, outcome: ProbeOutcome,
                 cover: MountInfo | None, finding: _Finding) -> str:
    """Judge the live probe of one rule; returns an ok-detail worth showing, if any."""
    path = rule.container_path
    if outcome.failure:
        finding.add(Verdict.PROBE_FAILED, "low", f"probe not run: {outcome.failure}")
        return ""
    if probe is None:
        finding.add(Verdict.PROBE_FAILED, "low", "the probe script gave no answer for this path")
        return ""
    if probe.left:
        finding.add(Verdict.PROBE_FAILED, "high",
                    f"probe file {path.rstrip('/')}/{outcome.probe_name} could not be removed")
    if probe.kind == "absent":
        if rule.access is Access.BAKED:
            finding.add(Verdict.MISSING, "low", "not in the image")
        elif rule.read_only and rule.mount is MountKind.NONE:
            return "not created yet" + (f"; lies under the {_norm(cover.destination)} mount" if cover else "")
        else:
            finding.add(Verdict.PROBE_FAILED, "low", "does not exist in the container")
        return ""
    if (probe.kind == "file") != rule.is_file:
        finding.add(Verdict.PROBE_FAILED, "low",
                    f"is a {probe.kind}, declared a {'file' if rule.is_file else 'directory'}")
        return ""
    if not probe.read:
        finding.add(Verdict.PROBE_FAILED, "low", "cannot be read")
    if probe.clash:
        finding.add(Verdict.PROBE_FAILED, "low", f"a file named {outcome.probe_name} already exists; not touched")
    elif rule.read_only and probe.write:
        how = "is writable" if probe.kind == "file" else "a probe file was created (and removed)"
        finding.add(Verdict.DRIFT, "high", f"declared read-only, but {how}")
    elif rule.writable and not probe.write:
        finding.add(Verdict.PROBE_FAILED, "low", f"declared read-write, but writing failed: {probe.error or 'refused'}")
    return ""


def _check_mcp(text: str | None, expected: dict, finding: _Finding) -> str:
    """Judge the /.mcp.json content; returns what the probe column shows."""
    if text is None:
        return ""
    try:
        data = json.loads(text)
        server = data["mcpServers"][layout.MCP_SERVER_NAME]
        url = server["url"]
    except (ValueError, KeyError, TypeError) as exc:
        kind = "not valid JSON" if isinstance(exc, ValueError) else f"no mcpServers.{layout.MCP_SERVER_NAME}.url"
        finding.add(Verdict.DRIFT, "low", f"{layout.MCP_CONFIG_PATH}: {kind}")
        return kind
    if str(url).rstrip("/") != expected["url"].rstrip("/"):
        finding.add(Verdict.DRIFT, "low", f"points at {url}, configured container_mcp_url is {expected['url']}")
    elif server.get("type", expected["type"]) != expected["type"]:
        finding.add(Verdict.DRIFT, "low", f"type {server.get('type')!r}, expected {expected['type']!r} for {url}")
    return f"{layout.MCP_SERVER_NAME} -> {url}"


# --- audits --------------------------------------------------------------------------------


def audit_container(manager: ContainerManager, settings: Settings, row_or_name: ContainerRow | str) -> ContainerAudit:
    """Audit one agent container (a row from ``manager.list()``, or its name or id)."""
    row = _find_row(manager, row_or_name) if isinstance(row_or_name, str) else row_or_name
    return _audit(manager, settings, row)


def _audit(manager: ContainerManager, settings: Settings, row: ContainerRow,
           only_agent: str | None = None) -> ContainerAudit | None:
    """The audit of ``row``; None when ``only_agent`` is given and the container runs another agent."""
    detail = manager.inspect(row.id or row.name)
    agent, source = identify_agent(row, detail, settings)
    if only_agent is not None and agent != only_agent:
        return None
    base = dict(agent=agent, agent_source=source, container=row.name, container_id=row.id,
                managed=row.managed, state=row.state)
    if row.state != "running":
        return ContainerAudit(**base, audited=False, note=f"{row.state}: not audited (only running containers are)",
                              rows=[], ok=True)
    if agent is None:
        return ContainerAudit(**base, audited=False, rows=[], ok=False,
                              note="cannot tell which agent it runs (no qms-panel label, QMS_USER, "
                                   "workspace mount or agent hostname)")
    rows, outcome = _audit_rows(manager, settings, row, detail, agent)
    note = f"probes not run: {outcome.failure}" if outcome.failure else ""
    return ContainerAudit(**base, audited=True, note=note, probe_user=outcome.uid, rows=rows,
                          ok=all(r.ok for r in rows))


def audit_all(manager: ContainerManager, settings: Settings, *, agent: str | None = None) -> AuditReport:
    """Audit every agent container ``manager.list()`` knows (only ``agent``'s when given)."""
    audits = []
    for row in manager.list():
        if agent is not None and row.managed and row.agent != agent:
            continue
        try:
            audit = _audit(manager, settings, row, agent)
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
                agent: str) -> tuple[list[AuditRow], ProbeOutcome]:
    rules = layout.for_settings(settings, agent).rules
    declared_paths = {r.container_path for r in rules}
    mounts = {_norm(m.destination): m for m in detail.mounts}
    extras = [dest for dest in mounts if dest not in declared_paths]
    outcome = run_probes(manager, row.id or row.name, [r.container_path for r in rules] + extras)
    expected_mcp = layout.mcp_config(settings.container_mcp_url)["mcpServers"][layout.MCP_SERVER_NAME]

    def make(path, declared, mounted, probe, finding, ok_detail=""):
        verdict, severity, text = finding.result(ok_detail)
        return AuditRow(agent=agent, container=row.name, path=path, declared=declared, mounted=mounted,
                        probe=probe, verdict=verdict, severity=severity, detail=text)

    rows = []
    for rule in rules:
        path = rule.container_path
        finding = _Finding()
        _check_mount(rule, mounts.get(path), finding)
        probe = outcome.paths.get(path)
        ok_detail = _check_probe(rule, probe, outcome, _covering(path, mounts), finding)
        shown = _describe_probe(probe, outcome, rule.access)
        if rule.container_path == str(layout.MCP_CONFIG_PATH) and not outcome.failure:
            shown = f"{shown}; " + (_check_mcp(outcome.mcp_text, expected_mcp, finding) or "unreadable")
        rows.append(make(path, rule.access, _mounted(path, mounts), shown, finding, ok_detail))
        if path == "/":
            rows.append(_home_row(detail, outcome, make))
    for dest in extras:
        mount, probe = mounts[dest], outcome.paths.get(dest)
        finding = _Finding()
        writable = mount.rw or bool(probe and probe.write)
        finding.add(Verdict.EXTRA, "high" if writable else "low",
                    f"not in the access matrix; {'writable' if writable else 'read-only'}")
        if probe and probe.left:
            finding.add(Verdict.PROBE_FAILED, "high", f"probe file {dest}/{outcome.probe_name} could not be removed")
        rows.append(make(dest, None, describe_mount(mount), _describe_probe(probe, outcome), finding))
    return rows, outcome


def _home_row(detail: ContainerDetail, outcome: ProbeOutcome, make) -> AuditRow:
    env_home = (detail.env or {}).get("HOME")
    finding = _Finding()
    if env_home != layout.HOME:
        finding.add(Verdict.DRIFT, "low", f"HOME is {'unset' if env_home is None else repr(env_home)} "
                                          f"in the container's environment, declared {layout.HOME!r}")
    elif not outcome.failure and outcome.home != layout.HOME:
        finding.add(Verdict.DRIFT, "low", f"a shell in the container sees HOME={outcome.home!r}")
    probe = f"not run ({outcome.failure})" if outcome.failure else (
        "sh: HOME unset" if outcome.home is None else f"sh: HOME={outcome.home}")
    mounted = "env HOME unset" if env_home is None else f"env HOME={env_home}"
    return make(HOME_ROW, Access.BAKED, mounted, probe, finding)
