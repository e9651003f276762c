"""Handlers of every kind and interceptors of every style, shared by the
in-process interceptor tests and the end-to-end ones (tests/e2e, where
``pygrpc-ffi serve observed_handlers --interceptor observed:...`` loads them
into the C++ host or the grpcio engine).

``register(service)`` adds native handlers under ``obs.Native`` (sync and
async, all four kinds, plus failing ones) and grpc.testing.TestService's
generated servicer.  ``RAN`` counts handler runs, so tests can prove that a
rejected call never reached its handler; ``SEEN`` is what the native
interceptor saw.
"""

from __future__ import annotations

import collections
import inspect
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from grpc_interceptor.exceptions import NotFound as InterceptorNotFound

import pygrpc_ffi as pgf
from pygrpc_ffi.interceptors import Interceptor, ServerCall

SERVICE = "obs.Native"
TOKEN = "Bearer ok"
AUTH = (("authorization", TOKEN),)

_lock = threading.Lock()
RAN: collections.Counter[str] = collections.Counter()
SEEN: collections.Counter[str] = collections.Counter()


def _ran(name: str) -> None:
    with _lock:
        RAN[name] += 1


# ---------------------------------------------------------------- handlers


def register(service: pgf.GrpcService, servicer: bool = True) -> None:
    """Native handlers of every kind (sync and async) in ``service``, and
    the interop servicer (grpc.testing.TestService)."""

    @service.method(SERVICE, "Unary")
    def unary(request: pgf.GrpcRequest) -> bytes:
        _ran("Unary")
        return b"u:" + bytes(request.payload)

    @service.method(SERVICE, "ServerStream", response_streaming=True)
    def server_stream(request: pgf.GrpcRequest) -> Iterator[bytes]:
        _ran("ServerStream")
        for i in range(int(bytes(request.payload) or b"3")):
            yield f"s{i}".encode()

    @service.method(SERVICE, "ClientStream", request_streaming=True)
    def client_stream(requests: Iterator[pgf.GrpcRequest]) -> bytes:
        _ran("ClientStream")
        return b"+".join(bytes(r.payload) for r in requests)

    @service.method(SERVICE, "Bidi", request_streaming=True, response_streaming=True)
    def bidi(requests: Iterator[pgf.GrpcRequest]) -> Iterator[bytes]:
        _ran("Bidi")
        for r in requests:
            yield b"b:" + bytes(r.payload)

    @service.method(SERVICE, "AsyncUnary")
    async def async_unary(request: pgf.GrpcRequest) -> bytes:
        _ran("AsyncUnary")
        return b"a:" + bytes(request.payload)

    @service.method(SERVICE, "AsyncBidi", request_streaming=True, response_streaming=True)
    async def async_bidi(requests: AsyncIterator[pgf.GrpcRequest]) -> AsyncIterator[bytes]:
        _ran("AsyncBidi")
        async for r in requests:
            yield b"ab:" + bytes(r.payload)

    @service.method(SERVICE, "Fail")
    def fail(request: pgf.GrpcRequest) -> bytes:
        _ran("Fail")
        raise RuntimeError("boom")

    @service.method(SERVICE, "Missing")
    def missing(request: pgf.GrpcRequest) -> bytes:
        _ran("Missing")
        raise InterceptorNotFound("no such thing")

    @service.method(SERVICE, "Ran")
    def ran(request: pgf.GrpcRequest) -> bytes:
        with _lock:
            return json.dumps({"ran": dict(RAN), "seen": dict(SEEN)}).encode()

    if servicer:
        import interop_servicer as interop

        from pygrpc_ffi.servicer import add_servicer

        add_servicer(interop.pb_grpc.add_TestServiceServicer_to_server, interop.TestServicer(),
                     service)


# ----------------------------------------------------- grpcio interceptors


class Auth(grpc.ServerInterceptor):  # type: ignore[misc]
    """Rejects calls without ``authorization: Bearer ok`` with
    UNAUTHENTICATED (a unary handler that aborts, as auth interceptors
    written for grpcio do), and calls with ``x-reject`` by returning None."""

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        metadata = dict(details.invocation_metadata)
        if "x-reject" in metadata:
            return None
        if metadata.get("authorization") == TOKEN or details.method.endswith("/Ran"):
            return continuation(details)

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")

        return grpc.unary_unary_rpc_method_handler(deny)


def _mark(answer: Any) -> Any:
    """A native answer (bytes, or a GrpcResponse as unary answers reach
    grpcio interceptors) with a leading ``W``."""
    if isinstance(answer, pgf.GrpcResponse):
        return pgf.GrpcResponse(b"W" + bytes(answer.payload), answer.metadata, answer.trailers)
    return b"W" + bytes(answer) if isinstance(answer, (bytes, bytearray, memoryview)) else answer


class Wrap(grpc.ServerInterceptor):  # type: ignore[misc]
    """Wraps the behaviour of every obs.Native method: each answer gets a
    leading ``W``."""

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = continuation(details)
        if handler is None or not details.method.startswith(f"/{SERVICE}/"):
            return handler
        options = {"request_deserializer": handler.request_deserializer,
                   "response_serializer": handler.response_serializer}
        if handler.unary_unary or handler.stream_unary:
            behavior = handler.unary_unary or handler.stream_unary
            if inspect.iscoroutinefunction(behavior):
                async def one_async(arg: Any, context: Any) -> Any:
                    return _mark(await behavior(arg, context))

                wrapped: Any = one_async
            else:
                def one(arg: Any, context: Any) -> Any:
                    return _mark(behavior(arg, context))

                wrapped = one
            factory = (grpc.unary_unary_rpc_method_handler if handler.unary_unary
                       else grpc.stream_unary_rpc_method_handler)
            return factory(wrapped, **options)
        behavior = handler.unary_stream or handler.stream_stream
        if inspect.isasyncgenfunction(behavior):
            async def many_async(arg: Any, context: Any) -> AsyncIterator[Any]:
                async for answer in behavior(arg, context):
                    yield _mark(answer)

            wrapped = many_async
        else:
            def many(arg: Any, context: Any) -> Iterator[Any]:
                for answer in behavior(arg, context):
                    yield _mark(answer)

            wrapped = many
        factory = (grpc.unary_stream_rpc_method_handler if handler.unary_stream
                   else grpc.stream_stream_rpc_method_handler)
        return factory(wrapped, **options)


class AioAuth(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """grpc.aio's style: rejects calls with ``x-aio-reject`` (returns None)."""

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        if "x-aio-reject" in dict(details.invocation_metadata):
            return None
        return await continuation(details)


class NoopGrpc(grpc.ServerInterceptor):  # type: ignore[misc]
    """grpcio's no-op interceptor (benchmarks)."""

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        return continuation(details)


# ------------------------------------------------------ native interceptors


class Native(Interceptor):
    """Denies calls with ``x-deny`` (PERMISSION_DENIED) before the handler;
    counts messages in and out and outcomes in SEEN."""

    def before(self, call: ServerCall) -> None:
        if "x-deny" in call.metadata:
            raise pgf.PermissionDenied("denied by native")

    def on_request(self, call: ServerCall, request: Any) -> None:
        with _lock:
            SEEN[f"in:{call.method}"] += 1

    def on_response(self, call: ServerCall, response: Any) -> None:
        with _lock:
            SEEN[f"out:{call.method}"] += 1

    def after(self, call: ServerCall) -> None:
        assert call.code is not None
        with _lock:
            SEEN[f"after:{call.method}:{call.code.name}"] += 1


class AsyncNative(Interceptor):
    """``async def`` hooks: denies calls with ``x-deny-async``."""

    async def before(self, call: ServerCall) -> None:
        if "x-deny-async" in call.metadata:
            raise pgf.Unauthenticated("denied by async native")

    async def after(self, call: ServerCall) -> None:
        with _lock:
            SEEN[f"async-after:{call.method}"] += 1


class NoopNative(Interceptor):
    """A native interceptor with one no-op hook (benchmarks)."""

    def before(self, call: ServerCall) -> None:
        pass


# --------------------------------------------------------------- tracing


class _FileExporter:
    """Appends finished spans as JSON lines to a file (the e2e tests read
    the spans of a server process)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        with _lock, open(self.path, "a") as out:
            for span in spans:
                out.write(json.dumps({
                    "name": span.name,
                    "trace_id": f"{span.context.trace_id:032x}",
                    "span_id": f"{span.context.span_id:016x}",
                    "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                    "attributes": dict(span.attributes or {}),
                }) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


def tracing() -> Any:
    """The native tracing interceptor exporting to $OBS_SPANS (a factory,
    as ``--interceptor observed:tracing`` calls it)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from pygrpc_ffi.tracing import TracingInterceptor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_FileExporter(  # type: ignore[arg-type]
        os.environ.get("OBS_SPANS", os.devnull))))
    return TracingInterceptor(provider)
