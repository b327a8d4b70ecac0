"""Building the agent image (``image/Dockerfile``, tag ``claude-agent``) through the Docker SDK.

The build context is assembled in memory: the Dockerfile, the entrypoint, ``files/`` and the
CA certificates to trust. Those come from ``image/certs/*.crt`` (git-ignored) and from any
extra bundle the caller names (``SSL_CERT_FILE`` behind a TLS-inspecting proxy); bundles are
split into one certificate per file, and only ``CERTIFICATE`` blocks are ever copied, so a key
that strays into the folder never reaches a layer.

The build runs with host networking so apt and npm reach the mirrors the host reaches; proxy
variables of the environment are handed over as Docker's predefined build arguments, which
stay out of the image's history.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel

from core.errors import EnginePermissionDenied, EngineUnreachable, ImageBuildFailed
from core.settings import Settings

IMAGE_DIR = Path(__file__).resolve().parent.parent / "image"
DEFAULT_TAG: str = Settings.model_fields["image"].default
DEFAULT_MCP_URL: str = Settings.model_fields["container_mcp_url"].default
DEFAULT_BASE_IMAGE = "debian:bookworm-slim"
TMUX_SESSION = "agent"  # the entrypoint's session; `qms-panel attach` and the panel's t join it
CONTEXT_FILES = ("Dockerfile", "entrypoint.sh")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "ftp_proxy", "all_proxy")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TELLING = re.compile(r"(?i)^E: |curl: \(\d+\)|npm ERR!|\berror\b")  # the line that names the failure
_HINTING = re.compile(r"(?i)fail|denied|not found|unable|cannot")
_TLS_TROUBLE = re.compile(r"(?i)curl: \(60\)|certificate (problem|verif)|self[- ]signed cert|local issuer|"
                          r"SELF_SIGNED_CERT|UNABLE_TO_(GET|VERIFY)")
_BUILDER_CHATTER = re.compile(r"^ ---> |^Removing intermediate container |^Successfully (built|tagged) ")
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.S)

Progress = Callable[[str], None]


def attach_argv(container: str, docker: str = "docker") -> list[str]:
    """The command that joins ``container``'s agent session in this terminal (``docker exec -it ... tmux
    attach``): what ``qms-panel attach`` runs and what the panel's ``t`` runs while it is suspended."""
    return [docker, "exec", "-it", container, "tmux", "attach", "-t", TMUX_SESSION]


class BuiltImage(BaseModel):
    """What ``build_image`` made."""

    tag: str
    image_id: str
    base_image: str
    mcp_url: str
    ca_certificates: int  # extra certificates trusted on top of the base's store
    size_bytes: int
    seconds: float


def split_certificates(data: bytes) -> list[bytes]:
    """The PEM ``CERTIFICATE`` blocks of ``data``, each normalised to LF line ends."""
    return [c.replace(b"\r\n", b"\n") + b"\n" for c in _PEM_CERT.findall(data)]


def pem_certificates(path: Path) -> list[bytes]:
    """The PEM certificates in ``path`` (one file or a bundle); ImageBuildFailed if none."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageBuildFailed(f"cannot read CA certificate file {path} ({exc.strerror or exc})") from None
    certs = split_certificates(data)
    if not certs:
        raise ImageBuildFailed(f"{path} holds no PEM certificate (apt and npm need PEM, "
                               "'-----BEGIN CERTIFICATE-----')")
    return certs


def certificate_files(context_dir: Path = IMAGE_DIR, extra: Iterable[Path] = ()) -> list[Path]:
    """The certificate sources of a build: ``certs/*.crt`` of the context, then ``extra``."""
    return sorted((Path(context_dir) / "certs").glob("*.crt")) + [Path(p) for p in extra]


def build_context(context_dir: Path = IMAGE_DIR, ca_files: Iterable[Path] = ()) -> tuple[bytes, int]:
    """The build context as a tar, and how many distinct CA certificates it carries."""
    root = Path(context_dir)
    if not (root / "Dockerfile").is_file():
        raise ImageBuildFailed(f"no Dockerfile in {root} (the image/ folder of a qms-panel checkout)")
    certs = list(dict.fromkeys(c for f in ca_files for c in pem_certificates(f)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))

        try:
            for path in [root / n for n in CONTEXT_FILES] + sorted((root / "files").rglob("*")):
                if path.is_file():
                    mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                    add(path.relative_to(root).as_posix(), path.read_bytes(), mode)
        except OSError as exc:
            raise ImageBuildFailed(f"cannot read the build context in {root} ({exc})") from None
        certs_dir = tarfile.TarInfo("certs")
        certs_dir.type, certs_dir.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(certs_dir)
        for i, cert in enumerate(certs, 1):
            add(f"certs/qms-panel-{i:03d}.crt", cert)
    return buf.getvalue(), len(certs)


def proxy_build_args(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Proxy variables of ``environ`` (either case), as Docker's predefined build arguments."""
    args: dict[str, str] = {}
    for name in PROXY_VARIABLES:
        for key in (name, name.upper()):
            if environ.get(key):
                args[key] = environ[key]
    return args


def _connect(timeout: int = 60):
    """A docker-py client for the engine of the environment (``DOCKER_HOST`` or the socket)."""
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise _engine_error(exc) from None


def build_image(
    *,
    tag: str = DEFAULT_TAG,
    base_image: str = DEFAULT_BASE_IMAGE,
    mcp_url: str = DEFAULT_MCP_URL,
    ca_files: Iterable[Path] = (),
    context_dir: Path = IMAGE_DIR,
    build_args: Mapping[str, str] | None = None,
    network_mode: str = "host",
    on_progress: Progress | None = None,
    client=None,
) -> BuiltImage:
    """Build the agent image and tag it; ``on_progress`` gets each line of the build output.

    ``ca_files`` are trusted in addition to ``certs/*.crt`` of the context. Raises
    ImageBuildFailed (with the failing step and its last output) or EngineUnreachable.
    """
    import docker

    context, n_certs = build_context(context_dir, certificate_files(context_dir, ca_files))
    args = {**proxy_build_args(), **(build_args or {}), "BASE_IMAGE": base_image, "MCP_URL": mcp_url}
    client = client or _connect()
    emit = on_progress or (lambda line: None)
    started = time.monotonic()
    step, tail, image_id, pending = "", [], None, ""

    def feed(text: str) -> None:  # the engine streams partial lines; emit whole ones
        nonlocal pending, step, tail
        pending += _ANSI.sub("", text)
        *complete, pending = re.split(r"\r?\n|\r", pending)
        for line in complete:
            if not line.strip():
                continue
            if line.startswith("Step "):
                step, tail = line, []
            elif not _BUILDER_CHATTER.match(line):
                tail = (tail + [line])[-20:]
            emit(line)

    try:
        chunks = client.api.build(fileobj=io.BytesIO(context), custom_context=True, tag=tag, buildargs=args,
                                  network_mode=network_mode, rm=True, forcerm=True, decode=True,
                                  labels={"qms-panel.base-image": base_image})
        for chunk in chunks:
            if "error" in chunk:
                feed("\n")
                raise ImageBuildFailed(_failure(step, chunk["error"], tail, base_image))
            feed(chunk.get("stream") or _status_line(chunk))
            image_id = (chunk.get("aux") or {}).get("ID", image_id)
        feed("\n")
        image = client.images.get(tag)
    except docker.errors.APIError as exc:
        raise ImageBuildFailed(_failure(step, exc.explanation or str(exc), tail, base_image)) from None
    except docker.errors.DockerException as exc:
        raise _engine_error(exc) from None
    except OSError as exc:  # the connection dropped mid-build
        raise EngineUnreachable(f"lost the engine during the build ({exc})") from None
    return BuiltImage(tag=tag, image_id=image_id or image.id, base_image=base_image, mcp_url=mcp_url,
                      ca_certificates=n_certs, size_bytes=image.attrs.get("Size", 0),
                      seconds=round(time.monotonic() - started, 1))


def _status_line(chunk: dict) -> str:
    status = chunk.get("status")
    if not status:
        return ""
    return f"{status} {chunk.get('id', '')} {chunk.get('progress', '')}".rstrip() + "\n"


def _failure(step: str, error: str, tail: list[str], base_image: str) -> str:
    """One line: the step (its instruction shortened), the error, and the step's last output."""
    number, _, instruction = step.partition(" : ")
    instruction = " ".join(instruction.split())
    if instruction.upper().startswith("FROM"):
        return (f"{number} (FROM): base image {base_image!r} is not on this engine and could not be "
                f"pulled ({' '.join(error.split())}); import one or pass --base-image")
    if len(instruction) > 60:
        instruction = instruction[:57] + "..."
    where = f"{number} ({instruction}): " if step else ""
    m = re.match(r"The command .* returned a non-zero code: (\d+)", " ".join(error.split()))
    error = f"exited with code {m.group(1)}" if m else " ".join(error.split())
    telling = ([line for line in tail if _TELLING.search(line)] or [line for line in tail if _HINTING.search(line)]
               or tail)
    last = f"; {' '.join(telling[-1].split())}" if telling else ""
    hint = ""
    if any(_TLS_TROUBLE.search(line) for line in tail):
        hint = " (behind a TLS-inspecting proxy? put its CA in image/certs/ or pass --ca-cert)"
    return f"{where}{error}{last}{hint}"


def _engine_error(exc: Exception):
    text = str(exc)
    if "Permission denied" in text or "PermissionError" in text:
        return EnginePermissionDenied(f"{text} (add the user to the docker group or set DOCKER_HOST)")
    return EngineUnreachable(f"{text} (is dockerd running? DOCKER_HOST={os.environ.get('DOCKER_HOST', 'unset')})")
