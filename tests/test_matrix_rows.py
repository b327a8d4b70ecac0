"""The access-matrix pane's cells come from the audit rows' fields (no display string is parsed)."""

from __future__ import annotations

from core.audit_rows import AuditRow, MountFact, ProbeFact, ProbeStatus, Severity, Verdict
from core.layout import AGENT_CAPABILITIES, Access
from tui.widgets.matrix import HIGH_STYLE, mounted_brief, probe_brief, verdict_cell


def row(mount: MountFact, probe: ProbeFact, verdict=Verdict.OK, severity=Severity.OK, path="/x") -> AuditRow:
    return AuditRow(agent=None, container="c", path=path, declared=Access.READ_ONLY, mount=mount, probe=probe,
                    verdict=verdict, severity=severity)


def test_cells_from_fields():
    under = MountFact(kind="bind", rw=False, source="/srv/pd", via="/pipe-dream")
    assert (mounted_brief(under), under.text) == ("↑ bind ro", "via /pipe-dream: bind ro /srv/pd")
    assert mounted_brief(MountFact(kind="launch", values=sorted(AGENT_CAPABILITIES))) == "7 caps"
    assert mounted_brief(MountFact(kind="launch", values=["ALL"])) == "all caps"
    caps = ProbeFact(status=ProbeStatus.CAPABILITIES, values=[*AGENT_CAPABILITIES, "NET_RAW"])
    assert probe_brief(caps) == "+NET_RAW" and "NET_RAW" in caps.text
    assert probe_brief(ProbeFact(status=ProbeStatus.CAPABILITIES, values=list(AGENT_CAPABILITIES))) == "as set"
    assert probe_brief(ProbeFact(status=ProbeStatus.CAPABILITIES)) == "as set"
    written = ProbeFact(status=ProbeStatus.FOUND, kind="dir", read=True, write=True, removed=True)
    assert (probe_brief(written), written.text) == ("writable", "read ok; write ok, removed")
    refused = ProbeFact(status=ProbeStatus.FOUND, kind="dir", read=True, write=False, error="touch: /x/p: Read-only")
    assert (probe_brief(refused), refused.text) == ("read-only", "read ok; write refused (Read-only)")
    skipped = ProbeFact(status=ProbeStatus.NOT_RUN, error="not made by qms-panel")
    assert (probe_brief(skipped), skipped.text) == ("not run", "not run (not made by qms-panel)")


def test_high_severity_stands_out_and_unprobed_is_quiet():
    mount, probe = MountFact(kind="bind", rw=True, source="/srv/pd"), ProbeFact(status=ProbeStatus.NOT_RUN)
    high = verdict_cell(row(mount, probe, Verdict.DRIFT, Severity.HIGH))
    assert (high.plain, str(high.style)) == ("DRIFT", HIGH_STYLE)
    low = verdict_cell(row(mount, probe, Verdict.DRIFT, Severity.LOW))
    assert (low.plain, str(low.style)) == ("drift", "bold red")
    quiet = verdict_cell(row(mount, probe, Verdict.NOT_PROBED))
    assert (quiet.plain, str(quiet.style)) == ("unprobed", "dim")
    assert row(mount, probe, Verdict.NOT_PROBED).ok


def test_hostile_values_are_shown_visibly():
    home = ProbeFact(status=ProbeStatus.SEEN, value="/\x1b[2J\x1b]0;owned\x07")
    assert "\x1b" not in probe_brief(home) and "\\x1b" in probe_brief(home)
    env = MountFact(kind="env", source="HOME=\x1b[31m")
    assert "\x1b" not in mounted_brief(env)
