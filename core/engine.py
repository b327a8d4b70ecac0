"""The Docker engine: a client from the standard environment, its name, its errors, its streams.

The endpoint comes from the same places the ``docker`` command reads: ``DOCKER_HOST`` (with
``DOCKER_TLS_VERIFY`` / ``DOCKER_CERT_PATH``), else the current context (``DOCKER_CONTEXT`` or
``currentContext`` in the Docker config), else the local socket. So the panel drives an engine on
another machine (``ssh://`` or ``tcp://`` with TLS) exactly as ``docker`` would.

Every docker-py, requests and socket error is translated here into the
:class:`~core.errors.EngineError` family; :class:`ThreadedStream` turns a blocking SDK stream
(events, logs) into a cancellable async iterator. Only :mod:`core.containers` and
:mod:`core.engine_events` use this module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from core.errors import (
    ContainerNotRunning,
    ContainerNotFound,
    EngineError,
    EnginePermissionDenied,
    EngineUnreachable,
    ImageMissing,
    MountSourceMissing,
    NameConflict,
    QmsPanelError,
)
from core.lazy_import import lazy_module

# imported on first use (the panel draws before they load): see core/lazy_import.py
docker = lazy_module("docker")
requests = lazy_module("requests")

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
CLIENT_TIMEOUT = 60  # seconds; stop/restart add their own grace period on top


@dataclass(frozen=True)
class EngineTarget:
    """Where a client connects, and which setting said so."""

    base_url: str
    tls: Any = None
    source: str = "default socket"

    def client(self, *, timeout: int = CLIENT_TIMEOUT) -> docker.DockerClient:
        """A connected client (the SDK asks the engine for its API version right away)."""
        ssh_without_paramiko = self.base_url.startswith("ssh://") and not _has_paramiko()
        with engine_errors(self.base_url):
            return docker.DockerClient(base_url=self.base_url, tls=self.tls, timeout=timeout,
                                       use_ssh_client=ssh_without_paramiko)


def target_from_env(environ: dict[str, str] | None = None) -> EngineTarget:
    """The engine the ``docker`` command would talk to, from ``environ`` (default: os.environ)."""
    env = os.environ if environ is None else environ
    if env.get("DOCKER_HOST"):
        try:
            params = docker.utils.kwargs_from_env(environment=env)
        except docker.errors.DockerException as exc:
            raise EngineError(f"DOCKER_HOST / DOCKER_CERT_PATH: {exc}", title="Bad Docker TLS settings") from None
        return EngineTarget(params["base_url"], params.get("tls"), "DOCKER_HOST")
    from docker.context import ContextAPI
    from docker.context.config import get_current_context_name

    name = env.get("DOCKER_CONTEXT") or get_current_context_name()
    if name == "default":
        return EngineTarget(DEFAULT_SOCKET)
    try:
        ctx = ContextAPI.get_context(name)
    except docker.errors.DockerException as exc:
        raise EngineUnreachable(f"Docker context {name!r} cannot be read ({exc})") from None
    if ctx is None or not ctx.Host:
        raise EngineUnreachable(f"Docker context {name!r} does not exist or names no engine "
                                "(see `docker context ls`)")
    return EngineTarget(ctx.Host, ctx.TLSConfig, f"context {name}")


def endpoint_of(client: docker.DockerClient) -> str:
    """The engine a client talks to, as an operator would write it (``unix:///var/run/docker.sock``)."""
    adapter = getattr(client.api, "_custom_adapter", None)
    path = getattr(adapter, "socket_path", None)
    if path:
        return f"unix://{path}"
    host = getattr(adapter, "ssh_host", None)
    if host:
        return f"ssh://{host}"
    return str(client.api.base_url).replace("http+docker://", "")


def _has_paramiko() -> bool:
    try:
        import paramiko  # noqa: F401
    except ImportError:
        return False
    return True


# --- error translation ------------------------------------------------------------------


def _os_error(exc: BaseException | None, seen: set[int] | None = None) -> OSError | None:
    """The first OSError inside an exception chain (requests and urllib3 wrap it deeply)."""
    seen = set() if seen is None else seen
    if exc is None or id(exc) in seen:
        return None
    seen.add(id(exc))
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc
    inner = [getattr(exc, "reason", None), exc.__cause__, exc.__context__]
    inner += [a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)]
    for candidate in inner:
        if isinstance(candidate, BaseException):
            found = _os_error(candidate, seen)
            if found is not None:
                return found
    return None


def _connection_error(exc: BaseException, endpoint: str) -> QmsPanelError:
    where = endpoint.removeprefix("unix://") if endpoint.startswith("unix://") else endpoint
    os_err = _os_error(exc)
    if isinstance(exc, (requests.exceptions.Timeout, socket.timeout, TimeoutError)):
        return EngineUnreachable(f"the engine at {endpoint} did not answer in time")
    if isinstance(os_err, PermissionError) or (os_err is not None and os_err.errno == errno.EACCES):
        return EnginePermissionDenied(
            f"cannot open {where}: permission denied (add your user to the 'docker' group and log in again, "
            "or point DOCKER_HOST / the Docker context at an engine you may use)")
    if isinstance(os_err, FileNotFoundError):
        return EngineUnreachable(f"no socket at {where} (is dockerd running? on this machine: bash .ci/docker-up)")
    if isinstance(os_err, ConnectionRefusedError):
        return EngineUnreachable(f"nothing answers at {where} (is dockerd running?)")
    if os_err is not None:
        return EngineUnreachable(f"cannot talk to {where}: {os_err.strerror or os_err}")
    return EngineUnreachable(f"cannot talk to {where}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def translate(exc: BaseException, endpoint: str) -> QmsPanelError:
    """The operator-readable error for a docker-py / requests / socket exception."""
    if isinstance(exc, QmsPanelError):
        return exc
    if isinstance(exc, docker.errors.APIError):
        explanation = str(exc.explanation or exc).strip()
        low = explanation.lower()
        status = exc.status_code
        if "bind source path does not exist" in low or ("mount" in low and "no such file" in low):
            return MountSourceMissing(explanation)
        if isinstance(exc, docker.errors.ImageNotFound):
            return ImageMissing(f"{explanation} (on the engine at {endpoint})")
        if status == 404:
            return ContainerNotFound(explanation)
        if status == 409 and any(w in low for w in ("is not running", "is paused", "is restarting")):
            return ContainerNotRunning(explanation)
        if status == 409 and ("already in use" in low or ("conflict" in low and "name" in low)):
            return NameConflict(explanation)
        return EngineError(f"the engine at {endpoint} refused: {explanation}")
    if isinstance(exc, docker.errors.TLSParameterError):
        return EngineError(str(exc), title="Bad Docker TLS settings")
    if isinstance(exc, (requests.exceptions.RequestException, OSError)):
        return _connection_error(exc, endpoint)
    if isinstance(exc, docker.errors.DockerException):
        # "Error while fetching server API version: ..." wraps the connection error.
        if _os_error(exc) is not None or isinstance(exc.__cause__, requests.exceptions.RequestException):
            return _connection_error(exc, endpoint)
        return EngineError(f"{endpoint}: {_short(exc)}")
    return EngineError(f"{endpoint}: {type(exc).__name__}: {_short(exc)}")


@contextmanager
def engine_errors(endpoint: str) -> Iterator[None]:
    """Translate whatever the SDK raises inside the block (QmsPanelErrors pass through)."""
    try:
        yield
    except QmsPanelError:
        raise
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise translate(exc, endpoint) from None


# --- blocking streams as async iterators ------------------------------------------------

T = TypeVar("T")
OPENED = object()  # yielded first by a ThreadedStream made with mark_open=True
_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except Exception:  # noqa: BLE001 - closing a dead stream may fail in many ways; it is closed either way
        pass


class ThreadedStream(Generic[T]):
    """A blocking SDK stream read in a daemon thread, handed to asyncio as an async iterator.

    ``open_stream`` runs in the thread and returns a closable stream (a docker
    ``CancellableStream``); ``transform`` maps its raw items (e.g. bytes to lines) in the thread.
    A bounded queue gives back-pressure. :meth:`close` (or cancelling the consumer inside
    ``async with``) closes the underlying stream, which ends the thread. Errors raised in the
    thread are re-raised by ``__anext__``.
    """

    def __init__(self, open_stream: Callable[[], Any], *,
                 transform: Callable[[Iterable[Any]], Iterable[T]] | None = None, mark_open: bool = False,
                 buffer: int = 256, name: str = "docker-stream") -> None:
        self._open = open_stream
        self._transform = transform
        self._mark_open = mark_open
        self._queue: asyncio.Queue = asyncio.Queue(buffer)
        self._stop = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._name = name

    def _put(self, item: Any) -> bool:
        assert self._loop is not None
        try:
            fut = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        except RuntimeError:  # the loop is closed
            return False
        while True:
            try:
                fut.result(timeout=0.25)
                return True
            except concurrent.futures.TimeoutError:
                if self._stop.is_set():
                    fut.cancel()
                    return False
            except concurrent.futures.CancelledError:
                return False

    def _work(self) -> None:
        try:
            stream = self._open()
            self._stream = stream
            if self._stop.is_set():
                close_quietly(stream)
                return
            if self._mark_open and not self._put(OPENED):
                return
            items = self._transform(stream) if self._transform else stream
            for item in items:
                if self._stop.is_set() or not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the async side
            if not self._stop.is_set():
                self._put(_Failure(exc))

    def __aiter__(self) -> "ThreadedStream[T]":
        return self

    async def __anext__(self) -> T:
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()
        if self._stop.is_set():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            self._stop.set()
            raise StopAsyncIteration
        if isinstance(item, _Failure):
            self._stop.set()
            raise item.exc
        return item

    def close(self) -> None:
        """Stop reading and close the underlying stream (idempotent, never raises)."""
        self._stop.set()
        if self._stream is not None:
            close_quietly(self._stream)
        # Wake a consumer blocked on the queue so it sees the end.
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                pass

    def _wake(self) -> None:
        try:
            self._queue.put_nowait(_END)
        except asyncio.QueueFull:
            pass

    async def __aenter__(self) -> "ThreadedStream[T]":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
