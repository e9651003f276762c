"""Streams through the host, in the bench's build (streams_kit.Host): the
bench's C bidi echo (--native-echo) called with every RPC kind by grpcio
clients and by a raw HTTP/2 client, its C server stream
(--native-server-stream), unary Python methods given zero or
two request messages, cancellation and deadlines mid stream, and what streams
cost the host (memory per stream, no thread per stream, bounded memory for a
client that never reads)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from streams_kit import COUNT, ECHO, UNARY_C, UNARY_PY, Host, Requests, live, wait_idle


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    h = Host()
    yield h
    assert h.stop() == 0


@pytest.fixture()
def channel(host: Host) -> Iterator[grpc.Channel]:
    with host.channel() as ch:
        yield ch


# ----------------------------------------------------- the C echo, every kind


def test_native_echo_answers_a_unary_call(channel: grpc.Channel) -> None:
    assert channel.unary_unary(ECHO)(b"hello", timeout=10) == b"hello"
    assert channel.unary_unary(ECHO)(b"", timeout=10) == b""


def test_native_echo_answers_a_client_stream_of_one(channel: grpc.Channel) -> None:
    assert channel.stream_unary(ECHO)(iter([b"only"]), timeout=10) == b"only"


def test_native_echo_answers_a_server_stream(channel: grpc.Channel) -> None:
    assert list(channel.unary_stream(ECHO)(b"one", timeout=10)) == [b"one"]


def test_native_echo_ping_pong_answers_each_message_before_the_next(
        channel: grpc.Channel) -> None:
    requests = Requests()
    responses = channel.stream_stream(ECHO)(iter(requests), timeout=20)
    for i in range(20):
        message = b"ping %d" % i * (i + 1)
        requests.send(message)
        assert next(responses) == message  # answered while the stream stays open
    requests.close()
    assert list(responses) == []
    assert responses.code() == grpc.StatusCode.OK


def test_native_echo_empty_stream_ends_ok_without_messages(channel: grpc.Channel) -> None:
    call = channel.stream_stream(ECHO)(iter([]), timeout=10)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


def test_native_echo_streams_ten_thousand_messages_in_order(channel: grpc.Channel) -> None:
    n = 10_000
    got = list(channel.stream_stream(ECHO)((b"%d" % i for i in range(n)), timeout=120))
    assert got == [b"%d" % i for i in range(n)]


def test_native_echo_large_messages_arrive_whole(channel: grpc.Channel) -> None:
    # Over ~100 KiB gRPC delivers several slices: the host flattens those.
    messages = [bytes([i]) * (3 * 1024 * 1024 + i) for i in range(4)]
    assert list(channel.stream_stream(ECHO)(iter(messages), timeout=60)) == messages


def test_two_hundred_concurrent_bidi_streams_are_all_served(channel: grpc.Channel) -> None:
    n, rounds = 200, 10
    all_open = threading.Barrier(n, timeout=60)
    errors: list[BaseException] = []

    def one(k: int) -> None:
        try:
            requests = Requests()
            responses = channel.stream_stream(ECHO)(iter(requests), timeout=120)
            requests.send(b"%d-first" % k)
            assert next(responses) == b"%d-first" % k
            all_open.wait()  # every stream is open at once
            for r in range(rounds):
                requests.send(b"%d-%d" % (k, r))
                assert next(responses) == b"%d-%d" % (k, r)
            requests.close()
            assert list(responses) == []
            assert responses.code() == grpc.StatusCode.OK
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert errors == []


def test_cancel_mid_stream_leaves_the_host_healthy_and_idle(channel: grpc.Channel) -> None:
    before = live(channel)
    requests = Requests()
    responses = channel.stream_stream(ECHO)(iter(requests), timeout=20)
    for i in range(3):
        requests.send(b"%d" % i)
        assert next(responses) == b"%d" % i
    responses.cancel()
    with pytest.raises(grpc.RpcError) as err:
        next(responses)
    assert err.value.code() == grpc.StatusCode.CANCELLED
    requests.close()
    assert channel.unary_unary(ECHO)(b"after", timeout=10) == b"after"
    wait_idle(channel, before)


def test_deadline_mid_stream_leaves_the_host_healthy_and_idle(channel: grpc.Channel) -> None:
    before = live(channel)
    requests = Requests()
    responses = channel.stream_stream(ECHO)(iter(requests), timeout=1.0)
    requests.send(b"one")
    assert next(responses) == b"one"
    # The echo now waits for a message that never comes: the deadline ends it.
    with pytest.raises(grpc.RpcError) as err:
        next(responses)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    requests.close()
    assert list(channel.stream_stream(ECHO)(iter([b"a", b"b"]), timeout=10)) == [b"a", b"b"]
    wait_idle(channel, before)


def test_client_that_stops_mid_stream_with_pending_write(channel: grpc.Channel) -> None:
    """Many messages in flight and a cancel: pending reads and writes of the
    host complete and every object is released."""
    before = live(channel)
    for _ in range(5):
        responses = channel.stream_stream(ECHO)((b"x" * 65536 for _ in range(1000)),
                                                timeout=20)
        next(responses)
        responses.cancel()
    assert channel.unary_unary(ECHO)(b"still", timeout=10) == b"still"
    wait_idle(channel, before)


# ----------------------------------------------------------- the C unary echo


@pytest.mark.parametrize("payload", [b"", b"hello", b"x" * 1024, b"y" * 1025,
                                     bytes(range(256)) * 4096])
def test_native_unary_echo_answers_its_request(channel: grpc.Channel, payload: bytes) -> None:
    # Both sides of the 1 KiB copy limit, and a request gRPC delivers in
    # several slices (1 MiB).
    assert channel.unary_unary(UNARY_C)(payload, timeout=10) == payload


def test_native_unary_echo_given_two_messages_is_unimplemented(channel: grpc.Channel) -> None:
    before = live(channel)
    with pytest.raises(grpc.RpcError) as err:
        channel.stream_unary(UNARY_C)(iter([b"a", b"b"]), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    wait_idle(channel, before)


# ------------------------------------------------------- the C server stream

MESSAGE16 = b"0123456789abcdef"


@pytest.mark.parametrize("count", [0, 1, 2, 3, 20_000])
def test_native_server_stream_sends_the_count_asked_in_order(
        channel: grpc.Channel, count: int) -> None:
    # Each write completes as gRPC takes it and the next one waits behind
    # it: every message arrives once, in order, and the status after them.
    call = channel.unary_stream(COUNT)(b"%d" % count, timeout=60)
    assert list(call) == [MESSAGE16] * count
    assert call.code() == grpc.StatusCode.OK


@pytest.mark.parametrize("request_", [b"", b"x", b"-1", b"12345678901234"])
def test_native_server_stream_refuses_a_request_that_is_no_count(
        channel: grpc.Channel, request_: bytes) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(channel.unary_stream(COUNT)(request_, timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_native_server_stream_cancelled_mid_stream_leaves_nothing(
        channel: grpc.Channel) -> None:
    before = live(channel)
    for _ in range(5):
        responses = channel.unary_stream(COUNT)(b"1000000000", timeout=30)
        for _ in range(100):
            assert next(responses) == MESSAGE16
        responses.cancel()
    assert channel.unary_unary(ECHO)(b"still", timeout=10) == b"still"
    wait_idle(channel, before)


def test_never_reading_client_of_native_server_stream_keeps_host_memory_bounded(
        host: Host) -> None:
    """A server stream of 2^40 messages to a client that reads none: the
    writes stop once the transport's windows are full (the handler's write
    waits behind the one gRPC holds), so host memory stays flat."""
    with host.channel() as channel:
        channel.unary_unary(ECHO)(b"warm", timeout=10)
        # Settled: an earlier test's last buffer may still be on its way back.
        before = live(channel)
        deadline = time.monotonic() + 10
        while (now := live(channel)) != before and time.monotonic() < deadline:
            before = now
            time.sleep(0.1)
        rss_before = host.status("VmRSS")
        hostname, port = host.address.rsplit(":", 1)
        sock = socket.create_connection((hostname, int(port)), timeout=30)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, [(":method", "POST"), (":scheme", "http"),
                                      (":path", COUNT), (":authority", host.address),
                                      ("content-type", "application/grpc"), ("te", "trailers")])
        count = b"1099511627776"
        conn.send_data(stream_id, b"\0" + len(count).to_bytes(4, "big") + count, end_stream=True)
        sock.sendall(conn.data_to_send())
        time.sleep(3)  # nothing is read: no WINDOW_UPDATE ever goes out
        rss_after = host.status("VmRSS")
        sock.close()
        wait_idle(channel, before)
    growth_mib = (rss_after - rss_before) / 1024
    print(f"never-reading client of the C server stream: host RSS "
          f"{rss_before // 1024} -> {rss_after // 1024} MiB")
    assert growth_mib < 32


# ------------------------------------- unary Python methods and message counts


def test_unary_method_given_one_message_by_a_stream_client_answers(
        channel: grpc.Channel) -> None:
    assert channel.stream_unary(UNARY_PY)(iter([b""]), timeout=10) == b""


@pytest.mark.parametrize("count", [0, 2, 3])
def test_unary_method_given_other_than_one_message_is_unimplemented(
        channel: grpc.Channel, count: int) -> None:
    before = live(channel)
    with pytest.raises(grpc.RpcError) as err:
        channel.stream_unary(UNARY_PY)(iter([b""] * count), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.value.details() == f'"{UNARY_PY}" requires exactly one request message.'
    wait_idle(channel, before)


def test_server_streaming_call_to_unary_method_with_two_messages_is_unimplemented(
        channel: grpc.Channel) -> None:
    call = channel.stream_stream(UNARY_PY)(iter([b"", b""]), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unknown_method_is_unimplemented_without_reading_the_request(
        channel: grpc.Channel) -> None:
    requests = Requests()  # never half-closes: the answer must not wait for it
    call = channel.stream_stream("/no.Such/Method")(iter(requests), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    requests.close()
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.value.details() == "unknown service no.Such"


# ------------------------------------------------------------ what streams cost


def test_client_that_never_reads_keeps_host_memory_bounded(host: Host) -> None:
    """1 GiB offered to the echo by a client that reads nothing back: the echo
    stops reading once its write waits, so flow control stops the client."""
    size, count = 1024 * 1024, 1024
    payload = b"r" * size
    sent = 0

    def requests() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(count):
            sent += 1
            yield payload

    with host.channel() as channel:
        channel.unary_unary(ECHO)(b"warm", timeout=10)
        rss_before = host.status("VmRSS")
        call = channel.stream_stream(ECHO)(requests(), timeout=60)
        time.sleep(3)
        rss_after = host.status("VmRSS")
        offered = sent
        call.cancel()
    growth_mib = (rss_after - rss_before) / 1024
    print(f"never-reading client: {offered} MiB taken by the transport, "
          f"host RSS {rss_before // 1024} -> {rss_after // 1024} MiB")
    assert offered < 128, f"{offered} MiB left the client although nothing was read"
    assert growth_mib < 128


def test_held_open_streams_cost_memory_not_threads() -> None:
    """2,000 streams opened with headers only and held: each waits for a
    message with no thread of its own."""
    n = 2000
    host = Host("--max-concurrent-streams", "5000")
    try:
        hostname, port = host.address.rsplit(":", 1)
        sock = socket.create_connection((hostname, int(port)), timeout=30)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        sock.sendall(conn.data_to_send())
        answered: dict[int, bytes] = {}
        ended: set[int] = set()

        def pump(until: float, done: object) -> None:
            sock.settimeout(0.2)
            while time.monotonic() < until and not done():  # type: ignore[operator]
                try:
                    data = sock.recv(1 << 16)
                except TimeoutError:
                    continue
                if not data:
                    raise ConnectionError("host closed the connection")
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        answered[event.stream_id] = answered.get(event.stream_id, b"") + event.data
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        ended.add(event.stream_id)
                    elif isinstance(event, h2.events.StreamReset):
                        raise AssertionError(f"stream {event.stream_id} reset")
                sock.sendall(conn.data_to_send())

        pump(time.monotonic() + 1, lambda: False)  # settings exchanged
        headers = [(":method", "POST"), (":scheme", "http"), (":path", ECHO),
                   (":authority", host.address), ("content-type", "application/grpc"),
                   ("te", "trailers")]

        def open_streams(k: int) -> list[int]:
            ids = []
            for _ in range(k):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, headers)
                ids.append(sid)
            sock.sendall(conn.data_to_send())
            return ids

        streams = open_streams(100)
        pump(time.monotonic() + 2, lambda: False)
        rss_before, threads_before = host.status("VmRSS"), host.status("Threads")
        streams += open_streams(n - 100)
        pump(time.monotonic() + 3, lambda: False)
        rss_after, threads_after = host.status("VmRSS"), host.status("Threads")
        per_stream_kib = (rss_after - rss_before) / (n - 100)
        print(f"{n} held streams: host RSS {rss_before} -> {rss_after} KiB "
              f"({per_stream_kib:.1f} KiB per stream), threads {threads_before} -> "
              f"{threads_after}")
        assert threads_after == threads_before
        assert per_stream_kib < 64

        # Every stream is live: each echoes one message and ends OK.
        frame = b"\x00\x00\x00\x00\x02hi"
        for sid in streams:
            conn.send_data(sid, frame, end_stream=True)
        sock.sendall(conn.data_to_send())
        pump(time.monotonic() + 60, lambda: len(ended) >= n)
        assert len(ended) == n
        assert all(answered.get(sid) == frame for sid in streams)
        sock.close()
    finally:
        assert host.stop() == 0
