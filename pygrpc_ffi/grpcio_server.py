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
response is copied once, because grpcio sends only ``bytes``.  Every method
is served as unary-unary: the C ABI has no streams yet.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc

from ._calls import new_call, read_result
from ._native import lib
from .service import GrpcService, default_service

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "DEFAULT_MAX_WORKERS", "GrpcioServer", "serve", "start"]

_log = logging.getLogger("pygrpc_ffi")

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_WORKERS = min(32, 4 * (os.cpu_count() or 1))
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
                lib.pgf_call_cancel(self.call)

    def close(self) -> None:
        with self.lock:
            self.call = None


def _grpcio_pairs(pairs: Any) -> list[tuple[str, Any]]:
    """Metadata as grpcio takes it.  grpcio wants bytes for every key ending in
    "-bin", while gRPC core (and the shim) treat the 4-character key "-bin" as
    a text key: its value, already checked printable ASCII, goes as bytes."""
    return [(k, v.encode("latin-1") if isinstance(v, str) and k.endswith("-bin") else v)
            for k, v in pairs]


def _dispatch(dispatch: Callable[[Any], int], path: str, request: bytes,
              context: Any) -> bytes:
    remaining = context.time_remaining()
    if remaining is not None and remaining >= _NO_DEADLINE_THRESHOLD:
        remaining = None
    try:
        call, keep = new_call(path, request, context.invocation_metadata(),
                              timeout=remaining, peer=context.peer() or "")
    except ValueError:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
    guard = _CallGuard(call)
    try:
        if not context.add_callback(guard.cancel):
            lib.pgf_call_cancel(call)  # the RPC is already over
        # Releases the GIL while it waits; a closed service refuses the call
        # (which stays unfinished).
        if dispatch(call) != lib.PGF_OK:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the service is closed")
        result, compress = read_result(call)
    finally:
        guard.close()
        lib.pgf_call_unref(call)
        del keep

    if result.initial_metadata:
        context.send_initial_metadata(_grpcio_pairs(result.initial_metadata.pairs()))
    trailing = _grpcio_pairs(result.trailing_metadata.pairs())
    if result.details is not None:
        trailing.append((_STATUS_DETAILS_KEY, result.details))
    if trailing:
        context.set_trailing_metadata(tuple(trailing))
    if not result.ok:
        context.abort(_GRPC_CODES[int(result.code)], result.message)
    if compress:
        context.set_compression(grpc.Compression.Gzip)
    return result.payload


class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Every method registered in the service, as raw bytes."""

    def __init__(self, service: GrpcService) -> None:
        self._service = service

    def service(self, handler_call_details: Any) -> Any:
        path = handler_call_details.method
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        parts = path.split("/")
        if len(parts) != 3 or parts[0] or not self._service.has_method(parts[1], parts[2]):
            return None
        dispatch = self._service._dispatch_wait

        def behavior(request: bytes, context: Any) -> bytes:
            return _dispatch(dispatch, path, request, context)

        return grpc.unary_unary_rpc_method_handler(behavior)


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
          options: Sequence[tuple[str, Any]] = ()) -> GrpcioServer:
    """Starts a grpcio server that serves ``service`` (default:
    :func:`~pygrpc_ffi.default_service`) on ``address`` (port 0: any free
    port, see ``.port``) and returns at once.  ``max_message_size`` bounds
    requests and responses; ``grace`` is the default of ``stop()``;
    ``options`` are extra grpcio channel arguments.  OSError if the address
    cannot be bound: a port in use is not shared unless ``reuse_port`` (for
    several server processes on one port, SO_REUSEPORT)."""
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    service = service if service is not None else default_service()
    host, _ = _split_address(address)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers,
                                   thread_name_prefix="pygrpc_ffi-grpcio"),
        handlers=(_Handler(service),),
        options=[
            ("grpc.max_receive_message_length", max_message_size),
            ("grpc.max_send_message_length", max_message_size),
            ("grpc.so_reuseport", int(reuse_port)),
            *options,
        ],
    )
    try:
        port = server.add_insecure_port(address)
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
          reuse_port: bool = False) -> None:
    """Serves ``service`` until SIGINT or SIGTERM, then stops gracefully.

    Prints ``listening on HOST:PORT`` (the bound port) to stdout once it
    serves.  On the first signal, the server stops accepting calls and gives
    calls in flight ``grace`` seconds; a second signal cancels them at once.
    Returns when the server has stopped.  Must run in the main thread (it
    installs the signal handlers, and restores the previous ones).
    ``reuse_port``: see :func:`start`.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("serve() must run in the main thread; use start() elsewhere")
    server = start(service, address, max_workers=max_workers,
                   max_message_size=max_message_size, grace=grace, reuse_port=reuse_port)
    signals: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        signals.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"listening on {server.address}", flush=True)
        while not signals:
            time.sleep(0.1)
        _log.info("stopping: %d seconds for calls in flight", grace)
        stopped = server.server.stop(grace)
        forced = False
        while not stopped.wait(0.1):
            if len(signals) > 1 and not forced:
                _log.warning("second signal: cancelling calls in flight")
                server.server.stop(0)
                forced = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
