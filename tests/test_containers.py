"""Agent containers on the real engine: launched as the vision says, and refusals that change nothing."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path

import anyio
import docker.errors
import pytest
import requests
from urllib3.exceptions import ProtocolError

from core import layout
from core.containers import ContainerManager
from core.engine import EngineTarget, target_from_env, translate
from core.errors import (
    ContainerNotFound,
    EnginePermissionDenied,
    EngineUnreachable,
    ImageMissing,
    InvalidAgentId,
    MountSourceMissing,
    NameConflict,
    NotManaged,
    OtherProject,
    ProjectError,
)
from core.settings import Settings
from support.docker_env import TEST_LABEL

# sh as PID 1 ignores SIGTERM unless it traps it; this one stops within a second.
AGENT_CMD = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]


def make_settings(root: Path, image: str, prefix: str, **extra) -> Settings:
    return Settings.model_construct(project_root=root, image=image, container_prefix=prefix, **extra)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def ours(docker_client, prefix: str) -> tuple[list[str], list[str]]:
    containers = [c.name for c in docker_client.containers.list(all=True, filters={"name": prefix})]
    volumes = [v.name for v in docker_client.volumes.list(filters={"name": prefix})]
    return containers, volumes


@pytest.fixture
def settings(project_root, test_image, unique_prefix) -> Settings:
    return make_settings(project_root, test_image, unique_prefix)


@pytest.fixture
def cleanup(docker_client, unique_prefix):
    """Remove every container and volume named with this test's prefix, whatever happened."""
    yield
    names, volumes = ours(docker_client, unique_prefix)
    for remove, name in [(docker_client.api.remove_container, n) for n in names] + [
            (docker_client.api.remove_volume, v) for v in volumes]:
        try:
            remove(name, force=True)
        except docker.errors.NotFound:
            pass  # gone already


@pytest.fixture
def manager(settings, cleanup):
    return ContainerManager(settings, extra_labels={TEST_LABEL: "1"})


def run(manager: ContainerManager, container: str, script: str, *args: str):
    return manager.exec(container, ["sh", "-c", script, "sh", *args])


# --- launch as the vision says ------------------------------------------------------------


@pytest.mark.docker
def test_launch_gives_the_vision_container(cleanup, project_root, test_image, unique_prefix, tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_text("not a real key\n")
    settings = make_settings(project_root, test_image, unique_prefix, deploy_key=key)
    manager = ContainerManager(settings, extra_labels={TEST_LABEL: "1"})
    plan = layout.for_settings(settings, "claude")
    workspace = next(r.container_path for r in plan.rules if r.source == str(plan.workspace_host))
    row = manager.launch("claude", AGENT_CMD)
    assert (row.agent, row.name, row.state, row.managed) == ("claude", f"{unique_prefix}claude", "running", True)
    assert plan.workspace_host.is_dir()  # created on the host

    # Production is read-only.
    ro = run(manager, row.name, 'touch "$1"', layout.container_path("QMS", "probe"))
    assert ro.exit_code != 0 and "Read-only file system" in ro.output
    assert not (project_root / "QMS" / "probe").exists()
    # The workspace is the write point, and what is written there is on the host.
    rw = run(manager, row.name, 'echo draft > "$1/CR-001.md"', workspace)
    assert rw.exit_code == 0, rw.output
    assert (plan.workspace_host / "CR-001.md").read_text() == "draft\n"
    # HOME=/, the agent's identity, and the host gateway.
    env = run(manager, row.name, 'echo "$HOME|$QMS_USER|$(hostname)"')
    assert env.output.strip() == f"{layout.HOME}|claude|claude"
    assert manager.exec(row.name, ["grep", "-w", "host.docker.internal", "/etc/hosts"]).exit_code == 0
    # The deploy key is mounted read-only, never baked.
    key_path = str(layout.DEPLOY_KEY_PATH)
    assert manager.exec(row.name, ["cat", key_path]).output == "not a real key\n"
    assert run(manager, row.name, 'echo x >> "$1"', key_path).exit_code != 0

    detail = manager.inspect(row.name)
    assert detail.tty and detail.open_stdin and detail.hostname == "claude"
    assert "host.docker.internal:host-gateway" in detail.extra_hosts
    assert detail.labels["qms-panel.managed"] == "true" and detail.labels["qms-panel.agent"] == "claude"
    assert detail.labels["qms-panel.project-root"] == str(project_root.resolve())
    mounted = {m.destination: (m.volume_name or m.source, m.rw) for m in detail.mounts}
    assert mounted == {m.target: (m.source, not m.read_only) for m in plan.mounts}

    # /projects survives restart(), which is one call and counts.
    projects = str(layout.PROJECTS_PATH)
    assert run(manager, row.name, 'echo kept > "$1/keep.txt"', projects).exit_code == 0
    again = manager.restart("claude")
    assert again.state == "running" and again.id == row.id
    assert again.restart_count == row.restart_count + 1
    assert again.started_at > row.started_at
    assert manager.exec(row.name, ["cat", f"{projects}/keep.txt"]).output == "kept\n"


@pytest.mark.docker
def test_launch_points_claude_codes_telemetry_at_the_receiver_unless_it_is_off(cleanup, project_root, test_image,
                                                                               unique_prefix):
    def env(agent: str, **extra) -> dict[str, str]:
        manager = ContainerManager(make_settings(project_root, test_image, unique_prefix, **extra),
                                   extra_labels={TEST_LABEL: "1"})
        return manager.inspect(manager.launch(agent, AGENT_CMD).name).env

    on = env("claude")
    assert on["QMS_PANEL_MCP_URL"] == "http://host.docker.internal:8000/sse"  # container_mcp_url, for scripts
    assert {k: on[k] for k in on if k.startswith(("OTEL_", "CLAUDE_CODE_", "QMS_PANEL_")) and k != "QMS_PANEL_MCP_URL"} == {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1", "OTEL_LOGS_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://host.docker.internal:4318",
        "OTEL_LOGS_EXPORT_INTERVAL": "1000", "OTEL_METRIC_EXPORT_INTERVAL": "10000",
        "QMS_PANEL_HOOKS_URL": "http://host.docker.internal:4318/hooks"}  # no prompt text by default
    moved = env("qa", telemetry_listen="172.17.0.1:5999", telemetry_prompts=True)
    assert moved["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://host.docker.internal:5999"
    assert moved["QMS_PANEL_HOOKS_URL"] == "http://host.docker.internal:5999/hooks" and moved["OTEL_LOG_USER_PROMPTS"] == "1"
    off = env("lead", telemetry=False)
    assert off["CLAUDE_CODE_ENABLE_TELEMETRY"] == "0" and off["QMS_PANEL_HOOKS_URL"] == ""
    assert not any(k.startswith("OTEL_") for k in off)


@pytest.mark.docker
def test_list_uses_the_facts_it_is_given_while_their_state_is_the_lists(manager):
    row = manager.launch("claude", AGENT_CMD)
    facts: dict = {}
    assert manager.list(facts=facts) == [row.model_copy(update={"status_text": manager.list()[0].status_text})]
    assert facts[row.id].started_at == row.started_at  # filled by the inspect
    given = facts[row.id].model_copy(update={"started_at": datetime(2001, 1, 1, tzinfo=UTC), "engine_restarts": 5})
    (listed,) = manager.list(facts={row.id: given})
    assert (listed.started_at, listed.restart_count) == (given.started_at, 5)  # no inspect: the caller knows
    wrong = {row.id: given.model_copy(update={"state": "exited"})}
    (listed,) = manager.list(facts=wrong)
    assert (listed.started_at, listed.restart_count) == (row.started_at, 0)  # the list disagreed: inspected
    assert wrong[row.id].state == "running"


@pytest.mark.docker
def test_stop_start_remove_and_relaunch_keep_the_projects_volume(manager, docker_client, settings):
    row = manager.launch("qa", AGENT_CMD)
    projects = str(layout.PROJECTS_PATH)
    assert run(manager, row.name, 'echo kept > "$1/keep.txt"', projects).exit_code == 0
    with pytest.raises(NameConflict, match="already exists"):
        manager.launch("qa", AGENT_CMD)

    stopped = manager.stop("qa")
    assert stopped.state == "exited" and stopped.exit_code == 0 and stopped.started_at is not None
    assert manager.start("qa").state == "running"

    manager.remove("qa")
    volume = layout.projects_volume(settings.container_prefix, "qa")
    assert manager.get("qa") is None
    assert ours(docker_client, settings.container_prefix) == ([], [volume])

    row = manager.launch("qa", AGENT_CMD)  # re-launch: same volume, same files
    assert manager.exec(row.name, ["cat", f"{projects}/keep.txt"]).output == "kept\n"
    manager.remove("qa", remove_volume=True)
    assert ours(docker_client, settings.container_prefix) == ([], [])
    with pytest.raises(ContainerNotFound):
        manager.remove("qa")


# --- never touch what qms-panel did not make ----------------------------------------------


@pytest.mark.docker
def test_hand_made_container_with_the_agent_name_is_refused_not_replaced(manager, docker_client, settings,
                                                                         project_root, test_image):
    name = settings.container_name("claude")
    hand = docker_client.containers.create(test_image, AGENT_CMD, name=name, labels={TEST_LABEL: "1"})
    before = tree(project_root)

    with pytest.raises(NameConflict, match="did not make it"):
        manager.launch("claude", AGENT_CMD)
    for action in (manager.restart, manager.stop, manager.start, manager.remove):
        with pytest.raises(NotManaged):
            action("claude")

    hand.reload()
    assert hand.status == "created" and docker_client.containers.get(name).id == hand.id
    assert ours(docker_client, settings.container_prefix) == ([name], [])
    assert tree(project_root) == before  # no workspace folder either
    row = manager.get("claude")
    assert row is not None and not row.managed and row.id == hand.id


@pytest.mark.docker
def test_unmanaged_container_mounting_the_project_root_is_listed_and_flagged(manager, docker_client, settings,
                                                                             project_root, test_image):
    prefix = settings.container_prefix
    launched = manager.launch("claude", AGENT_CMD)
    by_hand = docker_client.containers.run(
        test_image, AGENT_CMD, name=f"{prefix}by-hand", detach=True, labels={TEST_LABEL: "1"},
        volumes={str(project_root): {"bind": "/pipe-dream", "mode": "rw"}})
    docker_client.containers.create(test_image, name=f"{prefix}unrelated", labels={TEST_LABEL: "1"})

    rows = {r.name: r for r in manager.list()}
    assert set(rows) == {launched.name, by_hand.name}
    mine, theirs = rows[launched.name], rows[by_hand.name]
    assert mine.managed and mine.agent == "claude" and mine.state == "running" and mine.started_at is not None
    assert not theirs.managed and theirs.agent == "by-hand" and theirs.state == "running"
    assert theirs.id == by_hand.id and theirs.started_at is not None


@pytest.mark.docker
async def test_another_projects_container_is_listed_as_not_ours_and_never_acted_on(
        docker_client, cleanup, project_root, test_image, unique_prefix, tmp_path):
    other_root = tmp_path / "srv" / "other"
    (other_root / "QMS").mkdir(parents=True)
    theirs = ContainerManager(make_settings(other_root, test_image, unique_prefix), extra_labels={TEST_LABEL: "1"})
    mine = ContainerManager(make_settings(project_root, test_image, unique_prefix), extra_labels={TEST_LABEL: "1"})
    launched = theirs.launch("claude", AGENT_CMD)
    before = docker_client.api.inspect_container(launched.id)["State"]

    [row] = mine.list()
    assert row.id == launched.id and not row.managed and row.owner_root == str(other_root.resolve())
    assert f"belongs to the qms-panel project at {other_root.resolve()}" in row.summary()
    assert not mine.get("claude").managed and not mine.inspect(launched.id).managed
    for action in (mine.restart, mine.stop, mine.start, mine.remove, lambda a: mine.check_ours(a, "attaches to")):
        with pytest.raises(OtherProject) as err:
            action("claude")
        assert str(err.value).startswith(f"Container of another project: {launched.name} belongs to the "
                                          f"qms-panel project at {other_root.resolve()}; ")
        assert "\n" not in str(err.value)
    with pytest.raises(OtherProject):
        async with aclosing(mine.logs("claude")) as lines:
            async for _ in lines:
                pass
    with pytest.raises(NameConflict, match="belongs to the qms-panel project at"):
        mine.launch("claude", AGENT_CMD)
    with pytest.raises(OtherProject):
        mine.remove("claude", remove_volume=True)
    assert docker_client.api.inspect_container(launched.id)["State"] == before  # not restarted, not stopped
    assert ours(docker_client, unique_prefix) == ([launched.name], [layout.projects_volume(unique_prefix, "claude")])
    assert theirs.list()[0].managed and theirs.restart("claude").state == "running"


@pytest.mark.docker
def test_launch_keeps_only_the_declared_capabilities(manager, docker_client):
    row = manager.launch("claude", AGENT_CMD)
    status = dict(line.split(":\t", 1) for line in
                  manager.exec(row.name, ["cat", "/proc/self/status"]).output.splitlines() if ":\t" in line)
    bits = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6, "SETUID": 7}
    assert set(bits) == set(layout.AGENT_CAPABILITIES)
    assert int(status["CapBnd"], 16) == sum(1 << b for b in bits.values())
    assert status["NoNewPrivs"].strip() == "1"
    # NET_RAW is gone: busybox ping needs a raw socket (an ICMP datagram socket it does not try).
    ping = manager.exec(row.name, ["busybox", "ping", "-c", "1", "-W", "1", "127.0.0.1"])
    assert ping.exit_code != 0 and "permission denied" in ping.output, ping.output
    # What an agent does to build still works as root: own, chmod and signal other users' files and processes.
    build = run(manager, row.name, "mkdir -p /projects/b && touch /projects/b/f && chown 1000:1000 /projects/b/f "
                                   "&& chmod 4755 /projects/b/f && echo x > /projects/b/f && echo built")
    assert build.exit_code == 0 and "built" in build.output, build.output
    host = docker_client.api.inspect_container(row.id)["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]


@pytest.mark.docker
def test_exec_stdin_reaches_the_process_and_not_the_engine_record(manager):
    row = manager.launch("claude", AGENT_CMD)
    secret = b"http://user:pass@host.docker.internal:1/sse?token=s3cret\n"
    done = manager.exec(row.name, ["sh", "-c", "IFS= read -r u; echo \"got $u\"; cat"], stdin=secret + b"more\n")
    assert done.exit_code == 0 and done.output == "got " + secret.decode() + "more\n"


# --- refusals change nothing --------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.parametrize("case", ["bad agent id", "no QMS folder", "image missing", "volume not ours"])
def test_refusals_are_clear_and_change_nothing(case, docker_client, cleanup, project_root, test_image, unique_prefix,
                                              tmp_path):
    root, image, agent = project_root, test_image, "claude"
    expected: type[Exception]
    if case == "bad agent id":
        agent, expected, needle = "Claude!", InvalidAgentId, "[a-z0-9_-]+"
    elif case == "no QMS folder":
        root = tmp_path / "not-a-project"
        root.mkdir()
        expected, needle = ProjectError, "no QMS/ folder"
    elif case == "image missing":
        image, expected, needle = f"{unique_prefix}missing/agent:none", ImageMissing, "qms-panel image build"
    else:
        docker_client.volumes.create(layout.projects_volume(unique_prefix, agent), labels={TEST_LABEL: "1"})
        expected, needle = NameConflict, "will not mount it at /projects"
    volumes = ours(docker_client, unique_prefix)[1]
    before = tree(root)
    manager = ContainerManager(make_settings(root, image, unique_prefix), extra_labels={TEST_LABEL: "1"})

    with pytest.raises(expected) as err:
        manager.launch(agent, AGENT_CMD)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert tree(root) == before
    assert ours(docker_client, unique_prefix) == ([], volumes)


# --- exec and logs ------------------------------------------------------------------------


@pytest.mark.docker
async def test_logs_and_exec_timeout(manager):
    row = await asyncio.to_thread(manager.launch, "claude", ["sh", "-c", "echo one; echo two; " + AGENT_CMD[2]])
    with anyio.fail_after(30):
        async with aclosing(manager.logs("claude", follow=True)) as lines:
            seen = []
            async for line in lines:
                seen.append(line)
                if line == "two":
                    break  # closing a following stream must not hang
        assert seen == ["one", "two"]
        assert [line async for line in manager.logs("claude", tail=1)] == ["two"]
        slow = await asyncio.to_thread(manager.exec, row.name, ["sleep", "5"], timeout=0.3)
    assert slow.timed_out and slow.exit_code is None
    assert manager.exec(row.name, ["sh", "-c", "exit 3"]).exit_code == 3


# --- the engine endpoint and its errors ---------------------------------------------------


def test_unreachable_engine_names_the_socket(project_root, tmp_path):
    sock = tmp_path / "nothing-here.sock"
    manager = ContainerManager(make_settings(project_root, "img", "qmst-x-"), target=EngineTarget(f"unix://{sock}"))
    with pytest.raises(EngineUnreachable, match=f"no socket at {sock}"):
        manager.list()
    assert manager.endpoint == f"unix://{sock}"


def test_closed_tcp_port_is_unreachable(project_root):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = target_from_env({"DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
    manager = ContainerManager(make_settings(project_root, "img", "qmst-x-"), target=target)
    with pytest.raises(EngineUnreachable, match=f"nothing answers at .*127.0.0.1:{port}"):
        manager.engine()


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker command to make a context")
def test_endpoint_comes_from_the_current_docker_context(tmp_path, monkeypatch):
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path)}
    env.pop("DOCKER_HOST", None)
    for argv in (["context", "create", "qmst-remote", "--docker", "host=tcp://127.0.0.1:2376"],
                 ["context", "use", "qmst-remote"]):
        subprocess.run(["docker", *argv], env=env, check=True, capture_output=True, timeout=30)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert target_from_env({}).base_url == "tcp://127.0.0.1:2376"
    assert target_from_env({}).source == "context qmst-remote"
    assert target_from_env({"DOCKER_CONTEXT": "default"}).base_url == "unix:///var/run/docker.sock"
    assert target_from_env({"DOCKER_HOST": "unix:///x.sock"}).source == "DOCKER_HOST"
    with pytest.raises(EngineUnreachable, match="'nope'"):
        target_from_env({"DOCKER_CONTEXT": "nope"})


def test_permission_denied_and_api_errors_are_translated():
    # Edge case (tests run as root, which no socket refuses): the chain requests raises.
    denied = requests.exceptions.ConnectionError(
        ProtocolError("Connection aborted.", PermissionError(13, "Permission denied")))
    err = translate(denied, "unix:///var/run/docker.sock")
    assert isinstance(err, EnginePermissionDenied) and "/var/run/docker.sock" in err.detail
    response = requests.Response()
    response.status_code = 400
    mount = docker.errors.APIError("400", response, explanation='invalid mount config for type "bind": '
                                                               "bind source path does not exist: /x")
    assert isinstance(translate(mount, "e"), MountSourceMissing)


def test_concurrent_launches_share_the_users_folder(settings, cleanup, project_root):
    """Launching several agents at once must not trip over their common .claude/users folder."""
    from concurrent.futures import ThreadPoolExecutor

    manager = ContainerManager(settings, extra_labels={TEST_LABEL: "1"})
    agents = [f"a{i}" for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        rows = list(pool.map(lambda a: manager.launch(a, ["sleep", "3600"]), agents))
    assert sorted(r.agent for r in rows) == agents
    assert all((project_root / ".claude" / "users" / a / "workspace").is_dir() for a in agents)


def test_make_dirs_tolerates_a_folder_made_between_check_and_mkdir(tmp_path, monkeypatch):
    """The race above, made certain: .claude/users appears after the check, before the mkdir."""
    from pathlib import Path

    from core.containers import _make_dirs

    users = tmp_path / ".claude" / "users"
    users.mkdir(parents=True)
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda p: False if p in (users, users.parent) else real_exists(p))
    made = _make_dirs(users / "claude" / "workspace")
    assert made == [users / "claude", users / "claude" / "workspace"]  # only what it made is its to undo
    assert (users / "claude" / "workspace").is_dir()
