"""A native handler and a raw-bytes grpcio servicer, for
``pygrpc-ffi serve answer_handlers --interceptor answer_handlers:AnswerStamp``:
the interceptor post-processes each answer as grpcio interceptors do."""

from __future__ import annotations

from typing import Any

import grpc

import pygrpc_ffi as pgf
from pygrpc_ffi.servicer import add_servicer

service = pgf.default_service()


@service.method("answers.Native", "Echo")
def native_echo(request: pgf.GrpcRequest) -> bytes:
    return b"native:" + bytes(request.payload)


@service.method("answers.Native", "Wrapped")
def native_wrapped(request: pgf.GrpcRequest) -> pgf.GrpcResponse:
    return pgf.GrpcResponse(b"wrapped:" + bytes(request.payload))


class RawServicer:
    def Echo(self, request: bytes, context: Any) -> bytes:
        return b"servicer:" + request


def _add_raw_servicer(servicer: RawServicer, server: Any) -> None:
    handlers = {"Echo": grpc.unary_unary_rpc_method_handler(servicer.Echo)}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("answers.Servicer", handlers),))


add_servicer(_add_raw_servicer, RawServicer())


class AnswerStamp(grpc.ServerInterceptor):  # type: ignore[misc]
    """Wraps each unary behaviour: reads the answer with ``bytes(response)``
    and sends its size and text as trailers, as interceptors written for
    grpcio's server do."""

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        def behaviour(request: Any, context: Any) -> Any:
            response = inner(request, context)
            data = bytes(response)
            context.set_trailing_metadata((("x-answer-size", str(len(data))),
                                           ("x-answer", data.decode())))
            return response

        return grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
