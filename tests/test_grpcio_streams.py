"""Streams through the pip-only grpcio engine: a grpcio client calls
streaming handlers of every kind, sync and async, through the C ABI's
stream functions; metadata, errors mid-stream, cancellation, and the
wrong number of messages to a one-request method."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from test_streams import SVC, register_all_kinds

from pygrpc_ffi import GrpcRequest, GrpcResponse, GrpcService, NotFound
from pygrpc_ffi.grpcio_server import GrpcioServer, start

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(service: GrpcService) -> Iterator[GrpcioServer]:
    register_all_kinds(service)
    srv = start(service, "127.0.0.1:0", max_workers=16)
    try:
        yield srv
    finally:
        srv.stop(0)


@pytest.fixture
def channel(server: GrpcioServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.mark.parametrize("prefix", ["", "A"])
def test_every_kind_through_the_engine(channel: grpc.Channel, prefix: str) -> None:
    assert channel.unary_unary(f"/{SVC}/Unary")(b"x") == b"u:x"
    total = channel.stream_unary(f"/{SVC}/{prefix}Total")
    assert total(iter([b"1", b"2", b"3"])) == b"6"
    assert total(iter([])) == b"0"
    count = channel.unary_stream(f"/{SVC}/{prefix}Count")
    assert list(count(b"4")) == [b"0", b"1", b"2", b"3"]
    assert list(count(b"0")) == []
    chat = channel.stream_stream(f"/{SVC}/{prefix}Chat")
    assert list(chat(iter([b"a", b"b"]))) == [b"echo:a", b"echo:b"]


def test_ping_pong_answers_before_the_client_half_closes(channel: grpc.Channel) -> None:
    sent: list[bytes] = []
    answered = threading.Event()
    done = threading.Event()

    def requests() -> Iterator[bytes]:
        sent.append(b"ping")
        yield b"ping"
        assert answered.wait(10)  # the answer came while the stream is open
        yield b"again"
        done.wait(0)

    chat = channel.stream_stream(f"/{SVC}/Chat")
    answers = []
    for answer in chat(requests()):
        answers.append(answer)
        answered.set()
    assert answers == [b"echo:ping", b"echo:again"]


@pytest.mark.parametrize("method", ["Unary", "Count"])
@pytest.mark.parametrize("requests", [[], [b"1", b"2"]])
def test_zero_or_two_messages_to_a_one_request_method(channel: grpc.Channel, method: str,
                                                      requests: list[bytes]) -> None:
    call = channel.stream_stream(f"/{SVC}/{method}")
    with pytest.raises(grpc.RpcError) as info:
        list(call(iter(requests)))
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert info.value.details() == f'"/{SVC}/{method}" requires exactly one request message.'


def test_error_mid_stream_after_messages(service: GrpcService, channel: grpc.Channel) -> None:
    @service.method(SVC, "Fails", response_streaming=True)
    def fails(request: GrpcRequest) -> Iterator[GrpcResponse]:
        yield GrpcResponse(b"one", metadata={"x-initial": "i"})
        yield GrpcResponse(b"two", trailers={"x-trailer": "t"})
        raise NotFound("gone")

    call = channel.unary_stream(f"/{SVC}/Fails")(b"")
    got = []
    with pytest.raises(grpc.RpcError) as info:
        for message in call:
            got.append(message)
    assert got == [b"one", b"two"]
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "gone"
    assert dict(call.initial_metadata())["x-initial"] == "i"


def test_client_cancel_mid_stream_closes_the_handler(service: GrpcService,
                                                     channel: grpc.Channel) -> None:
    closed = threading.Event()

    @service.method(SVC, "Endless", response_streaming=True)
    def endless(request: GrpcRequest) -> Iterator[bytes]:
        try:
            while True:
                yield b"tick"
        finally:
            closed.set()

    call = channel.unary_stream(f"/{SVC}/Endless")(b"")
    assert next(call) == b"tick"
    call.cancel()
    assert closed.wait(10)
    # The engine is unharmed.
    assert channel.unary_unary(f"/{SVC}/Unary")(b"y") == b"u:y"


def test_deadline_mid_stream_reaches_a_waiting_reader(service: GrpcService,
                                                      channel: grpc.Channel) -> None:
    ended = threading.Event()

    @service.method(SVC, "Waits", request_streaming=True)
    def waits(requests: Iterator[GrpcRequest]) -> bytes:
        try:
            for _ in requests:
                pass
        finally:
            ended.set()
        return b""

    def slow() -> Iterator[bytes]:
        yield b"1"
        time.sleep(3)

    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        channel.stream_unary(f"/{SVC}/Waits")(slow(), timeout=0.3)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert ended.wait(10)
    assert time.monotonic() - started < 10


def test_a_slow_reader_holds_back_a_fast_producer(service: GrpcService,
                                                  channel: grpc.Channel) -> None:
    produced = [0]

    @service.method(SVC, "Flood", response_streaming=True)
    def flood(request: GrpcRequest) -> Iterator[bytes]:
        chunk = b"x" * 65536
        for _ in range(10_000):
            produced[0] += 1
            yield chunk

    call = channel.unary_stream(f"/{SVC}/Flood")(b"")
    next(call)
    time.sleep(0.5)
    # Writes wait for the transport (flow-control windows of a few MiB at
    # most): far fewer than all 10,000 were produced.
    assert produced[0] < 1_000
    call.cancel()


@pytest.mark.timeout(10)
def test_a_client_writing_back_to_back_is_held_back_then_gets_every_echo(
        service: GrpcService, channel: grpc.Channel) -> None:
    # The client writes 8 KiB messages back to back (grpcio writes the next
    # once the transport took the last) while the handler reads nothing: the
    # server's HTTP/2 window, not the server's memory, must stop it.  With
    # gRPC core's BDP probing on, the window grew to MiBs (~750 messages got
    # through in a second) and a long burst took the handler many seconds to
    # drain after the client half-closed.
    release = threading.Event()
    sent = [0]
    count, payload = 2_000, b"x" * 8192

    @service.method(SVC, "SlowEcho", request_streaming=True, response_streaming=True)
    def slow_echo(requests: Iterator[GrpcRequest]) -> Iterator[bytes]:
        for i, request in enumerate(requests):
            if i == 0:
                assert release.wait(10)
            yield b"%d" % len(request.payload)

    def requests() -> Iterator[bytes]:
        for _ in range(count):
            sent[0] += 1
            yield payload

    call = channel.stream_stream(f"/{SVC}/SlowEcho")(requests())
    time.sleep(1.0)
    held_back = sent[0]
    release.set()
    answers = list(call)
    assert held_back < 64, f"{held_back} messages of 8 KiB buffered for a handler not reading"
    assert answers == [b"8192"] * count
    assert call.code() is grpc.StatusCode.OK


def test_many_concurrent_streams(channel: grpc.Channel) -> None:
    chat = channel.stream_stream(f"/{SVC}/AChat")
    calls = [chat(iter([b"%d" % i for i in range(20)])) for _ in range(12)]
    for call in calls:
        assert len(list(call)) == 20
