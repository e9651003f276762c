"""Python streaming handlers of every kind, sync and async, served by both
engines (the C++ host and grpcio) to grpcio clients: messages as they
arrive, metadata and trailers, a raise mid-stream, cancel and deadline
closing the handler with nothing left alive, and a client that never reads
(the server's memory stays flat)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from conftest import ENGINES, Server
from streams_kit import EngineServer, Host, Requests, closed, live, wait_closed, wait_idle


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[Host | EngineServer]:
    srv: Host | EngineServer = Host() if request.param == "cxx" else EngineServer(request.param)
    yield srv
    assert srv.stop() == 0


@pytest.fixture()
def channel(server: Host | EngineServer) -> Iterator[grpc.Channel]:
    with server.channel() as ch:
        yield ch


PY = "/e2e.PyStream/"


@pytest.mark.parametrize(("method", "prefix"), [("Chat", b"echo:"), ("AChat", b"aecho:")])
def test_python_bidi_handler_answers_each_message_as_it_arrives(
        channel: grpc.Channel, method: str, prefix: bytes) -> None:
    requests = Requests()
    responses = channel.stream_stream(PY + method)(iter(requests), timeout=20)
    for i in range(20):
        requests.send(b"%d" % i)
        assert next(responses) == prefix + b"%d" % i
    requests.close()
    assert list(responses) == []
    assert responses.code() == grpc.StatusCode.OK


@pytest.mark.parametrize("method", ["Chat", "AChat"])
def test_python_bidi_handler_streams_ten_thousand_messages(
        channel: grpc.Channel, method: str) -> None:
    n = 10_000
    got = list(channel.stream_stream(PY + method)((b"%d" % i for i in range(n)),
                                                 timeout=120))
    assert len(got) == n
    assert got[0].endswith(b":0") and got[-1].endswith(b":%d" % (n - 1))


def test_two_hundred_concurrent_async_python_bidi_streams(
        server: Host | EngineServer, channel: grpc.Channel) -> None:
    if isinstance(server, Host):
        _two_hundred_open_streams(channel)
        return
    # grpcio's server runs each RPC on a thread of its pool: give it one per
    # stream (the C++ host needs none).
    wide = Server("grpcio", "--max-workers", "256", module="host_stream_handlers")
    try:
        with wide.channel() as wide_channel:
            _two_hundred_open_streams(wide_channel)
    finally:
        assert wide.stop() == 0


def _two_hundred_open_streams(channel: grpc.Channel) -> None:
    n = 200
    all_open = threading.Barrier(n, timeout=60)
    errors: list[BaseException] = []

    def one(k: int) -> None:
        try:
            requests = Requests()
            responses = channel.stream_stream(PY + "AChat")(iter(requests), timeout=120)
            requests.send(b"%d" % k)
            assert next(responses) == b"aecho:%d" % k
            all_open.wait()  # every stream open at once, none holds a thread
            requests.send(b"again")
            assert next(responses) == b"aecho:again"
            requests.close()
            assert list(responses) == []
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert errors == []


@pytest.mark.parametrize("method", ["Total", "ATotal"])
def test_python_client_stream_handler_sees_every_message(
        channel: grpc.Channel, method: str) -> None:
    messages = [b"x" * i for i in range(200)]
    call = channel.stream_unary(PY + method)
    assert call(iter(messages), timeout=20) == str(sum(map(len, messages))).encode()
    assert call(iter([]), timeout=20) == b"0"  # an empty stream is a stream


@pytest.mark.parametrize("method", ["Count", "ACount"])
def test_python_server_stream_handler_sends_every_message(
        channel: grpc.Channel, method: str) -> None:
    got = list(channel.unary_stream(PY + method)(b"1000", timeout=30))
    assert got == [b"%d" % i for i in range(1000)]
    assert list(channel.unary_stream(PY + method)(b"0", timeout=30)) == []


def test_python_server_stream_sends_initial_metadata_and_trailers(
        channel: grpc.Channel) -> None:
    call = channel.unary_stream(PY + "Count")(b"3", timeout=10)
    assert next(call) == b"0"
    assert ("x-first", "yes") in call.initial_metadata()
    assert list(call) == [b"1", b"2"]
    assert ("x-count", "3") in call.trailing_metadata()


def test_python_stream_raising_mid_stream_ends_with_its_status_after_sent_messages(
        channel: grpc.Channel) -> None:
    got = []
    with pytest.raises(grpc.RpcError) as err:
        for message in channel.unary_stream(PY + "FailAfterTwo")(b"", timeout=10):
            got.append(message)
    assert got == [b"one", b"two"]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("method", ["Wait", "AWait"])
def test_python_stream_cancelled_mid_stream_closes_the_handler(
        channel: grpc.Channel, method: str) -> None:
    before = live(channel)
    closed_before = closed(channel).get(method, 0)
    requests = Requests()
    responses = channel.stream_stream(PY + method)(iter(requests), timeout=20)
    for i in range(3):
        requests.send(b"%d" % i)
        assert next(responses) == b"%d" % i
    responses.cancel()  # the handler waits in a read: it must be woken
    requests.close()
    wait_closed(channel, method, closed_before)
    wait_idle(channel, before)


@pytest.mark.parametrize("method", ["Wait", "AWait"])
def test_python_stream_deadline_mid_stream_closes_the_handler(
        channel: grpc.Channel, method: str) -> None:
    before = live(channel)
    closed_before = closed(channel).get(method, 0)
    requests = Requests()
    responses = channel.stream_stream(PY + method)(iter(requests), timeout=1.0)
    requests.send(b"one")
    assert next(responses) == b"one"
    with pytest.raises(grpc.RpcError) as err:
        next(responses)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    requests.close()
    wait_closed(channel, method, closed_before)
    wait_idle(channel, before)


def test_never_reading_client_of_python_server_stream_keeps_server_memory_bounded(
        server: Host | EngineServer) -> None:
    """A handler offering 1 GiB (1,024 new 1 MiB messages) to a client that
    reads nothing: each write waits for the transport, so the handler is
    slowed and the host holds a few messages, not the stream."""
    with server.channel() as channel:
        before = closed(channel)
        rss_before = server.status("VmRSS")
        call = channel.unary_stream(PY + "Flood")(b"1024 1048576", timeout=60)
        time.sleep(3)
        rss_after = server.status("VmRSS")
        yielded = closed(channel).get("Flood.yielded", 0) - before.get("Flood.yielded", 0)
        call.cancel()
        wait_closed(channel, "Flood", before.get("Flood", 0))
    growth_mib = (rss_after - rss_before) / 1024
    print(f"never-reading client of a Python stream: {yielded} MiB yielded, "
          f"host RSS {rss_before // 1024} -> {rss_after // 1024} MiB")
    assert yielded < 128
    assert growth_mib < 128


def test_async_stream_handler_may_rewrite_its_buffer_once_a_write_completed(
        channel: grpc.Channel) -> None:
    count = 300
    got = list(channel.unary_stream(PY + "AReuse")(str(count).encode(), timeout=20))
    assert got == [bytes([i % 256]) * 16 for i in range(count)]
