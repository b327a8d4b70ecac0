"""The real agent image for tests and CI, made without a registry, both layers cached by tag.

1. The base: ``debootstrap --variant=minbase bookworm`` from the Debian mirror this machine's
   apt is configured with, given the machine's Debian sources (and its apt options such as
   ``Check-Valid-Until``, never its proxy settings), then ``docker import``-ed as
   :data:`BASE_TAG`. Skipped when the tag exists.
2. The image: ``image/Dockerfile`` built by :func:`core.image.build_image` on that base, trusting
   the machine's CA bundle (``SSL_CERT_FILE``), with apt's proxy and npm's registry of the
   machine as build arguments when they are set, tagged with a hash of the build context so a
   changed Dockerfile is rebuilt (older test tags are pruned). Skipped when the tag exists.

``python tests/support/agent_image.py`` does both and prints the timings (``.ci/agent-image``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

if __package__ in (None, ""):  # run as a script
    sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]

from core import image as core_image  # noqa: E402
from support.docker_env import require_docker  # noqa: E402

BASE_TAG = "qms-panel/bookworm-base:1"
IMAGE_REPO = "qms-panel-test/claude-agent"
SUITE = "bookworm"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
APT_OPTIONS_KEPT = ("Acquire::Check-Valid-Until", "Acquire::Check-Date")
# What debian:bookworm-slim leaves out of every package it installs.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
IMPORT_CHANGES = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["bash"]']


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- the machine's apt configuration --------------------------------------------------------


def apt_entries(sources: tuple[Path, ...] = APT_SOURCES) -> list[tuple[str, list[str], list[str]]]:
    """Active ``deb`` entries of the machine: (uri, suites, components), both source formats."""
    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files += sorted(p for p in src.iterdir() if p.suffix in (".list", ".sources"))
        elif src.is_file():
            files.append(src)
    entries = []
    for path in files:
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if line.strip().startswith("#") or ":" not in line:
                        continue
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.split()
                if ("deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]
                        and fields.get("uris")):
                    for uri in fields["uris"]:
                        entries.append((uri, fields.get("suites", []), fields.get("components", [])))
        else:
            for line in text.splitlines():
                parts = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(parts) >= 3 and parts[0] == "deb":
                    entries.append((parts[1], [parts[2]], parts[3:]))
    return entries


def debian_entries() -> list[tuple[str, list[str], list[str]]]:
    """The machine's entries for the bookworm suites (main, updates, security)."""
    keep = []
    for uri, suites, components in apt_entries():
        ours = [s for s in suites if s == SUITE or s.startswith(SUITE + "-")]
        if ours:
            keep.append((uri, ours, components or ["main"]))
    return keep


def debian_mirror() -> str:
    """The mirror the machine's apt fetches ``bookworm`` from."""
    for uri, suites, _ in debian_entries():
        if SUITE in suites:
            return uri
    raise RuntimeError(f"no apt source for {SUITE} in /etc/apt (sources.list or sources.list.d)")


def apt_options() -> dict[str, str]:
    """The apt options worth copying into the base (:data:`APT_OPTIONS_KEPT`) that are set here."""
    options = {}
    for name in APT_OPTIONS_KEPT:
        out = subprocess.run(["apt-config", "dump", name], capture_output=True, text=True).stdout
        m = re.search(rf'^{re.escape(name)} "([^"]*)";', out, re.M)
        if m:
            options[name] = m.group(1)
    return options


def apt_proxy_build_args() -> dict[str, str]:
    """apt's own proxy settings, as build arguments (never baked into a layer)."""
    args = {}
    for scheme in ("http", "https"):
        out = subprocess.run(["apt-config", "dump", f"Acquire::{scheme}::Proxy"], capture_output=True,
                             text=True).stdout
        m = re.search(rf'^Acquire::{scheme}::Proxy "([^"]+)";', out, re.M)
        if m and m.group(1).upper() not in ("DIRECT", "FALSE") and not os.environ.get(f"{scheme}_proxy"):
            args[f"{scheme}_proxy"] = m.group(1)
    return args


def npm_registry_build_args() -> dict[str, str]:
    """The machine's npm registry as ``NPM_REGISTRY`` when it is not the public default."""
    if shutil.which("npm") is None:
        return {}
    try:
        out = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return {}
    registry = out.stdout.strip()
    if out.returncode != 0 or not registry.startswith("http") or registry.rstrip("/") == "https://registry.npmjs.org":
        return {}
    return {"NPM_REGISTRY": registry.rstrip("/")}


def ca_bundle() -> Path:
    """The machine's CA bundle (the inspecting proxy's CA is in it)."""
    return Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")


# --- the base ---------------------------------------------------------------------------------


def has_image(client, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def prepare_rootfs(root: Path) -> None:
    """Give a fresh debootstrap tree the machine's Debian sources and trim it like -slim."""
    entries = debian_entries()
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    stanzas = [f"Types: deb\nURIs: {uri}\nSuites: {' '.join(suites)}\nComponents: {' '.join(comps)}\n"
               "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n" for uri, suites, comps in entries]
    (root / "etc/apt/sources.list.d/debian.sources").write_text("\n".join(stanzas))
    options = apt_options()
    if options:
        (root / "etc/apt/apt.conf.d/90qms-panel-base").write_text(
            "".join(f'{k} "{v}";\n' for k, v in options.items()))
    (root / "etc/dpkg/dpkg.cfg.d/docker").write_text(DPKG_EXCLUDES)
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*"):
        for path in root.glob(pattern):
            path.unlink()


def make_base(client, tag: str = BASE_TAG) -> dict[str, float]:
    """debootstrap + ``docker import`` as ``tag`` unless it exists; returns the timings (s)."""
    if has_image(client, tag):
        log(f"agent-image: base {tag} already here")
        return {}
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (apt-get install -y debootstrap)")
    mirror = debian_mirror()
    root = Path(tempfile.mkdtemp(prefix="qms-panel-rootfs-"))
    timings = {}
    try:
        log(f"agent-image: debootstrap --variant=minbase {SUITE} from {mirror}")
        started = time.monotonic()
        proc = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(root), mirror],
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        timings["debootstrap_s"] = round(time.monotonic() - started, 1)
        prepare_rootfs(root)
        log(f"agent-image: importing the rootfs as {tag}")
        started = time.monotonic()
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "--exclude=./dev/*",
                                "--exclude=./proc/*", "--exclude=./sys/*", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        repo, _, version = tag.rpartition(":")
        client.api.import_image(src=iter(lambda: tar.stdout.read(1 << 20), b""), repository=repo, tag=version,
                                changes=IMPORT_CHANGES, stream_src=True)
        if tar.wait(timeout=600) != 0:
            raise RuntimeError(f"tar of {root} failed ({tar.returncode})")
        timings["import_s"] = round(time.monotonic() - started, 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not has_image(client, tag):
        raise RuntimeError(f"docker import did not produce {tag}")
    return timings


# --- the image --------------------------------------------------------------------------------


def context_hash() -> str:
    """A hash of the build context (without certificates) and the base tag."""
    digest = hashlib.sha256(BASE_TAG.encode() + b"\0")
    root = core_image.IMAGE_DIR
    for path in sorted([root / n for n in core_image.CONTEXT_FILES] + list((root / "files").rglob("*"))):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def image_tag(mcp_url: str = core_image.DEFAULT_MCP_URL) -> str:
    """Tag of a test image: the context hash, and a hash of the MCP URL unless it is the default."""
    tag = f"{IMAGE_REPO}:{context_hash()}"
    if mcp_url != core_image.DEFAULT_MCP_URL:
        tag += "-" + hashlib.sha256(mcp_url.encode()).hexdigest()[:8]
    return tag


def prune_stale_images(client) -> None:
    """Remove the test images of older build contexts (their layers are mostly shared)."""
    import docker

    current = f"{IMAGE_REPO}:{context_hash()}"
    for img in client.images.list(name=IMAGE_REPO):
        for tag in img.tags:
            if tag.startswith(IMAGE_REPO + ":") and not tag.startswith(current):
                try:
                    client.images.remove(tag)
                except docker.errors.APIError:  # still used by a container: next time
                    pass


def build_agent_image(client, mcp_url: str = core_image.DEFAULT_MCP_URL,
                      on_progress=log) -> tuple[str, dict[str, float]]:
    """The base and the image, each built unless its tag exists; returns (tag, timings)."""
    timings = make_base(client)
    tag = image_tag(mcp_url)
    if has_image(client, tag):
        log(f"agent-image: {tag} already here")
        return tag, timings
    prune_stale_images(client)
    built = core_image.build_image(tag=tag, base_image=BASE_TAG, mcp_url=mcp_url, ca_files=[ca_bundle()],
                                   build_args={**apt_proxy_build_args(), **npm_registry_build_args()}, on_progress=on_progress, client=client)
    timings["build_s"] = built.seconds
    timings["size_mb"] = round(built.size_bytes / 1e6, 1)
    return tag, timings


@pytest.fixture(scope="session")
def agent_image(docker_client) -> str:
    """Tag of the real agent image, built once per machine (per build-context hash)."""
    try:
        tag, timings = build_agent_image(docker_client)
    except Exception as exc:  # noqa: BLE001 - a missing tool or mirror: skip here, fail in CI
        message = f"cannot build the agent image: {type(exc).__name__}: {exc}"
        if require_docker():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    if timings:
        log(f"agent-image timings: {timings}")
    return tag


def main() -> int:
    import docker

    started = time.monotonic()
    try:
        tag, timings = build_agent_image(docker.from_env(timeout=60))
    except Exception as exc:  # noqa: BLE001 - one line for CI logs
        log(f"agent-image: failed: {type(exc).__name__}: {exc}")
        return 1
    figures = " ".join(f"{k}={v}" for k, v in timings.items()) or "cached"
    print(f"agent-image: {tag} ready in {time.monotonic() - started:.1f} s ({figures})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
