"""What a production server must do under misbehaving handlers, load,
deadlines and cancellation — through a real server and a grpcio client."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from conftest import Server
from grpc_status import rpc_status

pytestmark = pytest.mark.timeout(120)


def _call(channel: grpc.Channel, method: str, payload: bytes = b"", **kwargs: object) -> bytes:
    return channel.unary_unary(f"/e2e.Control/{method}")(payload, timeout=20, **kwargs)


def _expect(channel: grpc.Channel, method: str, code: grpc.StatusCode,
            payload: bytes = b"") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _call(channel, method, payload)
    assert info.value.code() == code
    return info.value


def _server_still_answers(channel: grpc.Channel) -> None:
    assert _call(channel, "Echo", b"still here") == b"still here"


def test_raising_handler_gives_internal_without_leaking_text(channel: grpc.Channel) -> None:
    err = _expect(channel, "Raise", grpc.StatusCode.INTERNAL)
    assert "secret" not in (err.details() or "")
    _server_still_answers(channel)


@pytest.mark.parametrize("key", ["Bad-Key", "x-ok"])
def test_invalid_response_metadata_fails_only_that_call(channel: grpc.Channel, key: str) -> None:
    # "x-ok" is a fine key, but its value holds CR LF: invalid all the same.
    _expect(channel, "BadMetadata", grpc.StatusCode.INTERNAL, key.encode())
    _server_still_answers(channel)


def test_handler_returning_wrong_type_gives_internal(channel: grpc.Channel) -> None:
    _expect(channel, "BadReturn", grpc.StatusCode.INTERNAL)
    _server_still_answers(channel)


def test_sixteen_mebibyte_response_arrives_whole(channel: grpc.Channel) -> None:
    reply = _call(channel, "Huge")
    assert len(reply) == 16 * 1024 * 1024 and reply.count(b"\x5a") == len(reply)
    _server_still_answers(channel)


def test_sixteen_mebibyte_request_is_seen_whole(channel: grpc.Channel) -> None:
    seen = json.loads(_call(channel, "Inspect", b"\x01" * (16 * 1024 * 1024)))
    assert seen["size"] == 16 * 1024 * 1024


def test_hanging_handlers_do_not_starve_other_calls(channel: grpc.Channel) -> None:
    # More hanging calls than the server's 4 workers: the pool grows past them.
    hang = channel.unary_unary("/e2e.Control/Hang")
    hanging = [hang.future(b"2", timeout=0.3) for _ in range(6)]
    assert _call(channel, "Echo", b"not starved") == b"not starved"
    for future in hanging:
        with pytest.raises(grpc.RpcError) as info:
            future.result()
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(2)  # let the hanging handlers return before the server stops


def test_thousand_concurrent_calls_are_all_answered(channel: grpc.Channel) -> None:
    echo = channel.unary_unary("/e2e.Control/Echo")

    def batch(worker: int) -> list[tuple[bytes, bytes]]:
        futures = [(f"{worker}-{i}".encode(), echo.future(f"{worker}-{i}".encode(), timeout=60))
                   for i in range(125)]
        return [(sent, fut.result()) for sent, fut in futures]

    with ThreadPoolExecutor(8) as pool:
        results = [pair for chunk in pool.map(batch, range(8)) for pair in chunk]
    assert len(results) == 1000
    assert all(sent == got for sent, got in results)


def test_client_deadline_becomes_time_remaining(channel: grpc.Channel) -> None:
    seen = json.loads(channel.unary_unary("/e2e.Control/Inspect")(b"", timeout=5))
    # gRPC rounds the client's deadline up a little on its way to the server.
    assert 0 < seen["time_remaining"] <= 5.5
    seen = json.loads(channel.unary_unary("/e2e.Control/Inspect")(b""))
    assert seen["time_remaining"] is None


def test_client_metadata_and_peer_reach_the_handler(channel: grpc.Channel) -> None:
    seen = json.loads(_call(channel, "Inspect", metadata=[
        ("x-text", "hello"), ("x-raw-bin", b"\x00\xff\x10")]))
    assert seen["metadata"]["x-text"] == "hello"
    assert seen["metadata"]["x-raw-bin"] == "00ff10"
    assert "127.0.0.1" in seen["peer"]
    assert (seen["service"], seen["method"]) == ("e2e.Control", "Inspect")


def _wait_seen(channel: grpc.Channel, key: str, want: str) -> str:
    deadline = time.monotonic() + 10
    value = ""
    while time.monotonic() < deadline:
        value = json.loads(_call(channel, "Seen")).get(key, "")
        if value == want:
            break
        time.sleep(0.05)
    return value


@pytest.mark.parametrize("method,key", [("SleepAsync", "sleep_async"),
                                        ("SleepSync", "sleep_sync")])
def test_client_cancellation_reaches_the_handler(channel: grpc.Channel, method: str,
                                                 key: str) -> None:
    future = channel.unary_unary(f"/e2e.Control/{method}").future(b"30", timeout=60)
    assert _wait_seen(channel, key, "started") == "started"
    future.cancel()
    assert _wait_seen(channel, key, "cancelled") == "cancelled"
    _server_still_answers(channel)


def test_status_details_reach_the_client(channel: grpc.Channel) -> None:
    err = _expect(channel, "RichError", grpc.StatusCode.NOT_FOUND)
    status = rpc_status.from_call(err)
    assert status is not None and status.message == "no such thing" and status.code == 5


def test_graceful_shutdown_lets_in_flight_calls_finish(server: Server) -> None:
    srv = Server(server.process.args[server.process.args.index("--engine") + 1])
    with srv.channel() as channel:
        future = channel.unary_unary("/e2e.Control/SleepAsync").future(b"0.5", timeout=30)
        assert _wait_seen(channel, "sleep_async", "started") == "started"
        stopper = threading.Timer(0.05, srv.process.send_signal, args=(15,))
        stopper.start()
        assert future.result() == b"slept"
    assert srv.process.wait(30) == 0


@pytest.mark.parametrize("message", ["x" * 100_000, "é" * 50_000, "%" * 10_000])
def test_an_oversized_status_message_arrives_truncated_with_its_code(
        channel: grpc.Channel, message: str) -> None:
    err = _expect(channel, "FailWith", grpc.StatusCode.NOT_FOUND,
                  json.dumps([5, message]).encode())
    details = err.details() or ""
    assert details and message.startswith(details)
    assert len(details.encode()) <= 2048
    _server_still_answers(channel)


def test_oversized_trailers_fail_the_call_with_internal(channel: grpc.Channel) -> None:
    for value in ("v" * 6000, "v" * 2600):
        entries = [["trailing", "x-big", value, False], ["trailing", "x-big2", value, False]]
        _expect(channel, "SendMetadata", grpc.StatusCode.INTERNAL, json.dumps(entries).encode())
    # Within the budget, trailers arrive whole.
    entries = [["trailing", "x-big", "v" * 2000, False]]
    answer, call = channel.unary_unary("/e2e.Control/SendMetadata").with_call(
        json.dumps(entries).encode(), timeout=20)
    assert answer == b"sent" and dict(call.trailing_metadata())["x-big"] == "v" * 2000
    _server_still_answers(channel)
