"""Streaming handlers through the C path (GrpcService.call_stream drives the
call as a host does): every RPC kind, sync and async, typed streams, errors
mid-stream, cancellation and deadlines reaching generators, flat memory."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from google.protobuf import wrappers_pb2

from pygrpc_ffi import (
    GrpcRequest,
    GrpcResponse,
    GrpcService,
    InvalidArgument,
    StatusCode,
    live_objects,
)

SVC = "pkg.Stream"


def register_all_kinds(service: GrpcService) -> None:
    @service.method(SVC, "Unary")
    def unary(request: GrpcRequest) -> bytes:
        return b"u:" + bytes(request.payload)

    @service.method(SVC, "Total", request_streaming=True)
    def total(requests: Iterator[GrpcRequest]) -> bytes:
        return str(sum(int(bytes(r.payload)) for r in requests)).encode()

    @service.method(SVC, "Count", response_streaming=True)
    def count(request: GrpcRequest) -> Iterator[bytes]:
        for i in range(int(bytes(request.payload))):
            yield str(i).encode()

    @service.method(SVC, "Chat", request_streaming=True, response_streaming=True)
    def chat(requests: Iterator[GrpcRequest]) -> Iterator[bytes]:
        for r in requests:
            yield b"echo:" + bytes(r.payload)

    @service.method(SVC, "ATotal", request_streaming=True)
    async def atotal(requests: AsyncIterator[GrpcRequest]) -> bytes:
        n = 0
        async for r in requests:
            n += int(bytes(r.payload))
        return str(n).encode()

    @service.method(SVC, "ACount", response_streaming=True)
    async def acount(request: GrpcRequest) -> AsyncIterator[bytes]:
        for i in range(int(bytes(request.payload))):
            await asyncio.sleep(0)
            yield str(i).encode()

    @service.method(SVC, "AChat", request_streaming=True, response_streaming=True)
    async def achat(requests: AsyncIterator[GrpcRequest]) -> AsyncIterator[bytes]:
        async for r in requests:
            yield b"echo:" + bytes(r.payload)


@pytest.fixture
def streams(service: GrpcService) -> GrpcService:
    register_all_kinds(service)
    return service


@pytest.mark.parametrize("prefix", ["", "A"])
def test_client_stream_reads_every_message_and_answers_once(streams: GrpcService,
                                                            prefix: str) -> None:
    result = streams.call_stream(SVC, prefix + "Total", [b"1", b"2", b"39"])
    assert result.code is StatusCode.OK
    assert result.payload == b"42"
    assert result.messages == (b"42",)


@pytest.mark.parametrize("prefix", ["", "A"])
def test_empty_client_stream_is_an_empty_iterator(streams: GrpcService, prefix: str) -> None:
    result = streams.call_stream(SVC, prefix + "Total", [])
    assert (result.code, result.payload) == (StatusCode.OK, b"0")


@pytest.mark.parametrize("prefix", ["", "A"])
def test_server_stream_sends_every_yielded_message_in_order(streams: GrpcService,
                                                            prefix: str) -> None:
    result = streams.call_stream(SVC, prefix + "Count", [b"5"])
    assert result.code is StatusCode.OK
    assert result.messages == (b"0", b"1", b"2", b"3", b"4")
    assert streams.call_stream(SVC, prefix + "Count", [b"0"]).messages == ()


@pytest.mark.parametrize("prefix", ["", "A"])
def test_bidi_stream_answers_each_message(streams: GrpcService, prefix: str) -> None:
    result = streams.call_stream(SVC, prefix + "Chat", [b"a", b"", b"c"])
    assert result.code is StatusCode.OK
    assert result.messages == (b"echo:a", b"echo:", b"echo:c")


@pytest.mark.parametrize("method", ["Unary", "Count"])
@pytest.mark.parametrize("requests", [[], [b"1", b"2"]])
def test_one_request_methods_refuse_zero_or_two_messages(streams: GrpcService, method: str,
                                                         requests: list[bytes]) -> None:
    result = streams.call_stream(SVC, method, requests)
    assert result.code is StatusCode.UNIMPLEMENTED
    assert result.message == f'"/{SVC}/{method}" requires exactly one request message.'


def test_unary_through_the_stream_helper_matches_call(streams: GrpcService) -> None:
    assert streams.call_stream(SVC, "Unary", [b"x"]).messages == (b"u:x",)
    assert streams.call(SVC, "Unary", b"x").payload == b"u:x"


def test_ten_thousand_message_bidi_stream_keeps_messages_flat(streams: GrpcService) -> None:
    peak = [0]

    def requests() -> Iterator[bytes]:
        for i in range(10_000):
            peak[0] = max(peak[0], live_objects()["messages"])
            yield b"%d" % i

    result = streams.call_stream(SVC, "Chat", requests())
    assert result.code is StatusCode.OK
    assert len(result.messages) == 10_000
    assert result.messages[-1] == b"echo:9999"
    assert peak[0] <= 2  # pulled one at a time, each dropped after use


def test_kept_stream_messages_stay_valid(service: GrpcService) -> None:
    kept: list[memoryview] = []

    @service.method(SVC, "Keep", request_streaming=True)
    def keep(requests: Iterator[GrpcRequest]) -> bytes:
        for r in requests:
            kept.append(r.payload_view[1:])
        return b"kept"

    assert service.call_stream(SVC, "Keep", [b"abc", b"def"]).payload == b"kept"
    assert [bytes(v) for v in kept] == [b"bc", b"ef"]
    assert live_objects()["messages"] == 2
    kept.clear()
    gc.collect()
    assert live_objects()["messages"] == 0


def test_stream_requests_share_the_call_fields(service: GrpcService) -> None:
    seen: list[tuple[str, str, Any, bool]] = []

    @service.method(SVC, "Fields", request_streaming=True)
    def fields(requests: Iterator[GrpcRequest]) -> bytes:
        for r in requests:
            seen.append((r.service_name, r.method_name, r.metadata.get("x-k"), r.is_active()))
        return b""

    service.call_stream(SVC, "Fields", [b"1", b"2"], metadata={"x-k": "v"})
    assert seen == [(SVC, "Fields", "v", True)] * 2


@pytest.mark.parametrize("asynchronous", [False, True])
def test_error_mid_stream_ends_with_mapped_status_after_sent_messages(
        service: GrpcService, asynchronous: bool) -> None:
    if asynchronous:
        @service.method(SVC, "Fail", response_streaming=True)
        async def fail(request: GrpcRequest) -> AsyncIterator[bytes]:
            yield b"one"
            yield b"two"
            raise InvalidArgument("bad third")
    else:
        @service.method(SVC, "Fail", response_streaming=True)
        def fail(request: GrpcRequest) -> Iterator[bytes]:
            yield b"one"
            yield b"two"
            raise InvalidArgument("bad third")

    result = service.call_stream(SVC, "Fail", [b""])
    assert result.messages == (b"one", b"two")
    assert (result.code, result.message) == (StatusCode.INVALID_ARGUMENT, "bad third")


def test_streamed_grpc_responses_carry_initial_metadata_and_trailers(
        service: GrpcService) -> None:
    @service.method(SVC, "Meta", response_streaming=True)
    def meta(request: GrpcRequest) -> Iterator[GrpcResponse]:
        yield GrpcResponse(b"first", metadata={"x-initial": "1"})
        yield GrpcResponse(b"last", trailers={"x-trailer": "2"})

    result = service.call_stream(SVC, "Meta", [b""])
    assert result.messages == (b"first", b"last")
    assert result.initial_metadata["x-initial"] == "1"
    assert result.trailing_metadata["x-trailer"] == "2"


def test_initial_metadata_after_the_first_message_fails_the_call(
        service: GrpcService) -> None:
    @service.method(SVC, "Late", response_streaming=True)
    def late(request: GrpcRequest) -> Iterator[GrpcResponse]:
        yield GrpcResponse(b"first")
        yield GrpcResponse(b"second", metadata={"x-late": "1"})

    result = service.call_stream(SVC, "Late", [b""])
    assert result.messages == (b"first",)
    assert result.code is StatusCode.INTERNAL


@pytest.mark.parametrize("asynchronous", [False, True])
def test_deadline_mid_stream_closes_the_generator_and_runs_finally(
        service: GrpcService, asynchronous: bool) -> None:
    closed = threading.Event()

    if asynchronous:
        @service.method(SVC, "Forever", request_streaming=True, response_streaming=True)
        async def forever(requests: AsyncIterator[GrpcRequest]) -> AsyncIterator[bytes]:
            try:
                async for r in requests:
                    yield bytes(r.payload)
            finally:
                closed.set()
    else:
        @service.method(SVC, "Forever", request_streaming=True, response_streaming=True)
        def forever(requests: Iterator[GrpcRequest]) -> Iterator[bytes]:
            try:
                for r in requests:
                    yield bytes(r.payload)
            finally:
                closed.set()

    gate = threading.Event()

    def slow_requests() -> Iterator[bytes]:
        yield b"first"
        gate.wait(5)  # the client stalls past the deadline
        yield b"late"

    started = time.monotonic()
    result = service.call_stream(SVC, "Forever", slow_requests(), timeout=0.2)
    assert result.code is StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 4
    gate.set()
    assert closed.wait(5)


def test_typed_streams_parse_and_serialize_each_message(service: GrpcService) -> None:
    @service.method(SVC, "Typed", request_streaming=True, response_streaming=True,
                    request_type=wrappers_pb2.StringValue,
                    response_type=wrappers_pb2.StringValue)
    def typed(messages: Iterator[wrappers_pb2.StringValue]) -> Iterator[Any]:
        for m in messages:
            yield wrappers_pb2.StringValue(value=m.value.upper())

    requests = [wrappers_pb2.StringValue(value=v).SerializeToString() for v in ("ab", "cd")]
    result = service.call_stream(SVC, "Typed", requests)
    assert [wrappers_pb2.StringValue.FromString(m).value for m in result.messages] == ["AB",
                                                                                     "CD"]
    bad = service.call_stream(SVC, "Typed", [b"\xff\xff"])
    assert bad.code is StatusCode.INVALID_ARGUMENT


def test_streaming_handler_object_declares_its_kinds(service: GrpcService) -> None:
    class Doubler:
        def supports_streaming_requests(self) -> bool:
            return True

        def supports_streaming_responses(self) -> bool:
            return True

        def handle_request(self, requests: Iterator[GrpcRequest]) -> Iterator[bytes]:
            for r in requests:
                yield bytes(r.payload) * 2

    service.register_handler("pkg.Doubler", Doubler())
    assert service.call_stream("pkg.Doubler", "Any", [b"ab", b"c"]).messages == (b"abab",
                                                                                 b"cc")


def test_many_concurrent_bidi_streams_all_complete(streams: GrpcService) -> None:
    results: list[Any] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        r = streams.call_stream(SVC, "AChat" if n % 2 else "Chat",
                                [b"%d" % i for i in range(50)])
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 40
    assert all(r.code is StatusCode.OK and len(r.messages) == 50 for r in results)


def test_lent_request_bytes_of_a_stream_call_are_copied_for_python(
        service: GrpcService) -> None:
    """A host may lend the request (pgf_call_set_request): a view the handler
    keeps must not see those bytes change (or be freed) after the call."""
    from pygrpc_ffi._native import ffi, lib

    from pygrpc_ffi._host.local_stream import LocalStream
    from pygrpc_ffi._runtime.handles import handles

    kept: list[memoryview] = []

    @service.method(SVC, "Keep", response_streaming=True)
    def keep(request: GrpcRequest) -> Iterator[bytes]:
        kept.append(request.payload)
        yield b"ok"

    lent = ffi.new("uint8_t[]", b"lent")
    path = f"/{SVC}/Keep".encode()
    call = lib.pgf_call_new(path, len(path))
    assert lib.pgf_call_set_request(call, lent, 4) == lib.PGF_OK
    host = LocalStream(())
    handle = handles.add(host)
    assert lib.pgf_call_set_stream(call, lib._pgf_py_stream_event, handle) == lib.PGF_OK
    assert lib.pgf_dispatch(service._registry, call) == lib.PGF_OK
    assert lib.pgf_call_status(call) == 0
    assert host.responses == [b"ok"]
    lib.pgf_call_unref(call)
    handles.pop(handle)
    lent[0:4] = b"XXXX"  # the host reuses its buffer
    assert bytes(kept[0]) == b"lent"
    kept.clear()
