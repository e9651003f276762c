"""The pip-only server: grpcio in front of the C registry.  A grpcio client
calls handlers registered in a GrpcService; every call is dispatched through
the C ABI (pgf_dispatch), with metadata, deadline and peer in, cancellation
forwarded, and the whole answer out."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from pygrpc_ffi import GrpcError, GrpcRequest, GrpcResponse, GrpcService, StatusCode
from pygrpc_ffi.grpcio_server import GrpcioServer, start

pytestmark = pytest.mark.timeout(30)

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def server(service: GrpcService) -> Iterator[GrpcioServer]:
    srv = start(service, "127.0.0.1:0", max_workers=4, max_message_size=1024 * 1024)
    try:
        yield srv
    finally:
        srv.stop(0)


@pytest.fixture
def channel(server: GrpcioServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


def rpc(channel: grpc.Channel, path: str) -> Any:
    return channel.unary_unary(path)


def test_call_in_and_answer_out(service: GrpcService, server: GrpcioServer,
                                channel: grpc.Channel) -> None:
    seen: dict[str, Any] = {}

    def handler(request: GrpcRequest) -> GrpcResponse:
        seen["metadata"] = request.metadata.pairs()
        seen["remaining"] = request.time_remaining()
        seen["peer"] = request.peer
        seen["payload"] = bytes(request.payload)
        return GrpcResponse(b"pong:" + bytes(request.payload),
                            metadata=[("initial", "i"), ("initial-bin", b"\x01")],
                            trailers=[("trailing", "t")])

    service.register_method("demo.Echo", "Ping", handler)
    assert server.port > 0 and server.address == f"127.0.0.1:{server.port}"
    response, call = rpc(channel, "/demo.Echo/Ping").with_call(
        b"ping", timeout=5, metadata=[("k", "v"), ("k-bin", b"\0\xff")])
    assert response == b"pong:ping"
    assert call.code() is grpc.StatusCode.OK
    assert tuple(call.initial_metadata()) == (("initial", "i"), ("initial-bin", b"\x01"))
    assert tuple(call.trailing_metadata()) == (("trailing", "t"),)
    assert seen["payload"] == b"ping"
    assert ("k", "v") in seen["metadata"] and ("k-bin", b"\0\xff") in seen["metadata"]
    # grpc-timeout on the wire is rounded up: a little over 5 s is possible.
    assert 4 < seen["remaining"] <= 5.1
    assert seen["peer"].startswith("ipv4:127.0.0.1:")
    rpc(channel, "/demo.Echo/Ping")(b"", timeout=None)
    assert seen["remaining"] is None  # no deadline from the client


def test_error_status_message_and_trailers(service: GrpcService,
                                           channel: grpc.Channel) -> None:
    def handler(request: GrpcRequest) -> bytes:
        raise GrpcError(StatusCode.FAILED_PRECONDITION, "not yet ☺",
                        trailers=[("why", "because"), ("why-bin", b"\0")])

    service.register_method("demo.Echo", "Fail", handler)
    service.register_method("demo.Echo", "Crash", lambda request: 1 / 0)
    with pytest.raises(grpc.RpcError) as info:
        rpc(channel, "/demo.Echo/Fail")(b"", timeout=5)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == "not yet ☺"
    assert tuple(info.value.trailing_metadata()) == (("why", "because"), ("why-bin", b"\0"))
    with pytest.raises(grpc.RpcError) as info:
        rpc(channel, "/demo.Echo/Crash")(b"", timeout=5)
    assert info.value.code() is grpc.StatusCode.INTERNAL
    assert info.value.details() == "Internal server error"


def test_unknown_method_is_unimplemented(service: GrpcService, channel: grpc.Channel) -> None:
    service.register_method("demo.Echo", "Ping", lambda request: b"")
    for path in ("/demo.Echo/Other", "/demo.Nothing/Ping"):
        with pytest.raises(grpc.RpcError) as info:
            rpc(channel, path)(b"", timeout=5)
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert info.value.details() == "Method not found!"


def test_async_handler(service: GrpcService, channel: grpc.Channel) -> None:
    async def handler(request: GrpcRequest) -> bytes:
        await asyncio.sleep(0.01)
        return b"async " + bytes(request.payload)

    service.register_method("demo.Echo", "Async", handler)
    assert rpc(channel, "/demo.Echo/Async")(b"hi", timeout=5) == b"async hi"


def test_client_deadline_cancels_the_c_call(service: GrpcService,
                                            channel: grpc.Channel) -> None:
    sync_saw_cancel = threading.Event()
    async_cancelled = threading.Event()

    def blocking(request: GrpcRequest) -> bytes:
        deadline = time.monotonic() + 10
        while request.is_active() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not request.is_active():
            sync_saw_cancel.set()
        return b""

    async def sleeping(request: GrpcRequest) -> bytes:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            async_cancelled.set()
            raise
        return b""

    service.register_method("demo.Slow", "Blocking", blocking)
    service.register_method("demo.Slow", "Sleeping", sleeping)
    for path, event in (("/demo.Slow/Blocking", sync_saw_cancel),
                        ("/demo.Slow/Sleeping", async_cancelled)):
        with pytest.raises(grpc.RpcError) as info:
            rpc(channel, path)(b"", timeout=0.2)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert event.wait(5), path


def test_client_cancel_reaches_the_handler(service: GrpcService,
                                           channel: grpc.Channel) -> None:
    started = threading.Event()
    cancelled = threading.Event()

    def handler(request: GrpcRequest) -> bytes:
        started.set()
        deadline = time.monotonic() + 10
        while request.is_active() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not request.is_active():
            cancelled.set()
        return b""

    service.register_method("demo.Slow", "Wait", handler)
    future = rpc(channel, "/demo.Slow/Wait").future(b"")
    assert started.wait(5)
    future.cancel()
    assert cancelled.wait(5)


def test_message_size_limit(service: GrpcService, channel: grpc.Channel) -> None:
    service.register_method("demo.Echo", "Echo", lambda request: bytes(request.payload))
    options = [("grpc.max_send_message_length", 4 * 1024 * 1024),
               ("grpc.max_receive_message_length", 4 * 1024 * 1024)]
    assert rpc(channel, "/demo.Echo/Echo")(b"x" * 1000, timeout=5) == b"x" * 1000
    with pytest.raises(grpc.RpcError) as info:
        rpc(channel, "/demo.Echo/Echo")(b"x" * (2 * 1024 * 1024), timeout=5)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert options  # the client would accept it: the server's limit refused it


def test_port_in_use_is_an_error(server: GrpcioServer) -> None:
    with pytest.raises(OSError, match="cannot listen"):
        start(server.service, f"127.0.0.1:{server.port}")
    with pytest.raises(ValueError):
        start(server.service, "no-port")


def test_stop_lets_calls_in_flight_finish(service: GrpcService) -> None:
    started = threading.Event()

    def handler(request: GrpcRequest) -> bytes:
        started.set()
        time.sleep(0.3)
        return b"finished"

    service.register_method("demo.Slow", "Work", handler)
    srv = start(service, "127.0.0.1:0", max_workers=2)
    with grpc.insecure_channel(srv.address) as channel:
        future = rpc(channel, "/demo.Slow/Work").future(b"", timeout=10)
        assert started.wait(5)
        srv.stop(grace=5)
        assert future.result() == b"finished"


SERVE_SCRIPT = textwrap.dedent("""
    import sys, time
    import pygrpc_ffi

    def slow(request):
        time.sleep(float(bytes(request.payload) or b"0"))
        return b"done"

    pygrpc_ffi.default_service().register_method("demo.Slow", "Work", slow)
    pygrpc_ffi.serve(address=sys.argv[1], max_workers=2, grace=5.0)
    print("returned", flush=True)
""")


def test_serve_prints_serves_and_stops_gracefully_on_sigterm() -> None:
    process = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT, "127.0.0.1:0"],
                               cwd=ROOT / "tests", stdout=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert process.stdout is not None
        line = process.stdout.readline().rstrip("\n")
        assert line.startswith("listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            work = rpc(channel, "/demo.Slow/Work")
            assert work(b"0", timeout=10) == b"done"
            in_flight = work.future(b"0.5", timeout=10)
            time.sleep(0.2)  # the call is running
            process.send_signal(signal.SIGTERM)
            assert in_flight.result() == b"done"  # finished during the grace period
        assert process.wait(15) == 0
        assert process.stdout.read() == "returned\n"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_stops_on_sigint_and_a_second_signal_cancels_calls() -> None:
    process = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT, "127.0.0.1:0"],
                               cwd=ROOT / "tests", stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:")
        with grpc.insecure_channel(line.split()[-1].strip()) as channel:
            # A call that would outlast the grace period (5 s) by far.
            stuck = rpc(channel, "/demo.Slow/Work").future(b"1.5", timeout=10)
            time.sleep(0.2)
            process.send_signal(signal.SIGINT)
            time.sleep(0.2)
            process.send_signal(signal.SIGINT)  # stop now: the call is cancelled
            with pytest.raises(grpc.RpcError):
                stuck.result()
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
