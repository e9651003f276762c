"""The benchmark's grpcio servicers, written as grpcio-tools (1.64 or later)
generates them: a servicer class per service and an
``add_XServicer_to_server`` that registers its methods both ways (generic
and registered handlers).  Every server of bench/peers.py serves these same
classes: grpcio's, pygrpc-native's and ours (``pygrpc_ffi.add_servicer``).

    bench.Servicer/Echo          bytes in, the same bytes out
    bench.TypedServicer/Echo     google.protobuf.BytesValue in and out
    bench.StreamServicer/Server  a request holding the decimal N: N 16 B messages
    bench.StreamServicer/Bidi    each message back

The ``Async`` twins are the same methods as ``async def``, for grpc.aio-style
servers.  ``suffix`` names a second copy of the services, so that one of
our servers serves both twins (``bench.ServicerAsync/Echo``, ...).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
from google.protobuf.wrappers_pb2 import BytesValue

MESSAGE = b"0123456789abcdef"


class EchoServicer:
    def Echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return request


class AsyncEchoServicer:
    async def Echo(self, request: bytes, context: Any) -> bytes:
        return request


class TypedServicer:
    def Echo(self, request: BytesValue, context: grpc.ServicerContext) -> BytesValue:
        return BytesValue(value=request.value)


class AsyncTypedServicer:
    async def Echo(self, request: BytesValue, context: Any) -> BytesValue:
        return BytesValue(value=request.value)


class StreamServicer:
    def Server(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in range(int(request)):
            yield MESSAGE

    def Bidi(self, requests: Iterator[bytes],
             context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from requests


class AsyncStreamServicer:
    async def Server(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        for _ in range(int(request)):
            yield MESSAGE

    async def Bidi(self, requests: AsyncIterator[bytes],
                   context: Any) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request


def _register(server: Any, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


def add_EchoServicer_to_server(servicer: Any, server: Any,
                              suffix: str = "") -> None:
    _register(server, "bench.Servicer" + suffix,
              {"Echo": grpc.unary_unary_rpc_method_handler(servicer.Echo)})


def add_TypedServicer_to_server(servicer: Any, server: Any,
                               suffix: str = "") -> None:
    _register(server, "bench.TypedServicer" + suffix, {
        "Echo": grpc.unary_unary_rpc_method_handler(
            servicer.Echo, request_deserializer=BytesValue.FromString,
            response_serializer=BytesValue.SerializeToString)})


def add_StreamServicer_to_server(servicer: Any, server: Any,
                                suffix: str = "") -> None:
    _register(server, "bench.StreamServicer" + suffix, {
        "Server": grpc.unary_stream_rpc_method_handler(servicer.Server),
        "Bidi": grpc.stream_stream_rpc_method_handler(servicer.Bidi)})


def add_all(server: Any, asynchronous: bool, suffix: str = "") -> None:
    """Every servicer above (the async twins if ``asynchronous``) on ``server``."""
    adds: list[tuple[Callable[..., None], Any]] = [
        (add_EchoServicer_to_server, AsyncEchoServicer() if asynchronous else EchoServicer()),
        (add_TypedServicer_to_server, AsyncTypedServicer() if asynchronous else TypedServicer()),
        (add_StreamServicer_to_server,
         AsyncStreamServicer() if asynchronous else StreamServicer()),
    ]
    for add, servicer in adds:
        add(servicer, server, suffix)
