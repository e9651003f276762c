"""Python streaming handlers of every kind over the network, on both
engines, with grpcio clients: order and content of messages, empty and long
streams, many concurrent streams, errors mid-stream, and cancellation and
deadlines reaching the handler."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from conftest import ENGINES, Server

pytestmark = pytest.mark.timeout(180)

SVC = "e2e.Streams"


@pytest.fixture(scope="module", params=ENGINES)
def stream_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    server = Server(request.param, module="stream_handlers")
    yield server
    assert server.stop() == 0


@pytest.fixture()
def ch(stream_server: Server) -> Iterator[grpc.Channel]:
    with stream_server.channel() as channel:
        yield channel


def closed_count(channel: grpc.Channel, name: str) -> int:
    return int(channel.unary_unary("/e2e.StreamControl/Closed")(name.encode(), timeout=10))


def wait_closed(channel: grpc.Channel, name: str, before: int) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if closed_count(channel, name) > before:
            return True
        time.sleep(0.05)
    return False


def test_client_stream_reads_every_message(ch: grpc.Channel) -> None:
    total = ch.stream_unary(f"/{SVC}/Total")
    assert total(iter([b"ab", b"", b"cde"]), timeout=20) == b"5"
    assert total(iter([]), timeout=20) == b"0"


def test_server_stream_sends_every_message_in_order(ch: grpc.Channel) -> None:
    count = ch.unary_stream(f"/{SVC}/Count")
    assert list(count(b"5", timeout=20)) == [b"0", b"1", b"2", b"3", b"4"]
    assert list(count(b"0", timeout=20)) == []


@pytest.mark.parametrize("method", ["Echo", "AsyncEcho"])
def test_bidi_echo_of_ten_thousand_messages(ch: grpc.Channel, method: str) -> None:
    sent = [b"%05d" % i for i in range(10_000)]
    answers = list(ch.stream_stream(f"/{SVC}/{method}")(iter(sent), timeout=120))
    assert answers == sent


@pytest.mark.parametrize("method", ["Echo", "AsyncEcho"])
def test_two_hundred_concurrent_bidi_streams(ch: grpc.Channel, method: str) -> None:
    call = ch.stream_stream(f"/{SVC}/{method}")

    def one(n: int) -> list[bytes]:
        return list(call(iter([b"%d-%d" % (n, i) for i in range(10)]), timeout=120))

    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(one, range(200)))
    assert all(r == [b"%d-%d" % (n, i) for i in range(10)] for n, r in enumerate(results))


def test_error_mid_stream_after_two_messages(ch: grpc.Channel) -> None:
    call = ch.unary_stream(f"/{SVC}/FailThird")(b"", timeout=20)
    got = []
    with pytest.raises(grpc.RpcError) as info:
        for message in call:
            got.append(message)
    assert got == [b"one", b"two"]
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == "third is refused"
    assert dict(call.initial_metadata()).get("x-initial") == "i"
    # Trailers of the answers belong to a stream that succeeds; a failure
    # sends its own (a GrpcError's trailers), as a failed unary call does.
    assert "x-trailer" not in dict(call.trailing_metadata())


@pytest.mark.parametrize("method", ["Endless", "AsyncEndless"])
def test_client_cancel_closes_the_handler_generator(ch: grpc.Channel, method: str) -> None:
    before = closed_count(ch, method)
    call = ch.unary_stream(f"/{SVC}/{method}")(b"", timeout=60)
    assert next(call) == b"tick"
    call.cancel()
    assert wait_closed(ch, method, before)


@pytest.mark.parametrize("method", ["Endless", "AsyncEndless"])
def test_every_cancel_of_a_stream_written_as_fast_as_possible_closes_its_handler(
        ch: grpc.Channel, method: str) -> None:
    # The handler has many small messages taken and not yet sent when the
    # cancel comes: every one is dropped and its write ended, so the handler
    # learns of the cancel at its next write, however many were queued.
    for _ in range(20):
        before = closed_count(ch, method)
        call = ch.unary_stream(f"/{SVC}/{method}")(b"", timeout=60)
        assert next(call) == b"tick"
        call.cancel()
        assert wait_closed(ch, method, before)


def test_deadline_mid_stream_ends_a_handler_waiting_for_messages(ch: grpc.Channel) -> None:
    before = closed_count(ch, "Drain")
    gate = threading.Event()

    def slow() -> Iterator[bytes]:
        yield b"first"
        gate.wait(10)

    with pytest.raises(grpc.RpcError) as info:
        ch.stream_unary(f"/{SVC}/Drain")(slow(), timeout=0.5)
    gate.set()
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_closed(ch, "Drain", before)


@pytest.mark.parametrize("requests", [[], [b"1", b"2"]])
def test_one_request_stream_method_refuses_zero_or_two(ch: grpc.Channel,
                                                       requests: list[bytes]) -> None:
    with pytest.raises(grpc.RpcError) as info:
        list(ch.stream_stream(f"/{SVC}/Count")(iter(requests), timeout=20))
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert info.value.details() == f'"/{SVC}/Count" requires exactly one request message.'


def test_streams_leave_no_calls_or_messages_alive(ch: grpc.Channel) -> None:
    for _ in range(3):
        list(ch.stream_stream(f"/{SVC}/Echo")(iter([b"x"] * 100), timeout=20))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        # The Live call itself (and its request message) is alive while it answers.
        if ch.unary_unary("/e2e.StreamControl/Live")(b"", timeout=10) == b"1 1":
            break
        time.sleep(0.05)
    assert ch.unary_unary("/e2e.StreamControl/Live")(b"", timeout=10) == b"1 1"
