"""Dev-server fixtures: the sample project, and the QMS MCP dev server as a real subprocess.

- ``sample_project``: a fresh sample project (``init_project``) in a temporary folder;
- ``devserver_factory(project_root, transport="sse", host="127.0.0.1", port=None, identity_ttl=None)``:
  a started :class:`DevServer`; every server it made is stopped at teardown;
- ``devserver``: the dev server over SSE on ``sample_project``.

A server's stderr goes to a file (``server.log_path``, ``server.log_text()``) for debugging.
"""

from __future__ import annotations

import socket
import tempfile
import threading
from pathlib import Path

import pytest

from core.devserver.sample import init_project
from core.devserver.server import DevServerProcess, Transport, free_port

__all__ = ["DevServer", "free_port"]


class DevServer(DevServerProcess):
    """``python -m core.devserver`` on a free port (or ``port``); stderr captured to ``log_path``.

    Without ``log_path`` the log is a temporary file, removed by ``stop()``.
    """

    def __init__(self, project_root: Path, transport: Transport = "sse", host: str = "127.0.0.1",
                 port: int | None = None, identity_ttl: float | None = None, log_path: Path | None = None,
                 stateful: bool = False) -> None:
        self._own_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="qms-devserver-", suffix=".log")
            open(fd).close()
            log_path = Path(name)
        super().__init__(project_root, transport, host, port, identity_ttl, log_path, stateful=stateful)

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        if self._own_log:
            self.log_path.unlink(missing_ok=True)

    def restart(self, timeout: float = 30.0) -> None:
        DevServerProcess.stop(self)
        self.start(timeout)


@pytest.fixture
def sample_project(tmp_path) -> Path:
    root = tmp_path / "pipe-dream"
    init_project(root)
    return root


@pytest.fixture
def devserver_factory(tmp_path):
    servers: list[DevServer] = []

    def factory(project_root: Path, transport: Transport = "sse", host: str = "127.0.0.1",
                port: int | None = None, identity_ttl: float | None = None, stateful: bool = False) -> DevServer:
        server = DevServer(project_root, transport, host, port, identity_ttl,
                           log_path=tmp_path / f"devserver-{len(servers)}.log", stateful=stateful)
        servers.append(server)
        server.start()
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def devserver(sample_project, devserver_factory) -> DevServer:
    return devserver_factory(sample_project)


@pytest.fixture
def silent_server():
    """A TCP server that accepts every connection and never says a word (a stalled server)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()
