"""gRPC health checking (``grpc.health.v1.Health``) in one call.

::

    from pygrpc_ffi.health import add_health

    health = add_health(service, {"my.Service": "SERVING"})
    health.set("my.Service", "NOT_SERVING")

``Check`` runs through the C path (grpcio-health-checking's own servicer,
registered like any generated servicer): the status of a known service, or
NOT_FOUND for an unknown one; the empty name is the server as a whole and is
SERVING unless set otherwise.

``Watch`` is a server stream: the current status first (SERVICE_UNKNOWN for
a service never set), then a message for every :meth:`HealthServicer.set`
of that service, sent at once, until the client goes away (the watch is
then dropped).  It runs as an ``async def`` on the package's event loop, so
an open watch holds no worker thread however many clients watch.  A client
that reads slower than statuses change gets the latest status, not a
backlog: statuses set while a message is being written are coalesced into
the last one (grpcio's servicer queues every one).
The module-level :func:`set_status` and :func:`get_status` act on the health
service of the process however it was added (``pygrpc-ffi serve --health``
or :func:`add_health`), so handlers can flip statuses without holding the
servicer; statuses set before it exists are kept and applied when it is
added.  With ``pygrpc-ffi serve --processes N`` the statuses set in any
process are what every process answers (``$PGF_HEALTH_FILE``, see
:class:`_SharedStatuses`).  When the server is asked to stop
(:mod:`pygrpc_ffi.shutdown`),
every status goes NOT_SERVING at once and stays so; open watches get it.
Needs ``grpcio-health-checking``.
"""

from __future__ import annotations

import asyncio
import atexit
import fcntl
import json
import os
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any

from grpc_health.v1 import health as _health  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .service import GrpcService, default_service
from .servicer import ServicerTarget
from .shutdown import on_shutdown, shutting_down

__all__ = ["SERVICE_NAME", "HealthServicer", "add_health", "enable_health", "get_status",
           "on_shutdown", "serving_status", "set_status"]

#: The full name of the health service.
SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

ServingStatusLike = Any  # a HealthCheckResponse.ServingStatus value, its name, or a bool


def serving_status(status: ServingStatusLike) -> int:
    """A ``HealthCheckResponse.ServingStatus`` value from itself, its name
    (``"SERVING"``, ``"NOT_SERVING"``, ...) or a bool (True: SERVING)."""
    enum = health_pb2.HealthCheckResponse.ServingStatus
    if isinstance(status, bool):
        return int(health_pb2.HealthCheckResponse.SERVING if status
                   else health_pb2.HealthCheckResponse.NOT_SERVING)
    if isinstance(status, str):
        try:
            return int(enum.Value(status.upper()))
        except ValueError:
            raise ValueError(f"unknown serving status {status!r}; expected one of "
                             f"{', '.join(enum.keys())}") from None
    if isinstance(status, int) and status in enum.values():
        return status
    raise ValueError(f"unknown serving status {status!r}")


class _Watch:
    """One open Watch: the status to send next, set from any thread."""

    __slots__ = ("event", "loop", "pending")

    def __init__(self, loop: asyncio.AbstractEventLoop, first: Any) -> None:
        self.loop = loop
        self.pending: Any = first
        self.event = asyncio.Event()
        self.event.set()

    def send(self, response: Any) -> None:
        """grpcio's servicer calls this (under its lock) on every set()."""
        try:
            self.loop.call_soon_threadsafe(self._put, response)
        except RuntimeError:  # the loop is closed: nobody watches any more
            pass

    def _put(self, response: Any) -> None:
        self.pending = response
        self.event.set()


class HealthServicer(_health.HealthServicer):  # type: ignore[misc]
    """grpcio-health-checking's servicer, with a ``Watch`` that holds no
    thread while it waits; :meth:`set` also takes names and bools."""

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        """The current status of ``request.service``, then every change,
        until the client goes away."""
        service = request.service
        with self._lock:
            status = self._server_status.get(service)
            if status is None:
                status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            watch = _Watch(asyncio.get_running_loop(),
                           health_pb2.HealthCheckResponse(status=status))
            self._send_response_callbacks.setdefault(service, set()).add(watch.send)
        try:
            while True:
                await watch.event.wait()
                watch.event.clear()
                response, watch.pending = watch.pending, None
                if response is not None:
                    yield response
        finally:
            with self._lock:
                self._send_response_callbacks.get(service, set()).discard(watch.send)

    def watchers(self, service: str) -> int:
        """How many Watch calls of ``service`` are open."""
        with self._lock:
            return len(self._send_response_callbacks.get(service, ()))

    _shared: _SharedStatuses | None = None

    def set(self, service: str, status: ServingStatusLike) -> None:
        """Sets the serving status of ``service`` ("" is the whole server)."""
        value = serving_status(status)
        shared = self._shared
        # Published first, so that a poll meanwhile never reverts it here.
        if shared is not None and not shutting_down():
            shared.publish(service, value)
        super().set(service, value)

    def set_here(self, service: str, status: int) -> None:
        """Sets a status in this process only (not shared with the others)."""
        super().set(service, status)

    def status(self, service: str) -> int | None:
        """The serving status of ``service``, or None if it is unknown."""
        with self._lock:
            value = self._server_status.get(service)
        return None if value is None else int(value)


def add_health(service: GrpcService | None = None,
               statuses: Mapping[str, ServingStatusLike] | None = None) -> HealthServicer:
    """Registers ``grpc.health.v1.Health`` in ``service`` (default:
    :func:`~pygrpc_ffi.default_service`) with the given serving statuses
    (the whole server, "", is SERVING unless given), and returns the
    servicer, whose :meth:`~HealthServicer.set` changes them."""
    servicer = HealthServicer()
    for name, status in (statuses or {}).items():
        servicer.set(name, status)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, ServicerTarget(service))
    _adopt(service if service is not None else default_service(), servicer)
    return servicer


# The health servicers of this process (normally one), by the service they
# serve; statuses set before any exists wait in _pending.
_lock = threading.Lock()
_servicers: dict[int, tuple[GrpcService, HealthServicer]] = {}
_pending: dict[str, int] = {}
#: Set by ``pygrpc-ffi serve --processes N`` in every server process.
SHARED_FILE_ENV = "PGF_HEALTH_FILE"
_POLL_SECONDS = 0.1


class _SharedStatuses:
    """The statuses set in the processes of one ``serve --processes N``: a
    JSON object in a file that each set() updates under an exclusive flock,
    and that every process reads every 0.1 s, applying what differs to its
    own servicer (so its open Watches get it).  Statuses never set
    explicitly (``--health``'s defaults) stay per process."""

    def __init__(self, path: str, servicer: HealthServicer) -> None:
        self.path = path
        self.servicer = servicer
        self._last = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, daemon=True,
                                        name="pygrpc_ffi-health-shared")
        self._thread.start()
        atexit.register(self.close)

    def publish(self, service: str, status: int) -> None:
        with open(self.path, "a+") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            file.seek(0)
            text = file.read()
            statuses = json.loads(text) if text else {}
            statuses[service] = status
            file.seek(0)
            file.truncate()
            file.write(json.dumps(statuses, sort_keys=True))

    def poll(self) -> None:
        try:
            with open(self.path) as file:
                fcntl.flock(file, fcntl.LOCK_SH)
                text = file.read()
        except FileNotFoundError:
            return
        if not text or text == self._last:
            return
        self._last = text
        for service, status in json.loads(text).items():
            if self.servicer.status(service) != status:
                self.servicer.set_here(service, status)

    def _poll_loop(self) -> None:
        while not self._stop.wait(_POLL_SECONDS):
            try:
                self.poll()
            except Exception:  # a torn or foreign file: the next poll may read it
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _adopt(service: GrpcService, servicer: HealthServicer) -> None:
    with _lock:
        first = not _servicers
        _servicers[id(service)] = (service, servicer)
        pending = dict(_pending)
        _pending.clear()
    path = os.environ.get(SHARED_FILE_ENV)
    if path:
        servicer._shared = _SharedStatuses(path, servicer)
        servicer._shared.poll()  # what other processes set already
    for name, status in pending.items():
        servicer.set(name, status)
    if first:
        on_shutdown(_not_serving, first=True)


def _not_serving() -> None:
    with _lock:
        servicers = [servicer for _, servicer in _servicers.values()]
    for servicer in servicers:
        # grpcio's servicer sets every status NOT_SERVING and ignores later sets.
        servicer.enter_graceful_shutdown()


def set_status(service: str, status: ServingStatusLike) -> None:
    """Sets the serving status of ``service`` ("" is the whole server) in the
    health service of this process; kept for it if none was added yet."""
    value = serving_status(status)
    with _lock:
        servicers = [servicer for _, servicer in _servicers.values()]
        if not servicers:
            _pending[service] = value
    for servicer in servicers:
        servicer.set(service, value)


def get_status(service: str) -> int | None:
    """The serving status of ``service`` in the health service of this
    process (a ``HealthCheckResponse.ServingStatus`` value), or None if it
    is unknown."""
    with _lock:
        servicers = [servicer for _, servicer in _servicers.values()]
        if not servicers:
            return _pending.get(service)
    return servicers[0].status(service)


def enable_health(service: GrpcService | None = None) -> HealthServicer:
    """What ``--health`` does: the health service of ``service`` (added if
    it has none), with "" and every registered service SERVING unless
    their status was set already."""
    service = service if service is not None else default_service()
    with _lock:
        known = _servicers.get(id(service))
    servicer = known[1] if known is not None else add_health(service)
    for name in ["", *service.list_services()]:
        if servicer.status(name) is None:
            servicer.set_here(name, health_pb2.HealthCheckResponse.SERVING)
    return servicer
