"""A real Docker engine for tests, and a tiny agent image made locally with ``docker import``.

No registry is reachable, so the test image is a rootfs with Debian's static busybox
(``/bin/busybox`` from the ``busybox-static`` package), imported once per engine and cached
by tag. Every container and volume a test makes carries ``TEST_LABEL`` and is named from
``unique_prefix`` (``qmst-<session><test>-``); what this session made is removed at its end, and
a parallel session's containers are left alone.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import uuid
from pathlib import Path

import pytest

TEST_IMAGE_REPO = "qms-panel-test/busybox"
TEST_LABEL = "qms-panel.test"
TEST_PREFIX = "qmst-"  # every container/volume name a test makes starts with this
SESSION = uuid.uuid4().hex[:6]  # this pytest session's part of the prefix: cleanup spares other sessions
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
BUSYBOX_APPLETS = (
    "sh", "ls", "cat", "echo", "touch", "rm", "mkdir", "sleep", "wget", "env", "test", "id",
    "head", "tail", "sha256sum", "stat", "grep", "printf", "true", "false", "nc", "hostname",
    "mount", "tr", "cut", "wc", "date", "timeout", "kill", "ps", "find", "dd",
)


def require_docker() -> bool:
    return os.environ.get("QMS_PANEL_REQUIRE_DOCKER", "") not in ("", "0", "false", "no")


def _engine_or_reason():
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        return client, None
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine here"
        return None, f"Docker engine not reachable ({type(exc).__name__}: {exc})"


def _busybox() -> str | None:
    for candidate in BUSYBOX_CANDIDATES:
        if os.path.isfile(candidate):
            # Only a static busybox works in an empty rootfs.
            with open(candidate, "rb") as fh:
                head = fh.read(1 << 16)
            if b"/lib64/ld-linux" not in head and b"/lib/ld-linux" not in head:
                return candidate
    return None


def build_busybox_rootfs_tar(extra_files: dict[str, bytes] | None = None) -> bytes:
    """A tar of a minimal rootfs: static busybox, its applets, /etc, /tmp, and ``extra_files``."""
    bb = _busybox()
    if bb is None:
        raise RuntimeError("no static busybox: apt-get install busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dir(name, mode=0o755):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)

        def add_file(name, data: bytes, mode=0o644):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "etc", "tmp", "projects", "pipe-dream", "proc", "sys", "dev", "usr", "usr/bin"):
            add_dir(d, 0o1777 if d == "tmp" else 0o755)
        with open(bb, "rb") as fh:
            add_file("bin/busybox", fh.read(), 0o755)
        for applet in BUSYBOX_APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        add_file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
        add_file("etc/group", b"root:x:0:\n")
        for name, data in (extra_files or {}).items():
            add_file(name.lstrip("/"), data)
    return buf.getvalue()


def import_image(client, tag: str, rootfs_tar: bytes, changes: list[str] | None = None) -> str:
    """``docker import`` a rootfs tar as ``tag`` (through the SDK's low-level API)."""
    resp = client.api.import_image_from_data(rootfs_tar, repository=tag.rsplit(":", 1)[0],
                                             tag=tag.rsplit(":", 1)[1] if ":" in tag else "latest",
                                             changes=changes)
    return resp if isinstance(resp, str) else str(resp)


@pytest.fixture(scope="session")
def docker_client():
    client, reason = _engine_or_reason()
    if client is None:
        if require_docker():
            pytest.fail(f"QMS_PANEL_REQUIRE_DOCKER is set but {reason}", pytrace=False)
        pytest.skip(reason)
    yield client
    # Session cleanup: everything the tests labelled.
    mine = TEST_PREFIX + SESSION
    for c in client.containers.list(all=True, filters={"name": mine}):
        try:
            c.remove(force=True, v=True)
        except Exception:
            pass
    for v in client.volumes.list(filters={"name": mine}):
        try:
            v.remove(force=True)
        except Exception:
            pass
    client.close()


def ensure_test_image(client) -> str:
    """Tag of the busybox agent image (``HOME=/``, ``/.mcp.json`` baked in), imported if missing.

    The tag is a hash of the rootfs and its settings, so a changed recipe makes a new image.
    """
    import hashlib
    import json

    mcp = json.dumps({"mcpServers": {"qms": {"type": "sse", "url": "http://host.docker.internal:8000/sse"}}},
                     indent=2).encode()
    tar = build_busybox_rootfs_tar({".mcp.json": mcp})
    changes = ["ENV HOME=/", "ENV PATH=/bin:/usr/bin", 'CMD ["sh"]']
    tag = f"{TEST_IMAGE_REPO}:{hashlib.sha256(tar + repr(changes).encode()).hexdigest()[:12]}"
    try:
        client.images.get(tag)
    except Exception:
        import_image(client, tag, tar, changes=changes)
    return tag


@pytest.fixture(scope="session")
def test_image(docker_client) -> str:
    """The busybox agent image, imported once per engine (see :func:`ensure_test_image`)."""
    return ensure_test_image(docker_client)


@pytest.fixture
def unique_prefix() -> str:
    """A container-name prefix unique to one test, so tests never collide."""
    return f"{TEST_PREFIX}{SESSION}{uuid.uuid4().hex[:6]}-"


@pytest.fixture
def project_root(tmp_path) -> Path:
    """An empty project: a root with QMS/ (use the devserver's sample for a full one)."""
    root = tmp_path / "pipe-dream"
    (root / "QMS").mkdir(parents=True)
    return root


def has_static_busybox() -> bool:
    return _busybox() is not None and shutil.which("docker") is not None


def remove_by_prefix(client, prefix: str) -> None:
    """Remove (forced, 4 at a time) every container, then every volume, whose name starts with ``prefix``."""
    from concurrent.futures import ThreadPoolExecutor

    ids = [c["Id"] for c in client.api.containers(all=True, filters={"name": prefix})]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda cid: client.api.remove_container(cid, force=True), ids))
    for volume in client.volumes.list(filters={"name": prefix}):
        volume.remove(force=True)


@pytest.fixture
def agent_container(sample_project, test_image, unique_prefix, docker_client):
    """(manager, row): a running busybox agent container for ``claude`` on the sample project,
    launched by qms-panel (only busybox wget inside), removed with its volume afterwards."""
    from core.containers import ContainerManager
    from core.settings import Settings

    settings = Settings(project_root=sample_project, image=test_image, container_prefix=unique_prefix)
    manager = ContainerManager(settings, client=docker_client, extra_labels={TEST_LABEL: "1"})
    row = manager.launch("claude", command=["sleep", "3600"])
    yield manager, row
    manager.remove("claude", remove_volume=True)
