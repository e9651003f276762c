"""The servicer context of streaming methods, through the C path: initial
metadata before the first message, trailers, abort after messages were sent,
callbacks at the end and on cancellation, cancellation and deadlines reaching
sync and grpc.aio methods mid-stream, and the one-request rule."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from pygrpc_ffi._native import lib
from waiting import wait_until

from pygrpc_ffi import GrpcService, StatusCode
from pygrpc_ffi.servicer import ServicerTarget
from pygrpc_ffi.testing import CallError, TestClient

pytestmark = pytest.mark.timeout(30)

SVC = "demo.Ctx"


def register(service: GrpcService, **handlers: Any) -> TestClient:
    ServicerTarget(service).add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SVC, handlers),))
    return TestClient(service)


def test_initial_metadata_reaches_the_client_before_the_first_message(
        service: GrpcService) -> None:
    release = threading.Event()

    def watch(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        context.send_initial_metadata((("x-first", "yes"),))
        release.wait(10)  # no message yet: the metadata went alone
        with pytest.raises(ValueError, match="no longer allowed"):
            context.send_initial_metadata((("x-again", "no"),))
        yield b"one"
        context.set_trailing_metadata((("x-end", "done"),))

    client = register(service, Watch=grpc.unary_stream_rpc_method_handler(watch))
    call = client.stream(f"/{SVC}/Watch", [b""], response_type=bytes, timeout=10)
    # The host is told to send the initial metadata while no message exists.
    assert wait_until(lambda: call._call is not None
                      and lib.pgf_call_initial_metadata_ready(call._call) == 1)
    assert call._host.responses == []
    release.set()
    assert list(call) == [b"one"]
    assert call.initial_metadata() == (("x-first", "yes"),)
    assert call.trailing_metadata() == (("x-end", "done"),)


@pytest.mark.parametrize("style", ["sync", "aio"])
def test_abort_after_messages_keeps_them_and_ends_with_its_status(
        service: GrpcService, style: str) -> None:
    def sync_bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            if request == b"stop":
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "stopped")
            yield request

    async def aio_bidi(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for request in requests:
            if request == b"stop":
                context.set_trailing_metadata((("x-why", "asked"),))
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "stopped")
            yield request

    bidi = sync_bidi if style == "sync" else aio_bidi
    client = register(service, Bidi=grpc.stream_stream_rpc_method_handler(bidi))
    result = client.call_stream_raw(f"/{SVC}/Bidi", [b"a", b"b", b"stop", b"never"], timeout=10)
    assert result.messages == (b"a", b"b")
    assert (result.code, result.message) == (StatusCode.FAILED_PRECONDITION, "stopped")
    if style == "aio":
        assert result.trailing_metadata.pairs() == (("x-why", "asked"),)


def test_set_code_after_messages_ends_the_stream_with_that_code(service: GrpcService) -> None:
    def count(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"1"
        yield b"2"
        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
        context.set_details("that is all")

    client = register(service, Count=grpc.unary_stream_rpc_method_handler(count))
    with pytest.raises(CallError) as info:
        list(client.stream(f"/{SVC}/Count", [b""], response_type=bytes, timeout=10))
    assert info.value.status_code is StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details() == "that is all"
    assert client.call_stream_raw(f"/{SVC}/Count", [b""], timeout=10).messages == (b"1", b"2")


def test_context_reports_the_call_to_a_request_stream(service: GrpcService) -> None:
    seen: dict[str, Any] = {}

    def collect(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        seen["metadata"] = tuple(context.invocation_metadata())
        seen["peer"] = context.peer()
        seen["remaining"] = context.time_remaining()
        seen["active"] = context.is_active()
        return b"".join(requests)

    client = TestClient(service, peer="ipv4:10.0.0.1:5000")
    register(service, Collect=grpc.stream_unary_rpc_method_handler(collect))
    result = client.call_stream_raw(f"/{SVC}/Collect", [b"a", b"b"], metadata=[("k", "v")],
                                    timeout=10)
    assert result.ok and result.messages == (b"ab",)
    assert seen["metadata"] == (("k", "v"),)
    assert seen["peer"] == "ipv4:10.0.0.1:5000"
    assert 0 < seen["remaining"] <= 10
    assert seen["active"] is True


def test_cancel_mid_stream_stops_the_sync_iterators_and_runs_callbacks(
        service: GrpcService) -> None:
    ended = threading.Event()
    outcome: dict[str, Any] = {}

    def bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        context.add_callback(ended.set)
        try:
            yield from requests
        except grpc.RpcError as err:  # as grpcio's request iterator raises
            outcome["error"] = err
            raise
        finally:
            outcome["active"] = context.is_active()

    client = register(service, Bidi=grpc.stream_stream_rpc_method_handler(bidi))
    feed: list[bytes] = [b"one"]
    gate = threading.Event()

    def requests() -> Iterator[bytes]:
        yield from feed
        gate.wait(10)  # the client sends nothing more

    call = client.stream(f"/{SVC}/Bidi", requests(), response_type=bytes, timeout=10)
    assert next(call) == b"one"
    assert call.cancel()
    with pytest.raises(CallError) as info:
        next(call)
    assert info.value.status_code is StatusCode.CANCELLED
    assert ended.wait(5)
    assert wait_until(lambda: "active" in outcome)
    assert outcome["active"] is False
    assert isinstance(outcome["error"], grpc.RpcError)
    gate.set()


def test_deadline_mid_stream_cancels_the_aio_task_and_runs_callbacks(
        service: GrpcService) -> None:
    outcome: dict[str, Any] = {}
    ended = threading.Event()

    async def server_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        context.add_done_callback(lambda ctx: ended.set())
        yield b"first"
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome["cancelled"] = True
            raise
        yield b"never"

    client = register(service, Slow=grpc.unary_stream_rpc_method_handler(server_stream))
    call = client.stream(f"/{SVC}/Slow", [b""], response_type=bytes, timeout=0.5)
    assert next(call) == b"first"
    with pytest.raises(CallError) as info:
        next(call)
    assert info.value.status_code is StatusCode.DEADLINE_EXCEEDED
    assert ended.wait(5)
    assert outcome == {"cancelled": True}


def test_context_cancel_ends_the_call_with_cancelled(service: GrpcService) -> None:
    def bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"bye"
        context.cancel()
        assert not context.is_active()

    client = register(service, Bidi=grpc.stream_stream_rpc_method_handler(bidi))
    result = client.call_stream_raw(f"/{SVC}/Bidi", [], timeout=10)
    assert result.code is StatusCode.CANCELLED


@pytest.mark.parametrize("count", [0, 2])
def test_a_unary_request_method_needs_exactly_one_message(service: GrpcService,
                                                          count: int) -> None:
    def stream(request: bytes, context: Any) -> Iterator[bytes]:
        yield request

    client = register(service, Out=grpc.unary_stream_rpc_method_handler(stream),
                      Unary=grpc.unary_unary_rpc_method_handler(lambda r, c: r))
    for method in ("Out", "Unary"):
        result = client.call_stream_raw(f"/{SVC}/{method}", [b"x"] * count, timeout=10)
        assert (result.code, result.message) == (
            StatusCode.UNIMPLEMENTED, f'"/{SVC}/{method}" requires exactly one request message.')


def test_unparsable_stream_message_is_internal_like_grpcio(service: GrpcService) -> None:
    from interop_servicer import pb

    def total(requests: Iterator[Any], context: Any) -> Any:
        for _ in requests:
            pass
        return pb.Empty()

    client = register(service, Total=grpc.stream_unary_rpc_method_handler(
        total, request_deserializer=pb.SimpleRequest.FromString,
        response_serializer=pb.Empty.SerializeToString))
    result = client.call_stream_raw(f"/{SVC}/Total", [b"", b"\xff\xff\xff"], timeout=10)
    assert (result.code, result.message) == (StatusCode.INTERNAL,
                                             "Exception deserializing request!")
