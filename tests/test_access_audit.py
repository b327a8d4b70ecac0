"""The access audit against real containers: launched ones pass, hand-made drift is caught, no probe file stays."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from core import layout, probes
from core.access_audit import (
    CAPS_ROW,
    HOME_ROW,
    PROBE_PREFIX,
    Severity,
    Verdict,
    audit_all,
    audit_container,
    capability_names,
    parse_probe_output,
)
from core.containers import ContainerDetail, ContainerManager, ContainerRow, ExecResult, MountInfo
from core.errors import ContainerNotFound, EngineUnreachable
from core.settings import Settings
from support.docker_env import TEST_LABEL, build_busybox_rootfs_tar, import_image

AGENT = "claude"


@pytest.fixture
def settings(project_root, test_image, unique_prefix) -> Settings:
    return Settings(project_root=project_root, image=test_image, container_prefix=unique_prefix)


@pytest.fixture
def manager(settings, docker_client, unique_prefix):
    yield ContainerManager(settings, client=docker_client, extra_labels={TEST_LABEL: "1"})
    _remove_all(docker_client, unique_prefix)


# What launch sets besides mounts, so that a hand-made container differs only where a test says.
LAUNCH_CAPS = dict(cap_drop=["ALL"], cap_add=sorted(layout.AGENT_CAPABILITIES),
                   security_opt=list(layout.SECURITY_OPTIONS))


@pytest.fixture
def by_hand(docker_client, unique_prefix):
    """Start a container the way an operator might by hand: ``by_hand(suffix, mounts, **run_kwargs)``
    (with launch's capabilities unless ``caps=False``; no qms-panel label)."""

    def run(suffix: str, volumes: dict, caps: bool = True, **kwargs):
        return docker_client.containers.run(
            kwargs.pop("image"), ["sleep", "3600"], name=f"{unique_prefix}{suffix}", detach=True,
            labels={TEST_LABEL: "1"}, volumes=volumes, **(LAUNCH_CAPS if caps else {}), **kwargs)

    yield run
    _remove_all(docker_client, unique_prefix)


def _remove_all(client, prefix: str) -> None:
    for c in client.containers.list(all=True, filters={"name": prefix}):
        c.remove(force=True, v=True)
    for v in client.volumes.list(filters={"name": prefix}):
        v.remove(force=True)


def rows_by_path(audit) -> dict:
    return {r.path: r for r in audit.rows}


def probe_files(root: Path) -> list[str]:
    return [os.path.join(d, f) for d, dirs, files in os.walk(root) for f in files + dirs if f.startswith(PROBE_PREFIX)]


def hand_layout(settings) -> layout.AgentLayout:
    return layout.for_settings(settings, AGENT)


def correct_volumes(settings, *, project_mode="ro", workspace=True) -> dict:
    """The vision's mounts spelled for ``docker run -v`` (from the layout, never by hand)."""
    lay = hand_layout(settings)
    vols = {}
    for spec in lay.mounts:
        if spec.target == str(layout.CONTAINER_ROOT):
            vols[spec.source] = {"bind": spec.target, "mode": project_mode}
        elif spec.source == str(lay.workspace_host):
            if workspace:
                lay.workspace_host.mkdir(parents=True, exist_ok=True)
                vols[spec.source] = {"bind": spec.target, "mode": "rw"}
        else:
            vols[spec.source] = {"bind": spec.target, "mode": "ro" if spec.read_only else "rw"}
    return vols


# --- real containers ---------------------------------------------------------------------


@pytest.mark.docker
def test_launched_container_passes_every_row(manager, settings, project_root):
    lay = hand_layout(settings)
    lay.inbox_host.mkdir(parents=True)  # so the inbox is probed for real, not only found absent
    (lay.inbox_host / "task.md").write_text("a task\n")
    row = manager.launch(AGENT, command=["sleep", "3600"])

    audit = audit_container(manager, settings, row.name)
    assert audit.audited and audit.ok and audit.managed, audit
    assert audit.agent == AGENT and audit.agent_source == "label"
    rows = rows_by_path(audit)
    assert set(rows) == {r.container_path for r in lay.rules} | {HOME_ROW, CAPS_ROW}
    assert all(r.verdict is Verdict.OK and r.severity == "ok" for r in audit.rows), audit.rows
    assert audit.probed and audit.severity is Severity.OK
    assert rows["/pipe-dream"].mounted == f"bind ro {project_root}"
    assert rows["/pipe-dream"].mount.kind == "bind" and rows["/pipe-dream"].mount.rw is False
    assert "write refused" in rows["/pipe-dream"].probed and rows["/pipe-dream"].probe.write is False
    assert "write refused" in rows[_inbox(lay)].probed
    assert "write ok, removed" in rows[_workspace(lay)].probed and rows[_workspace(lay)].probe.removed
    assert rows["/projects"].mounted == f"volume rw {layout.projects_volume(settings.container_prefix, AGENT)}"
    assert "http://host.docker.internal:8000/sse" in rows["/.mcp.json"].probed
    caps = rows[CAPS_ROW]
    assert sorted(caps.probe.values) == sorted(layout.AGENT_CAPABILITIES) == caps.mount.values
    assert probe_files(project_root) == []

    report = audit_all(manager, settings)
    assert report.ok and [c.container for c in report.containers] == [row.name]


@pytest.mark.docker
def test_project_mounted_read_write_is_drift_and_no_probe_file_stays(by_hand, manager, settings, project_root,
                                                                    test_image):
    lay = hand_layout(settings)
    lay.inbox_host.mkdir(parents=True)
    (project_root / "QMS" / "SOP-001.md").write_text("production\n")
    by_hand("rw", correct_volumes(settings, project_mode="rw"), image=test_image,
            environment={"QMS_USER": AGENT})

    report = audit_all(manager, settings, probe_unmanaged=True)
    assert not report.ok
    [audit] = report.containers
    assert not audit.managed and audit.agent == AGENT and audit.agent_source == "QMS_USER"
    rows = rows_by_path(audit)
    pd = rows["/pipe-dream"]
    assert pd.verdict is Verdict.DRIFT and pd.severity == "high"
    assert "mounted read-write, declared read-only" in pd.detail and "probe file was created" in pd.detail
    assert pd.mounted == f"bind rw {project_root}"
    inbox = rows[_inbox(lay)]
    assert inbox.verdict is Verdict.DRIFT and inbox.severity == "high"
    assert rows[_workspace(lay)].ok and rows["/projects"].ok
    assert probe_files(project_root) == []
    assert sorted(p.name for p in (project_root / "QMS").iterdir()) == ["SOP-001.md"]


@pytest.mark.docker
def test_missing_workspace_mount(by_hand, manager, settings, project_root, test_image):
    by_hand("nows", correct_volumes(settings, workspace=False), image=test_image, hostname=AGENT)

    [audit] = audit_all(manager, settings, probe_unmanaged=True).containers
    assert audit.agent == AGENT and audit.agent_source == "hostname"
    rows = rows_by_path(audit)
    ws = rows[_workspace(hand_layout(settings))]
    assert ws.verdict is Verdict.MISSING and ws.severity == "low"
    assert "nothing mounted" in ws.detail
    assert not audit.ok and rows["/pipe-dream"].ok
    assert probe_files(project_root) == []


@pytest.mark.docker
def test_extra_read_write_bind_mount(by_hand, manager, settings, project_root, tmp_path, test_image):
    extra = tmp_path / "host-secrets"
    extra.mkdir()
    vols = correct_volumes(settings)
    vols[str(extra)] = {"bind": "/data", "mode": "rw"}
    by_hand("extra", vols, image=test_image)

    [audit] = audit_all(manager, settings, probe_unmanaged=True).containers
    assert audit.agent_source == "workspace mount"
    rows = rows_by_path(audit)
    data = rows["/data"]
    assert data.verdict is Verdict.EXTRA and data.severity == "high" and data.declared is None
    assert data.mounted == f"bind rw {extra}" and "write ok, removed" in data.probed
    assert [r.path for r in audit.problems] == ["/data"], audit.problems
    assert probe_files(extra) == [] and probe_files(project_root) == []


@pytest.mark.docker
def test_read_only_workspace_and_wrong_source(by_hand, manager, settings, project_root, tmp_path, test_image):
    lay = hand_layout(settings)
    other = tmp_path / "other-workspace"
    other.mkdir()
    lay.workspace_host.mkdir(parents=True)  # the mount point inside the read-only project mount
    vols = correct_volumes(settings, workspace=False)
    vols[str(other)] = {"bind": _workspace(lay), "mode": "ro"}
    by_hand("rows", vols, image=test_image, environment={"QMS_USER": AGENT})

    [audit] = audit_all(manager, settings, probe_unmanaged=True).containers
    ws = rows_by_path(audit)[_workspace(lay)]
    assert ws.verdict is Verdict.DRIFT and ws.severity == "high"
    assert f"wrong source: {other}" in ws.detail
    assert "mounted read-only, declared read-write" in ws.detail
    assert "writing failed" in ws.detail and "Read-only file system" in ws.detail


@pytest.mark.docker
def test_unidentified_container_is_judged_on_the_shared_rows_and_stopped_is_not_audited(
        by_hand, manager, settings, test_image, docker_client):
    by_hand("anon", {str(settings.project_root): {"bind": "/pipe-dream", "mode": "ro"}}, image=test_image)
    launched = manager.launch(AGENT, command=["sleep", "3600"])
    docker_client.containers.get(launched.id).kill()

    audits = {a.container: a for a in audit_all(manager, settings).containers}
    anon, stopped = audits[f"{settings.container_prefix}anon"], audits[launched.name]
    assert anon.audited and not anon.probed and anon.agent is None and anon.ok, anon
    assert "cannot tell which agent" in anon.note and "--probe-unmanaged" in anon.note
    assert [(r.path, r.verdict) for r in anon.rows] == [("/pipe-dream", Verdict.NOT_PROBED),
                                                        (CAPS_ROW, Verdict.NOT_PROBED)]
    assert anon.rows[0].probe.status == "not run" and "--probe-unmanaged" in anon.rows[0].probed
    assert not stopped.audited and stopped.ok and stopped.rows == []
    assert stopped.note == "the container is exited; only running containers are audited"  # said once
    assert audit_all(manager, settings, agent=AGENT).ok  # only the stopped one is claude's


@pytest.mark.docker
def test_hand_made_container_with_production_writable_is_high_drift_and_never_execd(
        by_hand, manager, settings, project_root, test_image, docker_client):
    """Started by hand: no qms-panel label, no QMS_USER, the project read-write at /pipe-dream, Docker's
    default capabilities. Judged from the engine alone: high drift, and no exec into it."""
    since = time.time() - 1
    hand = by_hand("rw", {str(project_root): {"bind": "/pipe-dream", "mode": "rw"}}, caps=False, image=test_image)

    report = audit_all(manager, settings)
    until = time.time() + 1
    [audit] = report.containers
    assert audit.agent is None and not audit.managed and audit.audited and not audit.probed and not audit.ok
    rows = rows_by_path(audit)
    pd = rows["/pipe-dream"]
    assert (pd.verdict, pd.severity) == (Verdict.DRIFT, Severity.HIGH)
    assert pd.detail == "mounted read-write, declared read-only (production is writable from the container)"
    assert pd.mount.rw and pd.probe.status == "not run"
    caps = rows[CAPS_ROW]
    assert (caps.verdict, caps.severity) == (Verdict.DRIFT, Severity.HIGH) and "NET_RAW" in caps.detail
    assert audit.severity is Severity.HIGH
    assert f"{hand.name} /pipe-dream: mounted read-write, declared read-only" in report.high_drift[0]
    assert json.loads(report.model_dump_json())["high_drift"] == report.high_drift
    execs = list(docker_client.api.events(since=since, until=until, decode=True,
                                          filters={"container": hand.id, "event": "exec_create"}))
    assert execs == []

    # The operator may ask for the live probe: then it proves the write (and leaves nothing).
    probed = audit_all(manager, settings, probe_unmanaged=True).containers[0]
    assert probed.probed and "a probe file was created" in rows_by_path(probed)["/pipe-dream"].detail
    assert probe_files(project_root) == []


@pytest.mark.docker
def test_risky_binds_are_high_whoever_runs_the_container(by_hand, manager, settings, project_root, tmp_path,
                                                          test_image):
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    sock = tmp_path / "run" / "docker.sock"  # a stand-in file: the destination and name are what count
    sock.parent.mkdir()
    sock.write_text("")
    vols = correct_volumes(settings)
    vols[str(ssh)] = {"bind": "/root/.ssh", "mode": "rw"}
    vols[str(sock)] = {"bind": "/var/run/docker.sock", "mode": "ro"}
    vols[str(project_root / "QMS")] = {"bind": "/qms", "mode": "rw"}
    by_hand("risky", vols, image=test_image, environment={"QMS_USER": AGENT})

    [audit] = audit_all(manager, settings).containers
    rows = rows_by_path(audit)
    assert {p: (rows[p].verdict, rows[p].severity) for p in ("/root/.ssh", "/var/run/docker.sock", "/qms")} == {
        "/root/.ssh": (Verdict.EXTRA, Severity.HIGH), "/var/run/docker.sock": (Verdict.EXTRA, Severity.HIGH),
        "/qms": (Verdict.DRIFT, Severity.HIGH)}
    assert "Docker socket" in rows["/var/run/docker.sock"].detail
    assert "is writable from the container" in rows["/qms"].detail
    assert rows["/pipe-dream"].verdict is Verdict.NOT_PROBED and rows["/pipe-dream"].ok  # read-only: fine
    assert sorted(r.path for r in audit.problems) == ["/qms", "/root/.ssh", "/var/run/docker.sock"]


@pytest.mark.docker
def test_capabilities_beyond_the_declared_set_are_drift(by_hand, manager, settings, test_image):
    by_hand("netraw", correct_volumes(settings), caps=False, image=test_image, environment={"QMS_USER": AGENT},
            cap_add=["NET_ADMIN"])
    [audit] = audit_all(manager, settings, probe_unmanaged=True).containers
    caps = rows_by_path(audit)[CAPS_ROW]
    assert (caps.verdict, caps.severity) == (Verdict.DRIFT, Severity.HIGH)
    assert "NET_RAW" in caps.probe.values and "NET_ADMIN" in caps.mount.values
    assert "has AUDIT_WRITE, MKNOD, NET_ADMIN, NET_BIND_SERVICE, NET_RAW, SETFCAP, SETPCAP, SYS_CHROOT" in caps.detail
    assert "no-new-privileges is off" in caps.detail
    assert [r.path for r in audit.problems] == [CAPS_ROW]


@pytest.mark.docker
def test_unknown_container_name(manager, settings):
    with pytest.raises(ContainerNotFound):
        audit_container(manager, settings, f"{settings.container_prefix}nobody")


# --- images with the wrong facts -----------------------------------------------------------


def _mcp(url: str) -> bytes:
    return json.dumps({"mcpServers": {"qms": {"type": "sse", "url": url}}}).encode()


IMAGE_CASES = {
    "home-root": ({".mcp.json": _mcp("http://host.docker.internal:8000/sse")}, "/root"),
    "mcp-elsewhere": ({".mcp.json": _mcp("http://elsewhere.invalid:9000/sse")}, "/"),
    "mcp-absent": ({}, "/"),
    "mcp-garbled": ({".mcp.json": b"{not json"}, "/"),
}


@pytest.fixture(scope="module")
def odd_images(docker_client):
    suffix = uuid.uuid4().hex[:8]
    tags = {}
    for kind, (files, home) in IMAGE_CASES.items():
        tag = f"qms-panel-test/audit-{kind}:{suffix}"
        import_image(docker_client, tag, build_busybox_rootfs_tar(files),
                     changes=[f"ENV HOME={home}", "ENV PATH=/bin:/usr/bin", 'CMD ["sh"]'])
        tags[kind] = tag
    yield tags
    for tag in tags.values():
        docker_client.images.remove(tag, force=True)


@pytest.mark.docker
@pytest.mark.parametrize("kind, path, verdict, needle", [
    ("home-root", HOME_ROW, Verdict.DRIFT, "'/root'"),
    ("mcp-elsewhere", "/.mcp.json", Verdict.DRIFT, "points at http://elsewhere.invalid:9000/sse"),
    ("mcp-absent", "/.mcp.json", Verdict.MISSING, "not in the image"),
    ("mcp-garbled", "/.mcp.json", Verdict.DRIFT, "not valid JSON"),
])
def test_image_facts(odd_images, by_hand, manager, settings, kind, path, verdict, needle):
    # Started by hand: launch() sets HOME=/ itself, which would hide the image's own HOME.
    by_hand(kind, correct_volumes(settings), image=odd_images[kind], environment={"QMS_USER": AGENT})
    [audit] = audit_all(manager, settings, probe_unmanaged=True).containers
    bad = rows_by_path(audit)[path]
    assert bad.verdict is verdict and bad.severity == "low" and needle in bad.detail, bad
    assert [r.path for r in audit.problems] == [path]


# --- edge cases the engine cannot easily produce (a fake manager) --------------------------


class FakeManager:
    """Answers inspect and exec from canned data; for edge cases only."""

    def __init__(self, settings, result: ExecResult | Exception):
        self.result = result
        lay = layout.for_settings(settings, AGENT)
        mounts = [MountInfo(type=m.kind.value, source=m.source, destination=m.target, rw=not m.read_only,
                            volume_name=m.source if m.kind is layout.MountKind.VOLUME else None) for m in lay.mounts]
        self.detail = ContainerDetail(
            id="f" * 64, name="fake", agent=AGENT, managed=True, state="running", image="x", hostname=AGENT,
            env={"HOME": "/", "QMS_USER": AGENT}, labels={}, mounts=mounts, extra_hosts=[], command=[],
            tty=True, open_stdin=True, **LAUNCH_CAPS)
        self.row = ContainerRow(agent=AGENT, id="f" * 64, name="fake", state="running", image="x")

    def list(self):
        return [self.row]

    def inspect(self, name_or_id):
        return self.detail

    def exec(self, name_or_id, argv, *, timeout=10, user=None):
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_exec_timeout_and_exec_error_are_probe_failures(project_root):
    settings = Settings(project_root=project_root)
    for result, needle in [(ExecResult(exit_code=None, output="U\t0\n", timed_out=True), "timed out after 10s"),
                           (EngineUnreachable("socket gone"), "Docker engine unreachable: socket gone"),
                           (ExecResult(exit_code=127, output='exec: "sh": executable file not found'),
                            "exit 127")]:
        audit = audit_container(FakeManager(settings, result), settings, "fake")
        assert audit.audited and not audit.ok and needle in audit.note
        probed = [r for r in audit.rows if r.path not in (HOME_ROW, CAPS_ROW)]
        assert all(r.verdict is Verdict.PROBE_FAILED and needle in r.probed for r in probed), probed
        assert not audit.probed


def test_probe_file_left_behind_is_high(project_root):
    settings = Settings(project_root=project_root)
    lay = layout.for_settings(settings, AGENT)
    lines = ["U\t1000", "H\tset\t/", "C\t00000000000000fb\t1", "P\t/\tread\twrite\tclean\t", "F\t/.mcp.json\tread\tnowrite",
             "P\t/projects\tread\twrite\tclean\t", "P\t/pipe-dream\tread\twrite\tleft\t",
             f"A\t{_inbox(lay)}", f"P\t{_workspace(lay)}\tread\twrite\tclean\t",
             "M-BEGIN", json.dumps(layout.mcp_config(settings.container_mcp_url)), "M-OK", "M-END"]
    audit = audit_container(FakeManager(settings, ExecResult(exit_code=0, output="\n".join(lines))), settings, "fake")
    [bad] = audit.problems
    assert bad.path == "/pipe-dream" and bad.severity == "high"
    assert "could not be removed" in bad.detail and "declared read-only" in bad.detail
    assert audit.probe_user == "1000"


def test_parse_probe_output():
    out = parse_probe_output("U\t0\nH\t\t\nC\t00000000a80425fb\t0\n"
                             "P\t/x\tread\tnowrite\t\ttouch: /x/p: Permission denied\nA\t/y\n"
                             "F\t/z\tnoread\twrite\nM-BEGIN\nM-END\n")
    assert out.uid == "0" and out.home is None and out.mcp_text is None and out.no_new_privs is False
    assert "NET_RAW" in capability_names(out.cap_bounding) and "SYS_ADMIN" not in capability_names(out.cap_bounding)
    assert out.paths["/x"].error.endswith("Permission denied") and not out.paths["/x"].write
    assert out.paths["/y"].kind == "absent" and out.paths["/z"].write and not out.paths["/z"].read
    assert "touch" in probes.program("access.sh") and "rm -f" in probes.program("access.sh")


def _inbox(lay: layout.AgentLayout) -> str:
    return next(r.container_path for r in lay.rules if r.source == str(lay.inbox_host))


def _workspace(lay: layout.AgentLayout) -> str:
    return next(r.container_path for r in lay.rules if r.source == str(lay.workspace_host))
