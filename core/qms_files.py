"""Where the QMS keeps its files (contract sections 2, 3, 4, 6, 7): the one module that spells them.

The scanner (:mod:`core.qms_state`), the watcher and the operations (:mod:`core.qms_ops`) take
their paths from here: ``QMS/.meta/<TYPE>/<ID>.json``, ``QMS/.audit/<TYPE>/<ID>.jsonl``,
``QMS/.archive/<folder>/<ID>-v<N.X>.md``, the ``<ID>-draft.md`` next to a document, and each
agent's ``.claude/users/<agent>/workspace/<ID>.md`` and ``inbox/``. (The dev server keeps its own
spelling on purpose: it is an independent oracle of the contract.)

A workspace is written by an untrusted agent, so its copies are read here without following
links: :func:`read_copy` walks from the project root to the workspace folder one component at a
time with ``O_NOFOLLOW``, ``lstat``s the copy before opening it (a fifo or device is never
opened), opens it ``O_NOFOLLOW | O_NONBLOCK`` and accepts only a regular file with one link whose
``fstat`` is the entry it ``lstat``ed. Anything else raises :class:`~core.errors.UnsafeCopy`
with the reason. The scanner lists entries with :func:`entry_problem` of their ``lstat``.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from core.errors import UnsafeCopy
from core.layout import inbox_dir, users_dir, workspace_dir

__all__ = [
    "META_DIR", "AUDIT_DIR", "ARCHIVE_DIR", "USERS_DIR", "DISPLACED_DIR", "NAMESPACES_FILE", "SOURCE_SUFFIX",
    "meta_path", "audit_path", "archive_path", "draft_path", "find_meta", "workspace_dir", "workspace_copy",
    "inbox_dir", "displaced_dir", "CopyRead", "read_copy", "read_entry", "entry_problem",
    "open_folder", "open_workspace",
]

META_DIR = ("QMS", ".meta")
AUDIT_DIR = ("QMS", ".audit")
ARCHIVE_DIR = ("QMS", ".archive")
USERS_DIR = (".claude", "users")
DISPLACED_DIR = (".qms-panel", "displaced")  # qms-panel's own: copies it moved aside (outside QMS/)
NAMESPACES_FILE = "sdlc_namespaces.json"  # QMS/.meta/sdlc_namespaces.json: not a document
SOURCE_SUFFIX = ".source.json"  # QMS/.meta/VR/<ID>.source.json: interactive source, not metadata

CHILD_TYPES = frozenset({"TP", "ER", "VAR", "ADD", "VR"})
_TOP_FOLDER_TYPES = frozenset({"CR", "INV"})
_FLAT_TYPES = frozenset({"SOP", "TEMPLATE"})


def meta_path(project_root: Path, type_dir: str, doc_id: str) -> Path:
    return Path(project_root).joinpath(*META_DIR, type_dir, f"{doc_id}.json")


def audit_path(project_root: Path, type_dir: str, doc_id: str) -> Path:
    return Path(project_root).joinpath(*AUDIT_DIR, type_dir, f"{doc_id}.jsonl")


def archive_path(project_root: Path, document: Path, version: str) -> Path:
    """``QMS/.archive/<the document's folder under QMS/>/<ID>-v<version>.md`` of ``document``."""
    qms = Path(project_root) / "QMS"
    doc_id = document.name.removesuffix(".md").removesuffix("-draft")
    return qms.joinpath(*ARCHIVE_DIR[1:], document.parent.relative_to(qms), f"{doc_id}-v{version}.md")


def workspace_copy(project_root: Path, agent: str, doc_id: str) -> Path:
    """``.claude/users/<agent>/workspace/<ID>.md``: the agent's checked-out copy."""
    return workspace_dir(project_root, agent) / f"{doc_id}.md"


def displaced_dir(project_root: Path, agent: str) -> Path:
    """Where qms-panel moves an agent's workspace copies aside (never inside QMS/ or a workspace)."""
    return Path(project_root).joinpath(*DISPLACED_DIR, users_dir(project_root, agent).name)


def find_meta(project_root: Path, doc_id: str) -> dict[str, Any] | None:
    """The ``QMS/.meta/<TYPE>/<ID>.json`` of ``doc_id`` (with ``doc_type`` filled in), or None."""
    meta_root = Path(project_root).joinpath(*META_DIR)
    try:
        folders = sorted(e.name for e in os.scandir(meta_root) if e.is_dir(follow_symlinks=False))
    except OSError:
        return None
    for folder in folders:
        try:
            data = json.loads(meta_path(project_root, folder, doc_id).read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            data.setdefault("doc_type", folder)
            return data
    return None


def _namespace_folder(qms: Path, namespace: str) -> str:
    try:
        spaces = json.loads((qms / ".meta" / NAMESPACES_FILE).read_text(encoding="utf-8"))
        return str(spaces[namespace]["path"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"SDLC-{namespace}"


def draft_path(project_root: Path, doc_id: str, doc_type: str | None) -> Path | None:
    """Where ``ID-draft.md`` lives (contract 2), or None if it is not there."""
    qms = Path(project_root) / "QMS"
    name = f"{doc_id}-draft.md"
    parts = doc_id.split("-")
    candidates: list[Path] = []
    if doc_type in _FLAT_TYPES:
        candidates.append(qms / doc_type / name)
    elif doc_type in _TOP_FOLDER_TYPES:
        candidates.append(qms / doc_type / doc_id / name)
    elif doc_type in CHILD_TYPES and len(parts) > 2 and parts[0] in _TOP_FOLDER_TYPES:
        candidates.append(qms / parts[0] / f"{parts[0]}-{parts[1]}" / name)
    elif doc_type and doc_type.endswith(("-RS", "-RTM")):
        candidates.append(qms / _namespace_folder(qms, doc_type.rsplit("-", 1)[0]) / name)
    for path in candidates:
        if path.is_file():
            return path
    try:
        found = [p for p in qms.rglob(name) if not any(part.startswith(".") for part in p.relative_to(qms).parts)]
    except OSError:
        return None
    return found[0] if len(found) == 1 else None


# --- workspace copies, read without following links ---------------------------------------------


class CopyRead(NamedTuple):
    """A workspace copy read safely: its bytes and modification time (UTC)."""

    data: bytes
    mtime: datetime


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def open_workspace(project_root: Path, agent: str) -> int | None:
    """:func:`open_folder` of the agent's workspace folder."""
    return open_folder(project_root, workspace_dir(project_root, agent))


def open_folder(project_root: Path, folder: Path) -> int | None:
    """A file descriptor of ``folder`` (under the project root), reached without following any
    link below the root; None if a folder on the way does not exist. UnsafeCopy if one is a link
    or not a folder. The caller closes it."""
    root = Path(project_root)
    rel = Path(folder).relative_to(root).parts
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for i, part in enumerate(rel):
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                where = "/".join(rel[: i + 1])
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # Linux says ENOTDIR for a link, too
                    try:
                        link = stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
                    except OSError:
                        link = exc.errno == errno.ELOOP
                    kind = "a symlink" if link else "not a folder"
                    raise UnsafeCopy(f"{where} is {kind}: qms-panel reads agents' folders only through "
                                     "real folders") from None
                raise UnsafeCopy(f"cannot open {where} ({exc.strerror or exc})") from None
            os.close(fd)
            fd = nxt
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)


def entry_problem(st: os.stat_result) -> str | None:
    """Why an ``lstat`` of a workspace entry is not a copy qms-panel may read, or None."""
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return "is a symlink"
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    if st.st_nlink != 1:
        return f"is a hard link ({st.st_nlink} names for one file)"
    return None


def _unsafe(rel: str, problem: str) -> UnsafeCopy:
    what = f"{rel} {problem}".rstrip()
    return UnsafeCopy(f"{what}: only a regular file in the agent's workspace folder is checked in; "
                      "nothing was sent to the server")


def read_entry(dir_fd: int, name: str, *, limit: int | None = None) -> CopyRead | None:
    """The bytes (the first ``limit``) of the entry ``name`` of the folder ``dir_fd``, read without
    following links and without opening anything but a regular, singly linked file; None if absent.
    Raises UnsafeCopy (detail: ``name`` and the problem) for anything else."""
    try:
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnsafeCopy(f"{name} cannot be read ({exc.strerror or exc})") from None
    if problem := entry_problem(before):
        raise UnsafeCopy(f"{name} {problem}")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnsafeCopy(f"{name} is a symlink" if exc.errno == errno.ELOOP
                         else f"{name} cannot be opened ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise UnsafeCopy(f"{name} was replaced while it was opened")
        if problem := entry_problem(st):
            raise UnsafeCopy(f"{name} {problem}")
        chunks = []
        left = limit if limit is not None else -1
        while left and (chunk := os.read(fd, 1 << 20 if left < 0 else min(left, 1 << 20))):
            chunks.append(chunk)
            left = left - len(chunk) if left > 0 else left
    except OSError as exc:
        raise UnsafeCopy(f"{name} cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return CopyRead(b"".join(chunks), datetime.fromtimestamp(st.st_mtime, UTC))


def read_copy(project_root: Path, agent: str, doc_id: str) -> CopyRead | None:
    """The bytes of ``agent``'s copy of ``doc_id``, read without following links; None if absent.

    Raises UnsafeCopy for anything but a regular, singly linked file in the real workspace folder.
    """
    path = workspace_copy(project_root, agent, doc_id)
    ws = open_workspace(project_root, agent)
    if ws is None:
        return None
    try:
        return read_entry(ws, path.name)
    except UnsafeCopy as err:
        raise _unsafe(str(path.parent.relative_to(project_root) / err.detail), "") from None
    finally:
        os.close(ws)
