"""Live QMS activity and state changes, from the project's files.

:class:`QmsWatcher` watches ``QMS/.meta``, ``QMS/.audit`` and ``.claude/users`` with watchfiles
(inotify; bursts are coalesced by watchfiles' debounce) and yields typed events:

- :class:`ActivityEvent` for every new line appended to an audit file (``QMS/.audit/**.jsonl``):
  files are tailed from their end at start, with an offset per file. A last line still being
  written is emitted once its newline arrives; a file that shrinks or is replaced (new inode)
  is read again from the start; a new file from its start.
- :class:`StateChanged` once per burst, naming the changed paths, their areas (``meta``,
  ``audit``, ``workspace``, ``inbox``) and agents. It says *what* to re-read, not what is there:
  the QMS board passes ``paths`` to :func:`core.qms_state.rescan_paths`, which re-reads only those
  files. The watcher itself never re-scans: one owner of the state (:class:`core.qms_board.QmsBoard`), one
  reader of the files per change, no second copy of the state to keep in step.
- :class:`~core.qms_state.ScanWarning` for an audit line that is not valid JSON, or a file that
  cannot be read.

A watched folder missing at start (a project whose ``.claude/users`` is made later) is waited
for: the nearest folder above it that exists is watched (not recursively), and when the folder
appears the watcher sets its watches up again and reports a StateChanged for everything already
in it. A watched folder that goes away is waited for the same way. Either way a StateChanged
names the folder itself: the state is due for a full :func:`~core.qms_state.scan`.

A watcher runs once: ``events()`` again on a watcher that has run raises
:class:`~core.errors.FeedEnded` (make a new one; :class:`core.qms_board.QmsBoard` takes a
factory). To miss nothing, scan after the watcher is ready: start ``events()``, ``await
watcher.wait_ready()``, then :func:`~core.qms_state.scan`, then apply each StateChanged.
Read-only on the project. Needs asyncio (the ready signal uses the running loop).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, NamedTuple

import anyio
from pydantic import BaseModel, ConfigDict
from watchfiles import Change, awatch

from core.errors import FeedEnded, ProjectError
from core.qms_state import AUDIT_DIR, META_DIR, USERS_DIR, ScanWarning, audit_record, classify_path


class ActivityEvent(BaseModel):
    """One new audit line: who did what to which document, when."""

    model_config = ConfigDict(frozen=True)

    time: datetime | None  # UTC
    user: str | None
    event: str  # CHECKOUT, CHECKIN, CREATE, ... (SEED for the init seed's lines)
    doc_id: str
    doc_type: str  # the audit folder: the type key
    version: str | None
    details: dict[str, Any]
    raw: str
    path: Path


class StateChanged(BaseModel):
    """Files in these areas changed: re-read them (:func:`core.qms_state.rescan_paths`)."""

    model_config = ConfigDict(frozen=True)

    paths: list[Path]
    areas: frozenset[str]
    agents: frozenset[str]


QmsEvent = ActivityEvent | StateChanged | ScanWarning

_NO_TIME = datetime.max.replace(tzinfo=UTC)  # lines without a time sort last


class _Pos(NamedTuple):
    ident: tuple[int, int]  # (st_dev, st_ino): a new inode is a new file
    offset: int  # end of the last complete line read
    aligned: bool  # False: offset is the file's size at start, maybe inside a line being written


class AuditTail:
    """Offsets into the audit files; :meth:`read` returns the complete lines added since."""

    def __init__(self, audit_root: Path) -> None:
        self.audit_root = Path(audit_root)
        self._pos: dict[str, _Pos] = {}

    def prime(self) -> None:
        """Start at the end of every existing audit file."""
        for type_dir in _subdirs(self.audit_root):
            for entry in _jsonl(type_dir):
                try:
                    st = entry.stat()
                except OSError:
                    continue
                self._pos[entry.path] = _Pos((st.st_dev, st.st_ino), st.st_size, False)

    def forget(self, path: Path) -> None:
        self._pos.pop(str(path), None)

    def read(self, path: Path) -> list[ActivityEvent | ScanWarning]:
        key = str(path)
        try:
            fh = open(key, "rb")
        except FileNotFoundError:
            self.forget(path)
            return []
        except OSError as exc:
            return [ScanWarning(path=Path(path), reason=f"cannot read: {exc.strerror or exc}")]
        with fh:
            st = os.fstat(fh.fileno())
            ident = (st.st_dev, st.st_ino)
            pos = self._pos.get(key)
            if pos is None or pos.ident != ident or st.st_size < pos.offset:
                offset = 0  # new, replaced or truncated: everything in it is new
            else:
                offset = pos.offset if pos.aligned else _line_start(fh, pos.offset)
            fh.seek(offset)
            data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._pos[key] = _Pos(ident, offset + len(complete), True)
        path = Path(path)
        return [_activity(path, line) for line in complete.split(b"\n") if line.strip()]


class QmsWatcher:
    """Typed events from the project's QMS files; see the module docstring.

    ``agents``: report workspace and inbox changes of these agents only (None: every folder
    under ``.claude/users``). ``debounce_ms``: the longest a burst is gathered before it is
    reported; ``step_ms``: the quiet time that ends a burst earlier.
    """

    def __init__(self, project_root: Path, *, agents: Iterable[str] | None = None,
                 debounce_ms: int = 400, step_ms: int = 50, force_polling: bool | None = None) -> None:
        self.project_root = Path(project_root).resolve()
        self.agents = frozenset(agents) if agents is not None else None
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self.force_polling = force_polling
        self._tail = AuditTail(self.project_root.joinpath(*AUDIT_DIR))
        self._stop = threading.Event()
        self._ready: asyncio.Event | None = None
        self._used = False

    def stop(self) -> None:
        """End ``events()`` within one step (safe from any thread)."""
        self._stop.set()

    async def wait_ready(self) -> None:
        """Return once the watches are in place (changes from then on are seen), or once
        ``events()`` has ended without getting there."""
        await self._ready_event().wait()

    def _ready_event(self) -> asyncio.Event:
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready

    def watched(self) -> list[Path]:
        """The folders watched (recursively) now: those of QMS/.meta, QMS/.audit, .claude/users that exist."""
        return self._places()[0]

    def roots(self) -> list[Path]:
        """The three folders watched when they exist (a StateChanged naming one: scan in full)."""
        return [self.project_root.joinpath(*part) for part in (META_DIR, AUDIT_DIR, USERS_DIR)]

    def _areas(self, root: Path) -> tuple[str, ...]:
        meta, audit, _ = self.roots()
        return ("meta",) if root == meta else ("audit",) if root == audit else ("workspace", "inbox")

    def _places(self) -> _Places:
        """The folders that exist, and for those that do not the nearest existing folder above."""
        root = self.project_root
        targets, parents, idents = [], set(), []
        for target in self.roots():
            try:
                st = target.stat()
            except OSError:
                st = None
            if st is not None and stat.S_ISDIR(st.st_mode):
                targets.append(target)
                idents.append((st.st_dev, st.st_ino))  # a folder made again is a new one to watch
                continue
            parent = target.parent
            while parent != root and not parent.is_dir():
                parent = parent.parent
            parents.add(parent)
        return _Places(targets, sorted(parents), idents)

    async def events(self) -> AsyncIterator[QmsEvent]:
        """The events, until :meth:`stop`, cancellation, or the consumer closes the iterator.
        A watcher runs once: a second call raises FeedEnded."""
        if self._used:
            raise FeedEnded(f"a watcher of {self.project_root} runs once, and this one has run; make a new one")
        self._used = True
        try:
            if not (self.project_root / "QMS").is_dir():
                raise ProjectError(f"{self.project_root} has no QMS/ folder to watch (is it the project root?)")
            await anyio.to_thread.run_sync(self._tail.prime)
            async with _Watches(self) as watches:
                known: _Places | None = None  # the folders announced last
                while not self._stop.is_set():
                    places = self._places()
                    await watches.follow(places)
                    if self._places() != places:
                        continue  # a folder came or went while the watches were set up: again
                    moved = [] if known is None else places.moved_since(known)
                    known = places
                    self._ready_event().set()
                    if moved:  # a watched folder itself came or went: a full scan is due
                        added = {(Change.added, str(p)) for p in moved if p in places.targets}
                        for event in await anyio.to_thread.run_sync(self._digest, added):
                            yield event
                        yield StateChanged(paths=moved, areas=frozenset(a for p in moved for a in self._areas(p)),
                                           agents=frozenset())
                    while (changes := await watches.next()) is not None:
                        for event in await anyio.to_thread.run_sync(self._digest, changes):
                            yield event
                        if self._places() != places:
                            break
                    else:
                        await asyncio.sleep(self.step_ms / 1000)  # stopped, or a folder went: look again
        finally:
            self._stop.set()  # ends awatch's watching threads however we leave
            self._ready_event().set()

    def _digest(self, changes: set[tuple[Change, str]]) -> list[QmsEvent]:
        """One burst of file changes -> activity events (time order), warnings, one StateChanged."""
        audit_files: set[Path] = set()
        paths: set[Path] = set()
        areas: set[str] = set()
        agents: set[str] = set()
        for change, path in _with_new_folders_contents(changes):
            for area, agent in classify_path(self.project_root, path):
                if area == "audit" and path.suffix == ".jsonl":
                    if change == Change.deleted:
                        self._tail.forget(path)
                    else:
                        audit_files.add(path)
                if agent is not None and self.agents is not None and agent not in self.agents:
                    continue
                paths.add(path)
                areas.add(area)
                if agent is not None:
                    agents.add(agent)
        per_file = [self._tail.read(path) for path in sorted(audit_files)]
        # each file's lines in file order; files interleaved by time
        activity = heapq.merge(*([e for e in read if isinstance(e, ActivityEvent)] for read in per_file),
                               key=lambda e: e.time or _NO_TIME)
        out: list[QmsEvent] = [*activity, *(e for read in per_file for e in read if isinstance(e, ScanWarning))]
        if paths:
            out.append(StateChanged(paths=sorted(paths), areas=frozenset(areas), agents=frozenset(agents)))
        return out


class _Places(NamedTuple):
    targets: list[Path]  # watched recursively
    parents: list[Path]  # watched for a missing target to appear
    idents: list[tuple[int, int]]  # (st_dev, st_ino) of each target

    def moved_since(self, before: _Places) -> list[Path]:
        """The watched folders that came, went, or were made again since ``before``."""
        old, new = set(zip(before.targets, before.idents)), set(zip(self.targets, self.idents))
        return sorted({path for path, _ in old ^ new})


class _Stop:
    """The stop signal of one set of watches: set by a new set of places, or by the watcher's stop."""

    def __init__(self, watcher_stop: threading.Event) -> None:
        self.watcher_stop = watcher_stop
        self.own = threading.Event()

    def is_set(self) -> bool:
        return self.own.is_set() or self.watcher_stop.is_set()

    def set(self) -> None:
        self.own.set()


class _Watches:
    """The watches of one watcher run, merged: one awatch per existing folder (recursive) and one
    per parent of a missing folder (not recursive). :meth:`follow` changes only the watches that
    must change, so changes in the others are never lost; leaving the ``async with`` ends all."""

    def __init__(self, watcher: QmsWatcher) -> None:
        self.watcher = watcher
        self.queue: asyncio.Queue[set[tuple[Change, str]] | BaseException | None] = asyncio.Queue()
        self.running: dict[tuple[Path, tuple[int, int] | None], tuple[asyncio.Task, _Stop]] = {}

    async def __aenter__(self) -> _Watches:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._end(list(self.running))

    async def follow(self, places: _Places) -> None:
        """Watch exactly ``places``: end the watches of folders gone, start those of new ones."""
        wanted = {**{(t, ident): True for t, ident in zip(places.targets, places.idents)},
                  **{(p, None): False for p in places.parents}}
        await self._end([key for key in self.running if key not in wanted])
        started = []
        for key, recursive in wanted.items():
            if key not in self.running:
                stop, up = _Stop(self.watcher._stop), asyncio.Event()
                self.running[key] = (asyncio.create_task(self._pump(key[0], recursive, stop, up)), stop)
                started.append(up)
        for up in started:
            await up.wait()

    async def next(self) -> set[tuple[Change, str]] | None:
        """The next burst of changes; None when the watcher was stopped or a folder went."""
        item = await self.queue.get()
        while isinstance(item, set) and not self.queue.empty():  # other folders' bursts, already in
            more = self.queue.get_nowait()
            if not isinstance(more, set):
                self.queue.put_nowait(more)  # hand it out next time
                break
            item = item | more
        if isinstance(item, BaseException):
            raise item
        return item

    async def _end(self, keys: list) -> None:
        ending = [self.running.pop(key) for key in keys]
        for task, stop in ending:
            stop.set()
            task.cancel()
        await asyncio.gather(*(task for task, _ in ending), return_exceptions=True)

    async def _pump(self, path: Path, recursive: bool, stop: _Stop, up: asyncio.Event) -> None:
        w = self.watcher
        try:
            changes_stream = awatch(path, stop_event=stop, watch_filter=None, debounce=w.debounce_ms,
                                    step=w.step_ms, force_polling=w.force_polling, recursive=recursive)
            # awatch sets its watches up before its first suspension: once the loop runs again, they exist.
            asyncio.get_running_loop().call_soon(up.set)
            async for changes in changes_stream:
                self.queue.put_nowait(changes)
            if w._stop.is_set():
                self.queue.put_nowait(None)
        except FileNotFoundError:
            self.queue.put_nowait(None)  # it went between looking and watching: look again
        except Exception as exc:  # noqa: BLE001 - handed to the reader
            self.queue.put_nowait(exc)
        finally:
            up.set()


def _activity(path: Path, line: bytes) -> ActivityEvent | ScanWarning:
    text = line.decode("utf-8", "replace").strip()
    try:
        rec = json.loads(text)
    except ValueError as exc:
        return ScanWarning(path=path, reason=f"audit line is not valid JSON: {exc}: {text[:80]}")
    if not isinstance(rec, dict):
        return ScanWarning(path=path, reason=f"audit line is not a JSON object: {text[:80]}")
    record = audit_record(rec)
    return ActivityEvent(
        time=record.time, user=record.user, event=record.event, doc_id=path.stem, doc_type=path.parent.name,
        version=record.version, details=record.details, raw=text, path=path,
    )


def _with_new_folders_contents(changes: set[tuple[Change, str]]) -> list[tuple[Change, Path]]:
    """The changes, plus every file inside a folder that appeared: files written right after
    their folder was made can beat the watch the watcher puts on that folder."""
    out = []
    for change, raw in changes:
        out.append((change, Path(raw)))
        if change == Change.added and os.path.isdir(raw):
            out.extend((Change.added, Path(folder, name)) for folder, _, names in os.walk(raw) for name in names)
    return out


def _line_start(fh, offset: int, block: int = 4096) -> int:
    """Just after the last newline before ``offset`` (0 if none): where a line that was still
    being written when ``offset`` was taken starts."""
    end = offset
    while end > 0:
        start = max(0, end - block)
        fh.seek(start)
        cut = fh.read(end - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def _subdirs(folder: Path | str) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return [e.path for e in entries if e.is_dir()]
    except OSError:
        return []


def _jsonl(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return [e for e in entries if e.name.endswith(".jsonl") and e.is_file()]
    except OSError:
        return []
