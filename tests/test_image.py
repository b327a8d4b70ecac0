"""The agent image: the build context, the command line, and the real image built and run.

The slow tests build ``image/Dockerfile`` for real on a debootstrap base (once per machine, see
``tests/support/agent_image.py``) and run it with no network; the access audit passes for a
container launched from it by qms-panel.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import tarfile
import time
from contextlib import closing
from pathlib import Path

import docker
import pytest
from support.agent_image import build_agent_image, ca_bundle
from support.docker_env import TEST_LABEL

from core import image as core_image
from core.errors import ImageBuildFailed
from core.layout import mcp_config

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CERTS = core_image.pem_certificates(ca_bundle())[:3] if ca_bundle().is_file() else []
PRIVATE_KEY = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----\r?\n(?:[A-Za-z-]+: [^\n]*\r?\n)*\r?\n?[A-Za-z0-9+/=]{40,}")
KEY_FILE_NAME = re.compile(r"(?:^|/)id_(?:rsa|dsa|ecdsa|ed25519)(?:_sk)?$|\.(?:key|p12|pfx)$")


def qms_panel(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: float = 120):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QMS_PANEL_")}
    full_env.update(env or {}, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=timeout)


def assert_one_line(proc, code: int, *needles: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in line, line
    return line


# --- build context and command line (quick) ----------------------------------------------------


def context_names(context: bytes) -> dict[str, bytes]:
    import io

    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()}


@pytest.mark.skipif(not SAMPLE_CERTS, reason="no CA bundle on this machine")
def test_context_splits_bundles_dedupes_and_never_carries_keys(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "entrypoint.sh").write_text("#!/bin/sh\n")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "gitconfig").write_text("[user]\n")
    (tmp_path / "certs").mkdir()
    key = b"-----BEGIN PRIVATE KEY-----\n" + b"A" * 64 + b"\n-----END PRIVATE KEY-----\n"
    (tmp_path / "certs" / "proxy.crt").write_bytes(key + SAMPLE_CERTS[0] + SAMPLE_CERTS[1])
    (tmp_path / "certs" / "notes.txt").write_bytes(SAMPLE_CERTS[2])  # not *.crt: ignored
    extra = tmp_path / "bundle.pem"
    extra.write_bytes(SAMPLE_CERTS[1] + SAMPLE_CERTS[2])

    context, count = core_image.build_context(tmp_path, core_image.certificate_files(tmp_path, [extra]))
    files = context_names(context)
    assert count == 3
    assert sorted(n for n in files if n.startswith("certs")) == [
        "certs", "certs/qms-panel-001.crt", "certs/qms-panel-002.crt", "certs/qms-panel-003.crt"]
    assert {"Dockerfile", "entrypoint.sh", "files/gitconfig"} <= set(files)
    assert all(b"PRIVATE KEY" not in data for data in files.values())


def test_context_refuses_a_file_without_certificates(tmp_path):
    bogus = tmp_path / "der.crt"
    bogus.write_bytes(b"\x30\x82\x01\x0a")
    with pytest.raises(ImageBuildFailed, match="no PEM certificate"):
        core_image.build_context(core_image.IMAGE_DIR, [bogus])
    with pytest.raises(ImageBuildFailed, match="cannot read CA certificate file"):
        core_image.build_context(core_image.IMAGE_DIR, [tmp_path / "missing.crt"])


def test_real_context_holds_the_image_files():
    files = context_names(core_image.build_context()[0])
    assert {"Dockerfile", "entrypoint.sh", "files/gitconfig", "files/claude-settings.json",
            "files/ssh_known_hosts", "files/registry-fetch", "files/qms-agent-hook"} <= set(files)
    assert "certs/README.md" not in files


def test_the_baked_settings_run_the_hook_command_on_the_four_events():
    """Command hooks: Claude Code's HTTP hooks refuse host.docker.internal (a private address) and
    do not run for SessionStart; the command posts to the URL launch gives it, or nothing."""
    settings = json.loads((REPO / "image" / "files" / "claude-settings.json").read_text())
    hooks = settings["hooks"]
    assert set(hooks) == {"SessionStart", "Notification", "PostToolUse", "Stop"}
    assert {h["command"] for groups in hooks.values() for g in groups for h in g["hooks"]} == {
        "/usr/local/bin/qms-agent-hook"}
    script = (REPO / "image" / "files" / "qms-agent-hook").read_text()
    assert "$QMS_PANEL_HOOKS_URL" in script and "exit 0" in script and "max-time" in script


def test_proxy_variables_become_build_args():
    env = {"http_proxy": "http://127.0.0.1:3128", "NO_PROXY": "localhost", "HOME": "/root"}
    assert core_image.proxy_build_args(env) == {"http_proxy": "http://127.0.0.1:3128", "NO_PROXY": "localhost"}


def test_image_build_help():
    proc = qms_panel("image", "build", "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--base-image", "--tag", "--mcp-url", "--ca-cert", "--json"):
        assert flag in proc.stdout


def test_image_build_rejects_a_bad_mcp_url():
    assert_one_line(qms_panel("image", "build", "--mcp-url", "ftp://nowhere"), 2, "--mcp-url")


def test_image_build_without_an_engine():
    proc = qms_panel("image", "build", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert_one_line(proc, 1, "Docker engine unreachable")


@pytest.mark.docker
def test_image_build_with_a_missing_base_image(docker_client, unique_prefix):
    # A registry on a closed loopback port: the pull fails at once, no traffic leaves the machine.
    base = f"127.0.0.1:9/{unique_prefix}missing:1"
    proc = qms_panel("image", "build", "--base-image", base, "--tag", f"{unique_prefix}never:1")
    line = assert_one_line(proc, 1, "Image build failed", "FROM", base, "--base-image")
    assert len(line) < 600
    proc = qms_panel("image", "build", "--base-image", base, "--tag", f"{unique_prefix}never:1", "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout) | {"error": ""} == {"error": "", "title": "Image build failed", "exit": 1}


@pytest.mark.docker
def test_a_failing_step_is_one_line_naming_step_and_cause(docker_client, test_image, tmp_path, unique_prefix):
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
        "RUN echo noise; echo 'curl: (60) SSL certificate problem: self-signed certificate' >&2; exit 60\n")
    lines = []
    with pytest.raises(ImageBuildFailed) as info:
        core_image.build_image(tag=f"{unique_prefix}fails:1", base_image=test_image, context_dir=tmp_path,
                               network_mode="none", on_progress=lines.append, client=docker_client)
    message = str(info.value)
    assert "\n" not in message
    assert re.match(r"Image build failed: Step 3/\d+ \(RUN echo noise;", message), message
    assert "exited with code 60; curl: (60) SSL certificate problem" in message
    assert "pass --ca-cert" in message
    assert "noise" in lines and any(line.startswith("Step 3/") for line in lines)


@pytest.mark.docker
def test_attach_refuses_a_missing_container(docker_client, project_root, unique_prefix):
    proc = qms_panel("attach", "claude", "--project-root", str(project_root), "--container-prefix", unique_prefix)
    assert_one_line(proc, 1, "No such agent container", f"{unique_prefix}claude")


# --- the real image (slow) ---------------------------------------------------------------------


def run_in(client, image: str, script: str, prefix: str, name: str) -> str:
    """Output of ``bash -c script`` in a container of ``image`` (no network, entrypoint bypassed)."""
    out = client.containers.run(image, [script], entrypoint=["bash", "-c"], name=f"{prefix}{name}",
                                network_mode="none", labels={TEST_LABEL: "1"}, remove=True, stderr=True)
    return out.decode()


def start_agent(client, image: str, command: list[str], name: str, labels: dict | None = None):
    return client.containers.run(image, command, name=name, detach=True, network_mode="none",
                                 labels={TEST_LABEL: "1", **(labels or {})})


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def has_session(container) -> bool:
    container.reload()
    if container.status != "running":
        return False
    return container.exec_run(["tmux", "has-session", "-t", core_image.TMUX_SESSION]).exit_code == 0


@pytest.mark.slow
@pytest.mark.docker
def test_home_files_and_tools(docker_client, agent_image, unique_prefix):
    out = run_in(docker_client, agent_image, r"""
        set -e
        echo "HOME=$HOME"
        getent passwd root | cut -d: -f6 | sed 's/^/passwd-home=/'
        test -f /.gitconfig && git config --global --get user.name >/dev/null && echo gitconfig-ok
        test -d /pipe-dream && echo pipe-dream-ok
        touch /projects/probe && rm /projects/probe && echo projects-writable
        claude --version
        node --version; npm --version; git --version; ssh -V 2>&1; tmux -V; curl --version | head -n 1
        cat /.claude/settings.json
        """, unique_prefix, "tools")
    assert "HOME=/\n" in out and "passwd-home=/\n" in out
    config = docker_client.images.get(agent_image).attrs["Config"]
    assert "HOME=/" in config["Env"] and config["Cmd"] == ["claude"] and config["WorkingDir"] == "/"
    for marker in ("gitconfig-ok", "pipe-dream-ok", "projects-writable", "(Claude Code)", "OpenSSH", "tmux 3"):
        assert marker in out, out
    assert int(re.search(r"^v(\d+)\.", out, re.M).group(1)) >= 22, out
    settings = json.loads(out[out.index("{"):])
    assert settings["enabledMcpjsonServers"] == ["qms"] and "Stop" in settings["hooks"]


@pytest.mark.slow
@pytest.mark.docker
def test_mcp_json_is_baked_exactly(docker_client, agent_image, unique_prefix):
    text = run_in(docker_client, agent_image, "cat /.mcp.json", unique_prefix, "mcp")
    assert json.loads(text) == mcp_config(core_image.DEFAULT_MCP_URL)
    assert text == json.dumps(mcp_config(core_image.DEFAULT_MCP_URL), indent=2) + "\n"
    labels = docker_client.images.get(agent_image).labels
    assert labels["qms-panel.mcp-url"] == core_image.DEFAULT_MCP_URL


@pytest.mark.slow
@pytest.mark.docker
def test_mcp_url_build_argument(docker_client, agent_image, unique_prefix):
    url = "http://host.docker.internal:9000/mcp"  # streamable HTTP: type "http"
    tag, _ = build_agent_image(docker_client, mcp_url=url)  # only the last layers differ
    text = run_in(docker_client, tag, "cat /.mcp.json", unique_prefix, "mcp-http")
    assert json.loads(text) == mcp_config(url) and json.loads(text)["mcpServers"]["qms"]["type"] == "http"


@pytest.mark.slow
@pytest.mark.docker
def test_machine_ca_bundle_is_trusted(docker_client, agent_image, unique_prefix):
    text = run_in(docker_client, agent_image, "cat /etc/ssl/certs/ca-certificates.crt", unique_prefix, "ca")
    trusted = set(core_image.split_certificates(text.encode()))
    assert set(core_image.pem_certificates(ca_bundle())) <= trusted


@pytest.mark.slow
@pytest.mark.docker
def test_no_private_key_in_any_layer(docker_client, agent_image):
    """Every file of every layer (``docker save``), by name and by a PEM private-key block."""
    found, scanned = [], 0
    slow_client = docker.from_env(timeout=600)  # the engine takes a while to start the export
    stream = _ChunkReader(slow_client.images.get(agent_image).save(named=False))
    with closing(slow_client), tarfile.open(fileobj=stream, mode="r|") as outer:
        for member in outer:
            if not member.name.endswith("layer.tar"):
                continue
            with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as layer:
                for entry in layer:
                    if not entry.isfile() or entry.name.rsplit("/", 1)[-1].startswith(".wh."):
                        continue
                    scanned += 1
                    if KEY_FILE_NAME.search(entry.name):
                        found.append(f"{member.name}:{entry.name} (name)")
                    if _holds_private_key(layer.extractfile(entry)):
                        found.append(f"{member.name}:{entry.name} (PEM private key)")
    assert scanned > 1000
    assert not found, found


@pytest.mark.slow
@pytest.mark.docker
def test_entrypoint_keeps_the_agent_in_tmux_and_stops_cleanly(docker_client, agent_image, unique_prefix):
    agent = start_agent(docker_client, agent_image, ["sh", "-c", "echo agent-up; exec sleep 600"],
                        f"{unique_prefix}tmux")
    wait_for(lambda: has_session(agent), what="the tmux session")
    wait_for(lambda: b"agent-up" in agent.exec_run(["tmux", "capture-pane", "-p", "-t", "agent"]).output,
             what="the agent's output in the pane")
    agent.stop(timeout=60)
    agent.reload()
    assert agent.attrs["State"]["ExitCode"] == 143  # the agent's own SIGTERM, not docker's SIGKILL (137)


@pytest.mark.slow
@pytest.mark.docker
def test_entrypoint_exits_with_the_agent_status(docker_client, agent_image, unique_prefix):
    agent = start_agent(docker_client, agent_image, ["sh", "-c", "exit 3"], f"{unique_prefix}status")
    assert agent.wait(timeout=60)["StatusCode"] == 3


@pytest.mark.slow
@pytest.mark.docker
def test_an_agent_that_ends_at_once_leaves_its_last_screen_in_the_log(docker_client, agent_image, unique_prefix):
    """Today's failure mode: claude cannot reach its API and exits; the log says why."""
    agent = start_agent(docker_client, agent_image,
                        ["sh", "-c", "echo 'API Error: Connection error.'; printf 'bye\\033[2J\\n'; exit 1"],
                        f"{unique_prefix}early")
    assert agent.wait(timeout=60)["StatusCode"] == 1
    log = agent.logs().decode(errors="replace")
    assert "qms-agent: sh exited with status 1; its last screen:" in log, log
    assert "API Error: Connection error." in log and "bye" in log and "\x1b" not in log, log  # text, no escapes


@pytest.mark.slow
@pytest.mark.docker
def test_entrypoint_hangs_up_an_agent_that_ignores_sigterm(docker_client, agent_image, unique_prefix):
    agent = start_agent(docker_client, agent_image, ["sh", "-c", "trap '' TERM; echo up; sleep 600"],
                        f"{unique_prefix}stubborn")
    wait_for(lambda: has_session(agent), what="the tmux session")
    agent.stop(timeout=60)  # the entrypoint's grace is 5 s: it ends the agent itself, well before
    agent.reload()
    assert agent.attrs["State"]["ExitCode"] == 128 + 1  # SIGHUP


@pytest.mark.slow
@pytest.mark.docker
def test_attach_joins_the_session(docker_client, agent_image, project_root, unique_prefix):
    ours = {"qms-panel.managed": "true", "qms-panel.project-root": str(project_root.resolve())}  # attach: ours only
    agent = start_agent(docker_client, agent_image, ["sh", "-c", "echo attach-marker; exec sleep 600"],
                        f"{unique_prefix}claude", labels=ours)
    wait_for(lambda: has_session(agent), what="the tmux session")
    output = _attach_in_pty(project_root, unique_prefix, until=b"attach-marker")
    assert b"detached" in output


# --- helpers -------------------------------------------------------------------------------------


class _ChunkReader:
    """A read() file over the byte chunks docker-py streams (for tarfile's stream mode)."""

    def __init__(self, chunks):
        self._chunks, self._buf = iter(chunks), b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        data, self._buf = (self._buf, b"") if size < 0 else (self._buf[:size], self._buf[size:])
        return data


def _holds_private_key(fh, chunk: int = 1 << 24, overlap: int = 8192) -> bool:
    """A text file with a PEM private-key block. Binaries are skipped: libgnutls, for one,
    embeds the well-known keys of its self-tests; a key file is text."""
    tail = b""
    while True:
        data = fh.read(chunk)
        if not data:
            return False
        if not tail and b"\0" in data[:8192]:
            return False
        window = tail + data
        if b"PRIVATE KEY-----" in window and PRIVATE_KEY.search(window):
            return True
        tail = window[-overlap:]


def _attach_in_pty(project_root: Path, prefix: str, until: bytes, timeout: float = 60) -> bytes:
    """Run ``qms-panel attach claude`` on a pseudo-terminal, wait for ``until``, detach (Ctrl-b d)."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QMS_PANEL_")}
    env.update(PYTHONPATH=str(REPO), TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "attach", "claude", "--project-root",
                             str(project_root), "--container-prefix", prefix],
                            stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env, start_new_session=True)
    os.close(slave)
    output, detached = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the other side closed
                    break
                if not data:
                    break
                output += data
            if until in output and not detached:
                os.write(master, b"\x02d")
                detached = True
            if proc.poll() is not None and not ready:
                break
        assert until in output, output[-2000:]
        assert proc.wait(timeout=30) == 0, output[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return output


@pytest.mark.slow
@pytest.mark.docker
def test_access_audit_passes_for_a_container_launched_by_qms_panel(docker_client, agent_image, project_root,
                                                                  unique_prefix):
    from core.access_audit import audit_container
    from core.containers import ContainerManager
    from core.settings import Settings

    settings = Settings(project_root=project_root, image=agent_image, container_prefix=unique_prefix)
    manager = ContainerManager(settings, extra_labels={TEST_LABEL: "1"})
    row = manager.launch("claude", command=["sleep", "3600"])  # the entrypoint runs it in tmux
    try:
        wait_for(lambda: manager.get("claude").state == "running", what="the agent to run")
        report = audit_container(manager, settings, row)
        bad = [(r.path, r.verdict, r.detail) for r in report.rows if not r.ok]
        assert report.ok and not bad, bad
        assert {r.path for r in report.rows} >= {"/", "/.mcp.json", "/projects", "/pipe-dream"}
    finally:
        manager.remove("claude", remove_volume=True)
