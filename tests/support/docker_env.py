"""A real Docker engine for tests, and a tiny agent image made locally with ``docker import``.

No registry is reachable, so the test image is a rootfs with Debian's static busybox
(``/bin/busybox`` from the ``busybox-static`` package), imported once per engine and cached
by tag. Every container and volume a test makes carries ``TEST_LABEL`` and is named from
``unique_prefix`` (``qmst-<session><test>-``); what this session made is removed at its end, and
a parallel session's containers are left alone.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from core.demo.image import busybox_rootfs_tar, import_image, static_busybox

TEST_IMAGE_REPO = "qms-panel-test/busybox"
TEST_LABEL = "qms-panel.test"
TEST_PREFIX = "qmst-"  # every container/volume name a test makes starts with this
SESSION = uuid.uuid4().hex[:6]  # this pytest session's part of the prefix: cleanup spares other sessions
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
    return static_busybox()


def build_busybox_rootfs_tar(extra_files: dict[str, bytes] | None = None) -> bytes:
    """A tar of a minimal rootfs: static busybox, its applets, /etc, /tmp, and ``extra_files``."""
    return busybox_rootfs_tar(extra_files)


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
