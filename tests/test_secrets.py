"""Secrets stay secret and library noise stays off the terminal, through the real command line.

Credentials in the MCP URLs (``user:pass@``, secret-looking query values, a fragment) never show
in ``config``, in an error line, in the link state of ``status``, or in the records the HTTP
client writes to ``QMS_PANEL_LOG``; and when the server is killed in the middle of a call (over
SSE the MCP SDK logs two tracebacks), stderr is one line: the records go to the log file, or nowhere.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SECRETS = ("bob", "s3cr3t-pass", "tok-abc123", "key-xyz789", "frag-sekrit", "pw-zzz")


def qms_panel(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QMS_PANEL_")}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True,
                          env={**clean, **(env or {}), "PYTHONPATH": str(ROOT)}, timeout=timeout)


def with_secrets(url: str) -> str:
    """``url`` with a user and password, a token in the query and a fragment."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://bob:s3cr3t-pass@{rest}?token=tok-abc123&x=1#frag-sekrit"


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        leaked = [s for s in SECRETS if s in text]
        assert not leaked, f"{leaked} in:\n{text}"


def test_config_shows_the_urls_redacted(sample_project):
    flags = ["--project-root", str(sample_project), "--mcp-url", with_secrets("http://127.0.0.1:8000/sse"),
             "--container-mcp-url", "http://u:pw-zzz@host.docker.internal:8000/mcp?api_key=key-xyz789",
             "--upstream-url", with_secrets("http://127.0.0.1:8001/mcp")]
    text = qms_panel("config", *flags)
    as_json = qms_panel("config", "--json", *flags)
    assert text.returncode == as_json.returncode == 0, text.stderr + as_json.stderr
    assert_no_secret(text.stdout, text.stderr, as_json.stdout, as_json.stderr)
    data = json.loads(as_json.stdout)
    assert data["mcp_url"] == "http://***@127.0.0.1:8000/sse?token=***&x=1#***"
    assert data["container_mcp_url"] == "http://***@host.docker.internal:8000/mcp?api_key=***"
    assert data["upstream_url"] == "http://***@127.0.0.1:8001/mcp?token=***&x=1#***"
    assert re.search(r"^mcp_url +http://\*\*\*@127\.0\.0\.1:8000/sse\?token=\*\*\*&x=1#\*\*\*$", text.stdout, re.M)


def test_an_error_line_shows_the_url_redacted(sample_project):
    done = qms_panel("config", "--json", "--project-root", str(sample_project),
                     "--mcp-url", with_secrets("ftp://127.0.0.1/sse"))
    assert done.returncode == 2
    assert_no_secret(done.stdout, done.stderr)
    assert "ftp://***@127.0.0.1/sse?token=***" in done.stderr
    assert "ftp://***@127.0.0.1/sse?token=***" in json.loads(done.stdout)["error"]


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
def test_status_and_a_call_keep_secrets_out_of_output_and_log(sample_project, devserver_factory, tmp_path,
                                                              transport):
    server = devserver_factory(sample_project, transport=transport)
    log = tmp_path / "panel.log"
    common = ["--project-root", str(sample_project), "--mcp-url", with_secrets(server.url),
              "--container-prefix", "qmst-none-"]
    env = {"QMS_PANEL_LOG": str(log)}

    status = qms_panel("status", *common, env=env)
    status_json = qms_panel("status", "--json", *common, env=env)
    call = qms_panel("checkout", "SOP-001", "--agent", "claude", *common, env=env)

    mcp = next(line for line in status.stdout.splitlines() if line.startswith("mcp"))
    assert "connected" in mcp and f"http://***@127.0.0.1:{server.port}/" in mcp, status.stdout
    assert json.loads(status_json.stdout)["link"]["status"] == "connected"
    assert call.returncode == 0, call.stderr
    records = log.read_text()
    assert "httpx INFO: HTTP Request" in records  # the client's own records reached the file (redacted)
    assert_no_secret(status.stdout, status.stderr, status_json.stdout, status_json.stderr,
                     call.stdout, call.stderr, records)


class KillOnCall:
    """A loopback relay in front of the dev server that kills the server (SIGKILL) as the first
    ``tools/call`` request passes through it, before forwarding that request: the call is in
    flight, the SSE stream is open, and the server is gone."""

    def __init__(self, server) -> None:
        self.server = server
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.killed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.server.port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client and b'"tools/call"' in data and not self.killed.is_set():
                    os.kill(self.server.process.pid, signal.SIGKILL)
                    self.killed.set()
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
def test_server_killed_during_a_call_is_one_line(sample_project, devserver_factory, tmp_path, transport):
    server = devserver_factory(sample_project, transport=transport)
    relay = KillOnCall(server)
    log = tmp_path / "panel.log"
    try:
        done = qms_panel("checkout", "SOP-001", "--agent", "qa", "--project-root", str(sample_project),
                         "--mcp-url", server.url.replace(str(server.port), str(relay.port)),
                         env={"QMS_PANEL_LOG": str(log)})
    finally:
        relay.close()
    assert relay.killed.is_set()
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("qms-panel: "), done.stderr
    if transport == "sse":  # the SDK's tracebacks were written: to the file, not the terminal
        assert "Traceback" in log.read_text()
