"""Images made without a registry: a rootfs tar with Debian's static busybox, ``docker import``ed.

:func:`ensure_demo_image` is the demo agents' image (the routine as its command), tagged by the
hash of what goes in, so it is imported once and cached; the tests' busybox image uses the same
recipe (``tests/support/docker_env.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable
from importlib import resources

from core.errors import ImageBuildFailed

DEMO_IMAGE_REPO = "qms-panel-demo-agent"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
BUSYBOX_APPLETS = (
    "sh", "ls", "cat", "echo", "touch", "rm", "mkdir", "sleep", "wget", "env", "test", "id",
    "head", "tail", "sha256sum", "stat", "grep", "printf", "true", "false", "nc", "hostname",
    "mount", "tr", "cut", "wc", "date", "timeout", "kill", "ps", "find", "dd",
)
DEMO_APPLETS = BUSYBOX_APPLETS + ("sed", "od")
ROUTINE_PATH = "/bin/qms-demo-routine"


def static_busybox() -> str | None:
    """The path of a static busybox on this host (only a static one runs in an empty rootfs)."""
    for candidate in BUSYBOX_CANDIDATES:
        try:
            with open(candidate, "rb") as fh:
                head = fh.read(1 << 16)
        except OSError:
            continue
        if b"/lib64/ld-linux" not in head and b"/lib/ld-linux" not in head:
            return candidate
    return None


def busybox_rootfs_tar(extra_files: dict[str, bytes] | None = None,
                       applets: Iterable[str] = BUSYBOX_APPLETS, executables: Iterable[str] = ()) -> bytes:
    """A tar of a minimal rootfs: static busybox, its applets, /etc, /tmp, and ``extra_files``
    (``executables`` among them are mode 0755)."""
    bb = static_busybox()
    if bb is None:
        raise ImageBuildFailed("no static busybox on this host to build a local image from: "
                           "apt-get install busybox-static")
    run = set(executables)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "etc", "tmp", "projects", "pipe-dream", "proc", "sys", "dev", "usr", "usr/bin"):
            add_dir(d, 0o1777 if d == "tmp" else 0o755)
        with open(bb, "rb") as fh:
            add_file("bin/busybox", fh.read(), 0o755)
        for applet in applets:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        add_file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
        add_file("etc/group", b"root:x:0:\n")
        for name, data in (extra_files or {}).items():
            add_file(name.lstrip("/"), data, 0o755 if name in run else 0o644)
    return buf.getvalue()


def import_image(client, tag: str, rootfs_tar: bytes, changes: list[str] | None = None) -> None:
    """``docker import`` a rootfs tar as ``tag`` (through the SDK's low-level API)."""
    repo, _, version = tag.rpartition(":")
    client.api.import_image_from_data(rootfs_tar, repository=repo, tag=version, changes=changes)


def routine_script() -> bytes:
    return resources.files("core.demo").joinpath("routine.sh").read_bytes()


def demo_image_recipe() -> tuple[str, bytes, list[str]]:
    """(tag, rootfs tar, image changes) of the demo agents' image; the tag is the hash of the rest,
    known without an engine."""
    mcp = json.dumps({"mcpServers": {"qms": {"type": "http", "url": "http://host.docker.internal:8000/mcp"}}},
                     indent=2).encode()
    files = {".mcp.json": mcp, ROUTINE_PATH: routine_script()}
    changes = ["ENV HOME=/", "ENV PATH=/bin:/usr/bin", "LABEL qms-panel.demo-image=true",
               f'CMD ["/bin/sh", "{ROUTINE_PATH}"]']
    tar = busybox_rootfs_tar(files, applets=DEMO_APPLETS, executables=(ROUTINE_PATH,))
    return f"{DEMO_IMAGE_REPO}:{hashlib.sha256(tar + repr(changes).encode()).hexdigest()[:12]}", tar, changes


def ensure_demo_image(client, say: Callable[[str], None] = lambda _text: None) -> str:
    """The demo agents' image tag, imported first if this engine lacks it. Raises ImageBuildFailed
    (no static busybox) or the engine's error."""
    tag, tar, changes = demo_image_recipe()
    try:
        client.images.get(tag)
        return tag
    except Exception:  # noqa: BLE001 - not there (or unreadable): import it
        pass
    say(f"building the demo agent image {tag} (busybox, no registry)…")
    import_image(client, tag, tar, changes=changes)
    say(f"built the demo agent image {tag}")
    return tag
