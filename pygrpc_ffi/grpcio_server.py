"""The pip-only server: grpcio's HTTP/2 server in front of the C registry.

``pygrpc_ffi.serve()`` serves a :class:`~pygrpc_ffi.GrpcService` without the
gRPC C++ host: a ``grpc.server`` with one generic handler that takes every
method registered in the service's C registry, as raw bytes, and dispatches
it through the C ABI exactly as a host does -- client metadata, deadline and
peer in; cancellation (the client went away, the deadline passed, the server
stops) forwarded with ``pgf_call_cancel``; initial metadata, payload,
trailing metadata, status code and message, and status details (as
``grpc-status-details-bin``) out.  A method that is not registered gets
grpcio's own UNIMPLEMENTED "Method not found!", as from any grpcio server
(the C++ host sends the shim's "unknown service S" / "unknown method M for
service S"; the code is the same).

Handlers run on grpcio's worker threads (``def``) or on the package's event
loop (``async def``; the worker waits for it), so ``max_workers`` bounds the
calls in progress.  The request reaches the handler without a copy; the
response is copied once, because grpcio sends only ``bytes``.

Every method is served as a stream (grpcio's stream-unary or stream-stream
handler, by the method's kind in the registry), driven through the C ABI's
stream functions exactly as the C++ host drives them: the handler pulls each
request message (read from grpcio's request iterator on a reader thread of
the call, only when asked), and each response message is yielded to grpcio,
which resumes the generator only once it has sent the message; the
handler's write completes then, or as the message is handed to grpcio if
the memory budget (--max-memory-bytes, _MessageBudget) has room for the
handler's next message.  BDP probing is off, so a client that writes
faster than the handler reads is held back by the default 64 KiB HTTP/2
window instead of filling MiBs of transport buffers (``options`` may turn it
back on).  A method that takes one request message
answers UNIMPLEMENTED ``"/pkg.Svc/M" requires exactly one request message.``
to zero or two, as the C++ host does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc

from . import _runtime
from ._binding import calls, streams
from ._binding import metrics as c_metrics
from ._binding.base import (
    EVENT_INITIAL_METADATA,
    EVENT_READ,
    EVENT_WRITE,
    KIND_CLIENT_STREAMING,
    KIND_SERVER_STREAMING,
    KIND_UNARY,
    NULL,
)
from ._host.calls import new_call, read_result
from ._host.local_stream import ThreadedReads
from ._runtime.requests import new_message
from .service import GrpcService, default_service
from .shutdown import begin_shutdown

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "DEFAULT_MAX_WORKERS", "GrpcioServer", "ServerLimits",
           "serve", "start"]

_log = logging.getLogger("pygrpc_ffi")

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_WORKERS = min(32, 4 * (os.cpu_count() or 1))
# --max-memory-bytes, as for the C++ host.  grpcio queues calls beyond
# max_workers without limit (each a stream grpcio keeps, and for an
# ``async def`` handler the task to come); the memory flag bounds them by
# count: at most max_memory_bytes // CALL_COST calls in progress or queued
# (grpcio's maximum_concurrent_rpcs), beyond which grpcio answers
# RESOURCE_EXHAUSTED.  CALL_COST is the C++ host's per-call charge
# (hosts/grpc_server/memory_budget.h); measured here: 22.5 KiB per
# half-open ``async def`` bidi stream queued in grpcio (3,000 held, +66 MiB).
DEFAULT_MAX_MEMORY_BYTES = 1 << 30
CALL_COST = 32 * 1024
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
# grpcio reports ~2**63 seconds remaining when the client set no deadline.
_NO_DEADLINE_THRESHOLD = 1e15
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


class _CallGuard:
    """Lets grpcio's termination callback cancel the C call while it lives."""

    __slots__ = ("call", "lock")

    def __init__(self, call: Any) -> None:
        self.call = call
        self.lock = threading.Lock()

    def cancel(self) -> None:
        with self.lock:
            if self.call is not None:
                calls.cancel(self.call)

    def close(self) -> None:
        with self.lock:
            self.call = None


def _grpcio_pairs(pairs: Any) -> list[tuple[str, Any]]:
    """Metadata as grpcio takes it.  grpcio wants bytes for every key ending in
    "-bin", while gRPC core (and the shim) treat the 4-character key "-bin" as
    a text key: its value, already checked printable ASCII, goes as bytes."""
    return [(k, v.encode("latin-1") if isinstance(v, str) and k.endswith("-bin") else v)
            for k, v in pairs]


_EVENT_DONE = 0  # the handler finished the call


class _EngineStream(ThreadedReads):
    """The host side of one call: stream events from the handler become
    grpcio operations on the behaviour's thread (writes, initial metadata)
    or on a reader thread (reads, which may wait for the client)."""

    _reader_name = "pygrpc_ffi-grpcio-reader"

    def __init__(self, requests: Iterator[bytes] | None) -> None:
        super().__init__()
        self.events: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._requests = requests
        self.handle: Any = None

    def event(self, call: Any, event: int) -> None:
        if event == EVENT_READ:
            self._read_later(call)
        else:
            self.events.put(event)

    def done(self, call: Any) -> None:
        # Finished: the handler asks its host for nothing more.
        _runtime.handles.pop(self.handle)
        self.handle = None  # a handle keeps its object: no cycle
        self.events.put(_EVENT_DONE)

    def _read_one(self, call: Any) -> None:
        msg = NULL
        if self._requests is not None:
            try:
                msg = new_message(next(self._requests))
            except StopIteration:
                pass
            except Exception:  # the RPC ended: grpc.RpcError
                calls.cancel(call)
        streams.push_request_quietly(call, msg)


# Messages up to this size are not charged one by one (CALL_COST has them).
_UNCOUNTED_MESSAGE = 1024
_REFUSED_TEXT = "server memory budget (--max-memory-bytes) exhausted"


class _MessageBudget:
    """The response messages grpcio holds for the calls in progress, counted
    against --max-memory-bytes by the C++ host's rules 2 and 3
    (hosts/grpc_server/memory_budget.h): a message is charged from the moment
    it is taken from the handler until grpcio has sent it, twice its size
    (this engine's copy and the one grpcio makes to send it); a call's first
    charged message beyond the budget ends the call RESOURCE_EXHAUSTED; a
    write completes before grpcio has sent it only with room reserved for
    the handler's next message, else once it was sent.  Streams leave an
    eighth of the budget to unary calls.  (Calls themselves are bounded by
    count: maximum_concurrent_rpcs, see start.)"""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def keep_free(self, kind: int) -> int:
        return 0 if kind == KIND_UNARY else self.limit // 8

    def try_charge(self, n: int, keep_free: int) -> bool:
        with self._lock:
            if self.used + n + keep_free > self.limit:
                return False
            self.used += n
            return True

    def charge(self, n: int) -> None:
        with self._lock:
            self.used += n

    def release(self, n: int) -> None:
        if n:
            with self._lock:
                self.used -= n


def _one_request(path: str, requests: Iterator[bytes], context: Any) -> bytes:
    """The one request message of a unary-request method, as the C++ host
    checks it: zero or two messages are refused with the same status."""
    message: bytes | None = None
    for count, item in enumerate(requests):
        if count:
            message = None
            break
        message = item
    if message is None:
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      f'"{path}" requires exactly one request message.')
    assert message is not None
    return message


def _pass_auth(call: Any, context: Any) -> None:
    """grpcio's auth context into the call, through the ABI the C++ host
    uses: handlers see the same caller identity on both engines."""
    key = context.peer_identity_key()
    calls.set_auth(call, [(name.encode("latin-1"), value)
                          for name, values in context.auth_context().items()
                          for value in values],
                   key.encode("latin-1") if key else None)


class _Call:
    """One RPC served through the C path: the pgf_call, its host stream, and
    grpcio's context."""

    def __init__(self, service: GrpcService, path: str, kind: int,
                 requests: Iterator[bytes], context: Any, budget: _MessageBudget) -> None:
        self.context = context
        self.kind = kind
        self.budget = budget
        self.keep_free = budget.keep_free(kind)
        self.charged_any = False
        self.reserved = 0
        remaining = context.time_remaining()
        if remaining is not None and remaining >= _NO_DEADLINE_THRESHOLD:
            remaining = None
        request_stream = bool(kind & KIND_CLIENT_STREAMING)
        payload = None if request_stream else _one_request(path, requests, context)
        self.stream = _EngineStream(requests if request_stream else None)
        self.initial_sent = False
        try:
            self.call, _ = new_call(path, payload, context.invocation_metadata(),
                                    timeout=remaining, peer=context.peer() or "")
        except ValueError:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        try:
            _pass_auth(self.call, context)
        except BaseException:
            calls.unref(self.call)
            raise
        self.guard = _CallGuard(self.call)
        self.stream.handle = _runtime.handles.add(self.stream)
        self.service = service

    def run(self) -> Iterator[bytes]:
        """Dispatches the call and yields each response message as grpcio
        asks for it; returns once the status is set."""
        call, context, stream = self.call, self.context, self.stream
        try:
            if self.kind != KIND_UNARY:
                streams.set_stream_quietly(call, stream.handle)
            if not context.add_callback(self.guard.cancel):
                calls.cancel(call)  # the RPC is already over
            if self.kind == KIND_UNARY:
                self._dispatch()
            else:
                # A sync handler runs where it is dispatched and waits for this
                # thread to serve its writes: it gets a thread of its own
                # (grpcio's max_workers bounds the calls, so these too).
                threading.Thread(target=self._dispatch, daemon=True,
                                 name="pygrpc_ffi-grpcio-handler").start()
            while True:
                event = stream.events.get()
                if event == EVENT_WRITE:
                    message = streams.take_write(call)
                    if message is not None:
                        yield from self._send(message)
                elif event == EVENT_INITIAL_METADATA:
                    self._send_initial_metadata()
                elif event == _EVENT_DONE:
                    break
            last = streams.take_write(call)  # queued just before the finish
            if last is not None:
                yield from self._send(last)
            result = read_result(call)
            compress = bool(calls.compress_response(call))
        finally:
            self.budget.release(self.reserved)
            self.reserved = 0
            # Normally finished here; if grpcio dropped the RPC (a cancel
            # while a message was on its way), the handler is told so.
            calls.cancel(call)
            self.guard.close()
            stream.close()
            calls.unref(call)
        if not self.initial_sent and result.ok:
            self._send_pairs(result.initial_metadata.pairs())
        trailing = _grpcio_pairs(result.trailing_metadata.pairs())
        if result.details is not None:
            trailing.append((_STATUS_DETAILS_KEY, result.details))
        if trailing:
            context.set_trailing_metadata(tuple(trailing))
        if not result.ok:
            context.abort(_GRPC_CODES[int(result.code)], result.message)
        if compress:
            context.set_compression(grpc.Compression.Gzip)
        if not self.kind & KIND_SERVER_STREAMING:
            yield result.payload

    def _send(self, message: bytes) -> Iterator[bytes]:
        """Yields a message taken from the handler to grpcio (which resumes
        this once it has sent it) and completes the handler's write: at once
        if the budget has room for the handler's next message, else once
        grpcio has sent this one (_MessageBudget)."""
        budget = self.budget
        budget.release(self.reserved)  # this message takes its place
        self.reserved = 0
        cost = 2 * len(message) if len(message) > _UNCOUNTED_MESSAGE else 0
        if cost:
            if self.charged_any:
                budget.charge(cost)
            elif not budget.try_charge(cost, self.keep_free):
                streams.write_done_quietly(self.call, False)
                calls.cancel(self.call)
                self.context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _REFUSED_TEXT)
            self.charged_any = True
        if cost:
            early = budget.try_charge(cost, self.keep_free)
        else:
            early = budget.used + self.keep_free <= budget.limit
        completed = early
        if early:
            self.reserved = cost
            streams.write_done_quietly(self.call, True)
        try:
            self._send_initial_metadata()
            yield message  # resumed once grpcio has sent it
            if not completed:
                completed = True
                streams.write_done_quietly(self.call, True)
        finally:
            budget.release(cost)
            if not completed:  # grpcio dropped the RPC meanwhile
                streams.write_done_quietly(self.call, False)

    def _dispatch(self) -> None:
        # The registry is read only until the handler starts: a racing
        # close() frees it after that (see GrpcService._acquire).
        if not self.service._dispatch_async(self.call, self.stream.handle):
            # A closed service: refused before any handler ran.
            calls.finish_quietly(self.call, int(grpc.StatusCode.UNAVAILABLE.value[0]),
                                 b"the service is closed")
            self.stream.done(self.call)

    def _send_initial_metadata(self) -> None:
        if self.initial_sent:
            return
        self.initial_sent = True
        md = calls.initial_metadata(self.call)
        self._send_pairs(_runtime.read_metadata(md).pairs())

    def _send_pairs(self, pairs: Any) -> None:
        self.initial_sent = True
        if pairs:
            self.context.send_initial_metadata(_grpcio_pairs(pairs))


def _count_unimplemented() -> None:
    """Counts a call to an unknown method in the shim's metrics (overflow
    entry), as the C++ host's calls are counted at dispatch."""
    c_metrics.count_refused_unknown(int(grpc.StatusCode.UNIMPLEMENTED.value[0]))


class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Every method registered in the service, as raw bytes."""

    def __init__(self, service: GrpcService, budget: _MessageBudget) -> None:
        self._service = service
        self._budget = budget

    def service(self, handler_call_details: Any) -> Any:
        path = handler_call_details.method
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        parts = path.split("/")
        if len(parts) != 3 or parts[0] or not parts[1] or not parts[2]:
            _count_unimplemented()
            return None
        service, budget = self._service, self._budget
        kind = service._method_kind(parts[1], parts[2])
        if kind < 0:
            _count_unimplemented()  # grpcio answers it: the shim never sees the call
            return None

        if kind & KIND_SERVER_STREAMING:
            def stream_behavior(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
                yield from _Call(service, path, kind, requests, context, budget).run()

            return grpc.stream_stream_rpc_method_handler(stream_behavior)

        def unary_behavior(requests: Iterator[bytes], context: Any) -> bytes:
            answers = list(_Call(service, path, kind, requests, context, budget).run())
            return answers[-1] if answers else b""

        return grpc.stream_unary_rpc_method_handler(unary_behavior)


class GrpcioServer:
    """A running grpcio server for a GrpcService; see :func:`start`."""

    def __init__(self, server: Any, service: GrpcService, host: str, port: int,
                 grace: float | None) -> None:
        self.server = server
        self.service = service
        self.host = host
        self.port = port
        self.grace = grace

    @property
    def address(self) -> str:
        """``host:port`` with the bound port."""
        return f"{self.host}:{self.port}"

    def stop(self, grace: float | None = None) -> None:
        """Stops accepting calls, lets calls in flight finish for ``grace``
        seconds (default: the one given to :func:`start`), cancels the rest,
        and returns once the server has stopped."""
        self.server.stop(self.grace if grace is None else grace).wait()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the server stops, or ``timeout``; True if it stopped."""
        return bool(self.server.wait_for_termination(timeout))

    def __enter__(self) -> GrpcioServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ServerLimits' fields -> the gRPC core channel arguments that bound the same
# thing on a server (the C++ host's flags of the same names).  The metadata
# bound is both the soft and the absolute one, so that every call beyond it
# is refused, not only some of them.
_CHANNEL_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "max_concurrent_streams": ("grpc.max_concurrent_streams",),
    "max_metadata_bytes": ("grpc.max_metadata_size", "grpc.absolute_max_metadata_size"),
    "keepalive_time_ms": ("grpc.keepalive_time_ms",),
    "keepalive_timeout_ms": ("grpc.keepalive_timeout_ms",),
    "keepalive_permit_without_calls": ("grpc.keepalive_permit_without_calls",),
    "min_ping_interval_ms": ("grpc.http2.min_ping_interval_without_data_ms",),
    "max_ping_strikes": ("grpc.http2.max_ping_strikes",),
    "max_connection_idle_ms": ("grpc.max_connection_idle_ms",),
    "max_connection_age_ms": ("grpc.max_connection_age_ms",),
    "max_connection_age_grace_ms": ("grpc.max_connection_age_grace_ms",),
}


@dataclasses.dataclass(frozen=True)
class ServerLimits:
    """What a client may make the server hold, as the C++ host's flags of
    the same names (``--max-concurrent-streams`` ...); None keeps grpcio's
    default.  ``max_queued_calls``: calls that may wait for a worker (all
    ``max_workers`` busy); beyond, a new call gets RESOURCE_EXHAUSTED.
    Any ``_ms`` value may be 2147483647 for no limit; ``max_ping_strikes``
    0 for none."""

    max_concurrent_streams: int | None = None
    max_metadata_bytes: int | None = None
    max_queued_calls: int | None = None
    keepalive_time_ms: int | None = None
    keepalive_timeout_ms: int | None = None
    keepalive_permit_without_calls: bool | None = None
    min_ping_interval_ms: int | None = None
    max_ping_strikes: int | None = None
    max_connection_idle_ms: int | None = None
    max_connection_age_ms: int | None = None
    max_connection_age_grace_ms: int | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None and not 0 <= value <= 2**31 - 1:
                raise ValueError(f"{field.name} must be in 0..2147483647, not {value}")

    def channel_arguments(self) -> list[tuple[str, int]]:
        """The grpcio server options for the limits that were given."""
        out = []
        for name, keys in _CHANNEL_ARGUMENTS.items():
            value = getattr(self, name)
            if value is not None:
                out += [(key, int(value)) for key in keys]
        return out

    def maximum_concurrent_rpcs(self, max_workers: int, max_memory_bytes: int) -> int:
        """grpcio's bound on calls in progress or queued: the memory's, and
        the workers plus the queue's if a queue bound was given."""
        by_memory = max_memory_bytes // CALL_COST
        if self.max_queued_calls is None:
            return by_memory
        return min(by_memory, max_workers + self.max_queued_calls)


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, not {address!r}")
    return host, int(port)


def start(service: GrpcService | None = None, address: str = "127.0.0.1:50051", *,
          max_workers: int = DEFAULT_MAX_WORKERS,
          max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
          grace: float | None = 10.0,
          reuse_port: bool = False,
          options: Sequence[tuple[str, Any]] = (),
          interceptors: Sequence[Any] = (),
          max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
          credentials: grpc.ServerCredentials | None = None,
          limits: ServerLimits | None = None) -> GrpcioServer:
    """Starts a grpcio server that serves ``service`` (default:
    :func:`~pygrpc_ffi.default_service`) on ``address`` (port 0: any free
    port, see ``.port``) and returns at once.  ``max_message_size`` bounds
    requests and responses; ``grace`` is the default of ``stop()``;
    ``options`` are extra grpcio channel arguments.  OSError if the address
    cannot be bound: a port in use is not shared unless ``reuse_port`` (for
    several server processes on one port, SO_REUSEPORT).  ``interceptors``
    are added to the service (see :meth:`GrpcService.add_interceptor`): they
    run on every host that serves it.  ``max_memory_bytes`` bounds the calls
    in progress or queued to ``max_memory_bytes // CALL_COST`` (32 KiB
    each); beyond it a new call gets RESOURCE_EXHAUSTED.  ``credentials``
    (e.g. :func:`pygrpc_ffi.serve_tls.server_credentials`): serve TLS only;
    None: plaintext.  ``limits``: connection and call limits
    (:class:`ServerLimits`; default: grpcio's)."""
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    if max_memory_bytes < CALL_COST:
        raise ValueError(f"max_memory_bytes must be at least {CALL_COST}")
    limits = limits if limits is not None else ServerLimits()
    service = service if service is not None else default_service()
    for interceptor in interceptors:
        service.add_interceptor(interceptor)
    host, _ = _split_address(address)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers,
                                   thread_name_prefix="pygrpc_ffi-grpcio"),
        handlers=(_Handler(service, _MessageBudget(max_memory_bytes)),),
        maximum_concurrent_rpcs=limits.maximum_concurrent_rpcs(max_workers, max_memory_bytes),
        options=[
            ("grpc.max_receive_message_length", max_message_size),
            ("grpc.max_send_message_length", max_message_size),
            ("grpc.so_reuseport", int(reuse_port)),
            # No BDP probing: with it, gRPC core grows every stream's HTTP/2
            # receive window to its bandwidth estimate (MiBs) whether or not
            # the handler reads, so a client writing back to back parks MiBs
            # of requests in the transport per stream, which a handler then
            # drains at its own pace (a bidi client waiting for its status
            # after a 2 s burst waited ~25 s).  The default 64 KiB window
            # holds the client back to the handler's pace instead.
            ("grpc.http2.bdp_probe", 0),
            *limits.channel_arguments(),
            *options,
        ],
    )
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if not port:
        raise OSError(f"cannot listen on {address}")
    server.start()
    return GrpcioServer(server, service, host, port, grace)


def serve(service: GrpcService | None = None, address: str = "127.0.0.1:50051", *,
          max_workers: int = DEFAULT_MAX_WORKERS,
          max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
          grace: float = 10.0,
          reuse_port: bool = False,
          interceptors: Sequence[Any] = (),
          max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
          credentials: grpc.ServerCredentials | None = None,
          drain_seconds: float = 0.0,
          limits: ServerLimits | None = None) -> None:
    """Serves ``service`` until SIGINT or SIGTERM, then stops gracefully.

    Prints ``listening on HOST:PORT`` (the bound port) to stdout once it
    serves.  On the first signal, the shutdown begins
    (:func:`pygrpc_ffi.shutdown.begin_shutdown`: health NOT_SERVING, the
    shutdown callbacks), the server keeps serving for ``drain_seconds``,
    then stops accepting calls and gives calls in flight ``grace`` seconds;
    a second signal ends the drain, or cancels the calls in flight at once.
    Returns when the server has stopped.  Must run in the main thread (it
    installs the signal handlers, and restores the previous ones).
    ``reuse_port``, ``interceptors``, ``max_memory_bytes``, ``credentials``,
    ``limits``: see :func:`start`.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("serve() must run in the main thread; use start() elsewhere")
    server = start(service, address, max_workers=max_workers,
                   max_message_size=max_message_size, grace=grace, reuse_port=reuse_port,
                   interceptors=interceptors, max_memory_bytes=max_memory_bytes,
                   credentials=credentials, limits=limits)
    signals: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        signals.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"listening on {server.address}", flush=True)
        while not signals:
            time.sleep(0.1)
        begin_shutdown()
        drained = time.monotonic() + drain_seconds
        while len(signals) < 2 and time.monotonic() < drained:
            time.sleep(0.05)
        seen = len(signals)
        _log.info("stopping: %d seconds for calls in flight", grace)
        stopped = server.server.stop(grace)
        forced = False
        while not stopped.wait(0.1):
            if len(signals) > seen and not forced:
                _log.warning("second signal: cancelling calls in flight")
                server.server.stop(0)
                forced = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
