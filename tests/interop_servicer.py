"""grpc.testing.TestService (unary subset), written as any grpcio user would,
and the interop client cases run against it.

The servicer follows gRPC's reference Python interop server: it echoes the
``x-grpc-test-echo-initial`` / ``x-grpc-test-echo-trailing-bin`` metadata,
answers ``response_size`` zero bytes, and ends with ``response_status`` if
the request has one.  It is used unchanged with grpcio's own server and with
pygrpc_ffi's (the C path).
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "protos"))

import interop_pb2 as pb
import interop_pb2_grpc as pb_grpc

INITIAL_KEY = "x-grpc-test-echo-initial"
TRAILING_KEY = "x-grpc-test-echo-trailing-bin"
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _echo_metadata(context: grpc.ServicerContext) -> None:
    metadata = dict(context.invocation_metadata())
    if INITIAL_KEY in metadata:
        context.send_initial_metadata(((INITIAL_KEY, metadata[INITIAL_KEY]),))
    if TRAILING_KEY in metadata:
        context.set_trailing_metadata(((TRAILING_KEY, metadata[TRAILING_KEY]),))


def _echo_status(request: pb.SimpleRequest, context: grpc.ServicerContext) -> None:
    if request.HasField("response_status"):
        context.set_code(_CODES[request.response_status.code])
        context.set_details(request.response_status.message)


class TestServicer(pb_grpc.TestServiceServicer):
    """The reference interop behaviour; UnimplementedCall is left to the
    generated base class (UNIMPLEMENTED)."""

    def EmptyCall(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.Empty:
        _echo_metadata(context)
        return pb.Empty()

    def UnaryCall(self, request: pb.SimpleRequest,
                  context: grpc.ServicerContext) -> pb.SimpleResponse:
        _echo_metadata(context)
        _echo_status(request, context)
        return pb.SimpleResponse(
            payload=pb.Payload(type=pb.COMPRESSABLE, body=b"\0" * request.response_size))


class AsyncTestServicer(pb_grpc.TestServiceServicer):
    """The same, as a grpc.aio servicer (``async def`` methods)."""

    async def EmptyCall(self, request: pb.Empty, context: Any) -> pb.Empty:
        metadata = dict(context.invocation_metadata())
        if INITIAL_KEY in metadata:
            await context.send_initial_metadata(((INITIAL_KEY, metadata[INITIAL_KEY]),))
        if TRAILING_KEY in metadata:
            context.set_trailing_metadata(((TRAILING_KEY, metadata[TRAILING_KEY]),))
        return pb.Empty()

    async def UnaryCall(self, request: pb.SimpleRequest, context: Any) -> pb.SimpleResponse:
        metadata = dict(context.invocation_metadata())
        if INITIAL_KEY in metadata:
            await context.send_initial_metadata(((INITIAL_KEY, metadata[INITIAL_KEY]),))
        if TRAILING_KEY in metadata:
            context.set_trailing_metadata(((TRAILING_KEY, metadata[TRAILING_KEY]),))
        if request.HasField("response_status"):
            await context.abort(_CODES[request.response_status.code],
                                request.response_status.message)
        return pb.SimpleResponse(
            payload=pb.Payload(type=pb.COMPRESSABLE, body=b"\0" * request.response_size))


@dataclass(frozen=True)
class Outcome:
    """Everything a grpcio client sees of one call."""

    code: grpc.StatusCode
    details: str | None
    initial_metadata: tuple[tuple[str, Any], ...]
    trailing_metadata: tuple[tuple[str, Any], ...]
    response: bytes | None


def _md(metadata: Any) -> tuple[tuple[str, Any], ...]:
    return tuple((m[0], m[1]) for m in metadata or ())


def outcome(multicallable: Any, request: Any, **kwargs: Any) -> Outcome:
    """Calls a stub method and records what the client sees."""
    try:
        response, call = multicallable.with_call(request, timeout=10, **kwargs)
    except grpc.RpcError as err:
        return Outcome(err.code(), err.details(), _md(err.initial_metadata()),
                       _md(err.trailing_metadata()), None)
    return Outcome(call.code(), call.details(), _md(call.initial_metadata()),
                   _md(call.trailing_metadata()), response.SerializeToString())


# ---------------------------------------------------------------- the cases


def empty_unary(channel: grpc.Channel) -> Outcome:
    result = outcome(pb_grpc.TestServiceStub(channel).EmptyCall, pb.Empty())
    assert result.code is grpc.StatusCode.OK and result.response == b""
    return result


def large_unary(channel: grpc.Channel) -> Outcome:
    request = pb.SimpleRequest(response_type=pb.COMPRESSABLE, response_size=314159,
                               payload=pb.Payload(body=b"\0" * 271828))
    result = outcome(pb_grpc.TestServiceStub(channel).UnaryCall, request)
    assert result.code is grpc.StatusCode.OK and result.response is not None
    assert pb.SimpleResponse.FromString(result.response).payload.body == b"\0" * 314159
    return result


def custom_metadata(channel: grpc.Channel) -> Outcome:
    stub = pb_grpc.TestServiceStub(channel)
    metadata = ((INITIAL_KEY, "test_initial_metadata_value"),
                (TRAILING_KEY, b"\x0a\x0b\x0a\x0b\x0a\x0b"))
    request = pb.SimpleRequest(response_type=pb.COMPRESSABLE, response_size=314159,
                               payload=pb.Payload(body=b"\0" * 271828))
    result = outcome(stub.UnaryCall, request, metadata=metadata)
    assert result.code is grpc.StatusCode.OK
    assert (INITIAL_KEY, "test_initial_metadata_value") in result.initial_metadata
    assert (TRAILING_KEY, b"\x0a\x0b\x0a\x0b\x0a\x0b") in result.trailing_metadata
    empty = outcome(stub.EmptyCall, pb.Empty(), metadata=metadata)
    assert empty.initial_metadata == result.initial_metadata
    assert empty.trailing_metadata == result.trailing_metadata
    return result


def status_code_and_message(channel: grpc.Channel) -> Outcome:
    request = pb.SimpleRequest(response_type=pb.COMPRESSABLE, response_size=1,
                               payload=pb.Payload(body=b"\0"),
                               response_status=pb.EchoStatus(code=2,
                                                             message="test status message"))
    result = outcome(pb_grpc.TestServiceStub(channel).UnaryCall, request)
    assert result.code is grpc.StatusCode.UNKNOWN
    assert result.details == "test status message"
    return result


def special_status_message(channel: grpc.Channel) -> Outcome:
    request = pb.SimpleRequest(response_type=pb.COMPRESSABLE, response_size=1,
                               payload=pb.Payload(body=b"\0"),
                               response_status=pb.EchoStatus(code=2, message=SPECIAL_MESSAGE))
    result = outcome(pb_grpc.TestServiceStub(channel).UnaryCall, request)
    assert result.code is grpc.StatusCode.UNKNOWN
    assert result.details == SPECIAL_MESSAGE
    return result


def unimplemented_method(channel: grpc.Channel) -> Outcome:
    result = outcome(pb_grpc.TestServiceStub(channel).UnimplementedCall, pb.Empty())
    assert result.code is grpc.StatusCode.UNIMPLEMENTED
    return result


def unimplemented_service(channel: grpc.Channel) -> Outcome:
    result = outcome(pb_grpc.UnimplementedServiceStub(channel).UnimplementedCall, pb.Empty())
    assert result.code is grpc.StatusCode.UNIMPLEMENTED
    return result


CASES: dict[str, Callable[[grpc.Channel], Outcome]] = {
    "empty_unary": empty_unary,
    "large_unary": large_unary,
    "custom_metadata": custom_metadata,
    "status_code_and_message": status_code_and_message,
    "special_status_message": special_status_message,
    "unimplemented_method": unimplemented_method,
    "unimplemented_service": unimplemented_service,
}
