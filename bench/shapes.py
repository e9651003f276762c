"""Every handler shape of bench/peers.py, on our servers
(``pygrpc-ffi serve bench.shapes``), registered on import into
``pygrpc_ffi.default_service()``:

    bench.Echo/Echo, AsyncEcho       ``def``/``async def`` returning bytes
                                      (bench/handlers.py)
    bench.Shapes/Response, AsyncResponse
                                      returning a GrpcResponse with metadata
    bench.Shapes/Typed, AsyncTyped    typed: BytesValue in and out
    bench.Stream/Server, Bidi, AsyncServer, AsyncBidi
                                      streams (bench/handlers.py)
    bench.Servicer/Echo, bench.TypedServicer/Echo, bench.StreamServicer/*
                                      the grpcio servicers of bench/servicers.py
                                      through ``add_servicer``
    bench.ServicerAsync/Echo, ...     their ``async def`` twins
"""

from __future__ import annotations

from google.protobuf.wrappers_pb2 import BytesValue

import bench.handlers  # noqa: F401  (registers bench.Echo and bench.Stream)
import pygrpc_ffi as pgf
from bench.servicers import add_all

SERVICE = "bench.Shapes"
RESPONSE_METADATA = {"x-shape": "response"}


def response(request: pgf.GrpcRequest) -> pgf.GrpcResponse:
    """The README's shape: a GrpcResponse with initial metadata."""
    return pgf.GrpcResponse(request.payload, metadata=RESPONSE_METADATA)


async def async_response(request: pgf.GrpcRequest) -> pgf.GrpcResponse:
    return pgf.GrpcResponse(request.payload, metadata=RESPONSE_METADATA)


def typed(request: BytesValue) -> BytesValue:
    return BytesValue(value=request.value)


async def async_typed(request: BytesValue) -> BytesValue:
    return BytesValue(value=request.value)


_service = pgf.default_service()
_service.register_method(SERVICE, "Response", response)
_service.register_method(SERVICE, "AsyncResponse", async_response)
_service.register_method(SERVICE, "Typed", typed, request_type=BytesValue,
                         response_type=BytesValue)
_service.register_method(SERVICE, "AsyncTyped", async_typed, request_type=BytesValue,
                         response_type=BytesValue)
add_all(pgf.ServicerTarget(_service), asynchronous=False)
add_all(pgf.ServicerTarget(_service), asynchronous=True, suffix="Async")
