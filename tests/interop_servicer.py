"""grpc.testing.TestService, written as gRPC's Python interop server writes
it, and gRPC's credential-free interop client cases run against it.

The servicer follows gRPC's reference Python interop server
(src/python/grpcio_tests/tests/interop/service.py): it echoes the
``x-grpc-test-echo-initial`` / ``x-grpc-test-echo-trailing-bin`` metadata,
answers ``response_size`` zero bytes (streams: one message per
``response_parameters``), and ends with ``response_status`` if the request
has one.  The cases follow gRPC's Python interop client
(tests/interop/methods.py).  Both are used unchanged with grpcio's own
server and with pygrpc_ffi's (the C path).
"""

from __future__ import annotations

import asyncio
import pathlib
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
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


    def StreamingOutputCall(self, request: pb.StreamingOutputCallRequest,
                            context: grpc.ServicerContext) -> Iterator[Any]:
        _echo_status(request, context)
        for parameters in request.response_parameters:
            if parameters.interval_us:
                time.sleep(parameters.interval_us / 1e6)
            yield pb.StreamingOutputCallResponse(
                payload=pb.Payload(type=request.response_type, body=b"\0" * parameters.size))

    def StreamingInputCall(self, request_iterator: Iterator[pb.StreamingInputCallRequest],
                           context: grpc.ServicerContext) -> pb.StreamingInputCallResponse:
        size = 0
        for request in request_iterator:
            size += len(request.payload.body)
        return pb.StreamingInputCallResponse(aggregated_payload_size=size)

    def FullDuplexCall(self, request_iterator: Iterator[pb.StreamingOutputCallRequest],
                       context: grpc.ServicerContext) -> Iterator[Any]:
        _echo_metadata(context)
        for request in request_iterator:
            _echo_status(request, context)
            for parameters in request.response_parameters:
                if parameters.interval_us:
                    time.sleep(parameters.interval_us / 1e6)
                yield pb.StreamingOutputCallResponse(
                    payload=pb.Payload(type=request.payload.type, body=b"\0" * parameters.size))

    def HalfDuplexCall(self, request_iterator: Iterator[pb.StreamingOutputCallRequest],
                       context: grpc.ServicerContext) -> Iterator[Any]:
        return self.FullDuplexCall(request_iterator, context)


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


    async def StreamingOutputCall(self, request: pb.StreamingOutputCallRequest,
                                  context: Any) -> AsyncIterator[Any]:
        if request.HasField("response_status"):
            context.set_code(_CODES[request.response_status.code])
            context.set_details(request.response_status.message)
        for parameters in request.response_parameters:
            if parameters.interval_us:
                await asyncio.sleep(parameters.interval_us / 1e6)
            yield pb.StreamingOutputCallResponse(
                payload=pb.Payload(type=request.response_type, body=b"\0" * parameters.size))

    async def StreamingInputCall(self, request_iterator: AsyncIterator[Any],
                                 context: Any) -> pb.StreamingInputCallResponse:
        size = 0
        async for request in request_iterator:
            size += len(request.payload.body)
        return pb.StreamingInputCallResponse(aggregated_payload_size=size)

    async def FullDuplexCall(self, request_iterator: AsyncIterator[Any], context: Any) -> None:
        """The context.read() / await context.write() style."""
        metadata = dict(context.invocation_metadata())
        if INITIAL_KEY in metadata:
            await context.send_initial_metadata(((INITIAL_KEY, metadata[INITIAL_KEY]),))
        if TRAILING_KEY in metadata:
            context.set_trailing_metadata(((TRAILING_KEY, metadata[TRAILING_KEY]),))
        while True:
            request = await context.read()
            if request is grpc.aio.EOF:
                return
            if request.HasField("response_status"):
                context.set_code(_CODES[request.response_status.code])
                context.set_details(request.response_status.message)
            for parameters in request.response_parameters:
                if parameters.interval_us:
                    await asyncio.sleep(parameters.interval_us / 1e6)
                await context.write(pb.StreamingOutputCallResponse(
                    payload=pb.Payload(type=request.payload.type, body=b"\0" * parameters.size)))

    async def HalfDuplexCall(self, request_iterator: AsyncIterator[Any],
                             context: Any) -> AsyncIterator[Any]:
        async for request in request_iterator:
            for parameters in request.response_parameters:
                yield pb.StreamingOutputCallResponse(
                    payload=pb.Payload(type=request.payload.type, body=b"\0" * parameters.size))


@dataclass(frozen=True)
class Outcome:
    """Everything a grpcio client sees of one call."""

    code: grpc.StatusCode
    details: str | None
    initial_metadata: tuple[tuple[str, Any], ...]
    trailing_metadata: tuple[tuple[str, Any], ...]
    response: bytes | None
    responses: tuple[bytes, ...] = ()


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


def stream_outcome(call: Any, collect: Callable[[], list[Any]]) -> Outcome:
    """Runs ``collect`` (which reads the responses of ``call``) and records
    what the client sees of the streaming call."""
    received: list[Any] = []
    try:
        received = collect()
    except grpc.RpcError:
        pass
    return Outcome(call.code(), call.details(), _md(call.initial_metadata()),
                   _md(call.trailing_metadata()), None,
                   tuple(r.SerializeToString() for r in received))


class Pipe:
    """A request iterator fed by the test as it goes (gRPC's interop _Pipe)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = threading.Event()

    def add(self, value: Any) -> None:
        self._queue.put(value)

    def close(self) -> None:
        self._queue.put(None)

    def __iter__(self) -> Pipe:
        return self

    def __next__(self) -> Any:
        value = self._queue.get()
        if value is None:
            self._queue.put(None)
            raise StopIteration
        return value

    def __enter__(self) -> Pipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


OUTPUT_SIZES = (31415, 9, 2653, 58979)
INPUT_SIZES = (27182, 8, 1828, 45904)


def server_streaming(channel: grpc.Channel) -> Outcome:
    request = pb.StreamingOutputCallRequest(
        response_type=pb.COMPRESSABLE,
        response_parameters=[pb.ResponseParameters(size=size) for size in OUTPUT_SIZES])
    call = pb_grpc.TestServiceStub(channel).StreamingOutputCall(request, timeout=10)
    result = stream_outcome(call, lambda: list(call))
    assert result.code is grpc.StatusCode.OK
    assert [len(pb.StreamingOutputCallResponse.FromString(r).payload.body)
            for r in result.responses] == list(OUTPUT_SIZES)
    return result


def client_streaming(channel: grpc.Channel) -> Outcome:
    requests = (pb.StreamingInputCallRequest(payload=pb.Payload(body=b"\0" * size))
                for size in INPUT_SIZES)
    response, call = pb_grpc.TestServiceStub(channel).StreamingInputCall.with_call(
        requests, timeout=10)
    assert response.aggregated_payload_size == sum(INPUT_SIZES)
    return Outcome(call.code(), call.details(), _md(call.initial_metadata()),
                   _md(call.trailing_metadata()), response.SerializeToString())


def ping_pong(channel: grpc.Channel) -> Outcome:
    stub = pb_grpc.TestServiceStub(channel)
    received = []
    with Pipe() as pipe:
        call = stub.FullDuplexCall(pipe, timeout=10)
        for in_size, out_size in zip(INPUT_SIZES, OUTPUT_SIZES, strict=True):
            pipe.add(pb.StreamingOutputCallRequest(
                response_type=pb.COMPRESSABLE,
                response_parameters=[pb.ResponseParameters(size=out_size)],
                payload=pb.Payload(body=b"\0" * in_size)))
            response = next(call)  # one answer per request, before the next one
            assert len(response.payload.body) == out_size
            received.append(response)
    assert list(call) == []
    return Outcome(call.code(), call.details(), _md(call.initial_metadata()),
                   _md(call.trailing_metadata()), None,
                   tuple(r.SerializeToString() for r in received))


def empty_stream(channel: grpc.Channel) -> Outcome:
    call = pb_grpc.TestServiceStub(channel).FullDuplexCall(iter(()), timeout=10)
    result = stream_outcome(call, lambda: list(call))
    assert result.code is grpc.StatusCode.OK and result.responses == ()
    return result


def cancel_after_begin(channel: grpc.Channel) -> Outcome:
    with Pipe() as pipe:
        future = pb_grpc.TestServiceStub(channel).StreamingInputCall.future(pipe, timeout=10)
        future.cancel()
        assert future.cancelled()
        assert future.code() is grpc.StatusCode.CANCELLED
        return Outcome(future.code(), future.details(), (), (), None)


def cancel_after_first_response(channel: grpc.Channel) -> Outcome:
    with Pipe() as pipe:
        call = pb_grpc.TestServiceStub(channel).FullDuplexCall(pipe, timeout=10)
        pipe.add(pb.StreamingOutputCallRequest(
            response_type=pb.COMPRESSABLE,
            response_parameters=[pb.ResponseParameters(size=31415)],
            payload=pb.Payload(body=b"\0" * 27182)))
        first = next(call)
        call.cancel()
        try:
            next(call)
        except grpc.RpcError as err:
            assert err.code() is grpc.StatusCode.CANCELLED
        else:
            raise AssertionError("the call was not cancelled")
    return Outcome(call.code(), call.details(), (), (), None, (first.SerializeToString(),))


def timeout_on_sleeping_server(channel: grpc.Channel) -> Outcome:
    with Pipe() as pipe:
        call = pb_grpc.TestServiceStub(channel).FullDuplexCall(pipe, timeout=0.001)
        pipe.add(pb.StreamingOutputCallRequest(response_type=pb.COMPRESSABLE,
                                               payload=pb.Payload(body=b"\0" * 27182)))
        try:
            next(call)
        except grpc.RpcError as err:
            assert err.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        else:
            raise AssertionError("the deadline did not end the call")
    return Outcome(call.code(), call.details(), (), (), None)


def status_code_and_message_stream(channel: grpc.Channel) -> Outcome:
    request = pb.StreamingOutputCallRequest(
        response_type=pb.COMPRESSABLE, response_parameters=[pb.ResponseParameters(size=1)],
        payload=pb.Payload(body=b"\0"),
        response_status=pb.EchoStatus(code=2, message="test status message"))
    call = pb_grpc.TestServiceStub(channel).FullDuplexCall(iter((request,)), timeout=10)
    result = stream_outcome(call, lambda: list(call))
    assert result.code is grpc.StatusCode.UNKNOWN
    assert result.details == "test status message"
    return result


def custom_metadata_stream(channel: grpc.Channel) -> Outcome:
    metadata = ((INITIAL_KEY, "test_initial_metadata_value"),
                (TRAILING_KEY, b"\x0a\x0b\x0a\x0b\x0a\x0b"))
    request = pb.StreamingOutputCallRequest(
        response_type=pb.COMPRESSABLE, response_parameters=[pb.ResponseParameters(size=314159)],
        payload=pb.Payload(body=b"\0" * 271828))
    call = pb_grpc.TestServiceStub(channel).FullDuplexCall(iter((request,)), timeout=10,
                                                           metadata=metadata)
    result = stream_outcome(call, lambda: list(call))
    assert result.code is grpc.StatusCode.OK
    assert (INITIAL_KEY, "test_initial_metadata_value") in result.initial_metadata
    assert (TRAILING_KEY, b"\x0a\x0b\x0a\x0b\x0a\x0b") in result.trailing_metadata
    return result


CASES: dict[str, Callable[[grpc.Channel], Outcome]] = {
    "empty_unary": empty_unary,
    "large_unary": large_unary,
    "custom_metadata": custom_metadata,
    "status_code_and_message": status_code_and_message,
    "special_status_message": special_status_message,
    "unimplemented_method": unimplemented_method,
    "unimplemented_service": unimplemented_service,
    "server_streaming": server_streaming,
    "client_streaming": client_streaming,
    "ping_pong": ping_pong,
    "empty_stream": empty_stream,
    "cancel_after_begin": cancel_after_begin,
    "cancel_after_first_response": cancel_after_first_response,
    "timeout_on_sleeping_server": timeout_on_sleeping_server,
    "status_code_and_message_stream": status_code_and_message_stream,
    "custom_metadata_stream": custom_metadata_stream,
}

#: The cases that need streaming.
STREAMING_CASES = frozenset(list(CASES)[7:])
