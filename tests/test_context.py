"""The grpcio-compatible ServicerContext (and its grpc.aio twin), through the
C path: each test registers servicer methods with ServicerTarget and calls
them with GrpcService.call (TestClient), as a host would."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from pygrpc_ffi._native import lib

from pygrpc_ffi import CallResult, GrpcService, StatusCode
from pygrpc_ffi.context import AioServicerContext, Metadatum, ServicerContext
from pygrpc_ffi.servicer import ServicerTarget
from pygrpc_ffi.testing import TestClient

pytestmark = pytest.mark.timeout(20)

SERVICE = "demo.Context"


def serve(service: GrpcService, **behaviors: Callable[..., Any]) -> TestClient:
    """Registers raw-bytes servicer methods ``demo.Context/<name>``."""
    handlers = {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in behaviors.items()}
    ServicerTarget(service).add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, handlers),))
    return TestClient(service)


def call(client: TestClient, method: str, payload: bytes = b"", **kwargs: Any) -> CallResult:
    return client.call_raw(f"/{SERVICE}/{method}", payload, **kwargs)


# ------------------------------------------------------------------- inputs


def test_context_is_a_grpc_servicer_context(service: GrpcService) -> None:
    seen: list[Any] = []

    def sync(request: bytes, context: Any) -> bytes:
        seen.append(context)
        return b""

    async def aio(request: bytes, context: Any) -> bytes:
        seen.append(context)
        return b""

    client = serve(service, Sync=sync, Aio=aio)
    assert call(client, "Sync").ok and call(client, "Aio").ok
    assert isinstance(seen[0], ServicerContext) and isinstance(seen[0], grpc.ServicerContext)
    assert isinstance(seen[1], AioServicerContext)
    assert isinstance(seen[1], grpc.aio.ServicerContext)


def test_invocation_metadata_peer_and_auth(service: GrpcService) -> None:
    seen: dict[str, Any] = {}

    def method(request: bytes, context: Any) -> bytes:
        seen["metadata"] = context.invocation_metadata()
        seen["dict"] = dict(context.invocation_metadata())
        seen["peer"] = context.peer()
        seen["auth"] = context.auth_context()
        seen["identities"] = (context.peer_identities(), context.peer_identity_key())
        return b""

    client = serve(service, Method=method)
    assert call(client, "Method", metadata=[("a", "1"), ("b-bin", b"\0\1"), ("a", "2")]).ok
    metadata = seen["metadata"]
    assert metadata == (("a", "1"), ("b-bin", b"\0\1"), ("a", "2"))
    assert isinstance(metadata[0], Metadatum) and metadata[0].key == "a"
    assert metadata[1].value == b"\0\1"
    assert seen["dict"] == {"a": "2", "b-bin": b"\0\1"}
    assert seen["peer"] == "local"  # what GrpcService.call sets; hosts set ipv4:...
    assert seen["auth"] == {}
    assert seen["identities"] == (None, None)


def test_time_remaining(service: GrpcService) -> None:
    seen: list[Any] = []

    def sync(request: bytes, context: Any) -> bytes:
        seen.append(context.time_remaining())
        return b""

    async def aio(request: bytes, context: Any) -> bytes:
        seen.append(context.time_remaining())
        return b""

    client = serve(service, Sync=sync, Aio=aio)
    for method in ("Sync", "Aio"):
        assert call(client, method, timeout=5).ok
        assert call(client, method).ok
    with_deadline, sync_none, aio_deadline, aio_none = seen
    assert 0 < with_deadline <= 5 and 0 < aio_deadline <= 5
    assert sync_none > 1e15  # grpcio's sync context: a huge number without a deadline
    assert aio_none is None  # grpc.aio: None


# ------------------------------------------------------------------- status


def test_set_code_then_return_sends_the_code(service: GrpcService) -> None:
    def method(request: bytes, context: Any) -> bytes:
        context.set_code(grpc.StatusCode.NOT_FOUND)
        context.set_details("no such thing")
        return b"dropped"

    result = call(serve(service, Method=method), "Method")
    assert (result.code, result.message, result.payload) == (StatusCode.NOT_FOUND,
                                                            "no such thing", b"")


def test_set_code_then_raise_sends_the_code(service: GrpcService) -> None:
    def method(request: bytes, context: Any) -> bytes:
        context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
        raise RuntimeError("secret internals")

    def with_details(request: bytes, context: Any) -> bytes:
        context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
        context.set_details("not ready")
        raise RuntimeError("secret internals")

    client = serve(service, Method=method, WithDetails=with_details)
    result = call(client, "Method")
    assert result.code is StatusCode.FAILED_PRECONDITION
    assert "secret" not in result.message  # grpcio: "Exception calling application: ..."
    result = call(client, "WithDetails")
    assert (result.code, result.message) == (StatusCode.FAILED_PRECONDITION, "not ready")


def test_set_details_then_raise_keeps_the_mapped_code(service: GrpcService) -> None:
    def method(request: bytes, context: Any) -> bytes:
        context.set_details("bad input")
        raise ValueError("internal wording")

    result = call(serve(service, Method=method), "Method")
    assert (result.code, result.message) == (StatusCode.INVALID_ARGUMENT, "bad input")


def test_code_and_details_report_what_was_set(service: GrpcService) -> None:
    seen: list[Any] = []

    def sync(request: bytes, context: Any) -> bytes:
        seen.append((context.code(), context.details()))
        context.set_code(grpc.StatusCode.OK)
        context.set_details("fine ☺")
        seen.append((context.code(), context.details()))
        return b""

    async def aio(request: bytes, context: Any) -> bytes:
        context.set_details("fine ☺")
        seen.append(context.details())
        return b""

    client = serve(service, Sync=sync, Aio=aio)
    assert call(client, "Sync").ok and call(client, "Aio").ok
    assert seen[0] == (None, None)
    # grpcio's sync context returns the details encoded.
    assert seen[1] == (grpc.StatusCode.OK, "fine ☺".encode())
    assert seen[2] == "fine ☺"


def test_set_code_with_a_number(service: GrpcService) -> None:
    def method(request: bytes, context: Any) -> bytes:
        context.set_code(5)  # grpcio sends UNKNOWN for a plain int; we send NOT_FOUND
        return b""

    assert call(serve(service, Method=method), "Method").code is StatusCode.NOT_FOUND


def test_abort_raises_and_ends_the_call(service: GrpcService) -> None:
    after_abort: list[bool] = []

    def method(request: bytes, context: Any) -> bytes:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "go away")
        after_abort.append(True)
        return b""

    def swallowed(request: bytes, context: Any) -> bytes:
        try:
            context.abort(grpc.StatusCode.ABORTED, "conflict")
        except Exception:
            pass
        return b"ignored"

    def with_ok(request: bytes, context: Any) -> bytes:
        context.abort(grpc.StatusCode.OK, "not an error")

    client = serve(service, Method=method, Swallowed=swallowed, WithOk=with_ok)
    result = call(client, "Method")
    assert (result.code, result.message) == (StatusCode.PERMISSION_DENIED, "go away")
    assert after_abort == []
    result = call(client, "Swallowed")
    assert (result.code, result.message, result.payload) == (StatusCode.ABORTED, "conflict", b"")
    result = call(client, "WithOk")
    assert (result.code, result.message) == (StatusCode.UNKNOWN, "")


def test_unexpected_exceptions_use_the_safe_mapping(service: GrpcService) -> None:
    def crash(request: bytes, context: Any) -> bytes:
        raise RuntimeError("password=hunter2")

    def bad_value(request: bytes, context: Any) -> bytes:
        raise ValueError("size must be positive")

    client = serve(service, Crash=crash, BadValue=bad_value)
    result = call(client, "Crash")
    assert (result.code, result.message) == (StatusCode.INTERNAL, "Internal server error")
    result = call(client, "BadValue")
    assert (result.code, result.message) == (StatusCode.INVALID_ARGUMENT, "size must be positive")


def test_expose_exceptions_sends_the_text(exposing_service: GrpcService) -> None:
    def crash(request: bytes, context: Any) -> bytes:
        raise RuntimeError("boom")

    result = call(serve(exposing_service, Crash=crash), "Crash")
    assert (result.code, result.message) == (StatusCode.INTERNAL, "RuntimeError: boom")


# ----------------------------------------------------------------- metadata


def test_initial_and_trailing_metadata(service: GrpcService) -> None:
    seen: list[Any] = []

    def method(request: bytes, context: Any) -> bytes:
        context.send_initial_metadata([("init", "1"), ("init-bin", b"\xff")])
        try:
            context.send_initial_metadata([("again", "x")])
        except ValueError as exc:
            seen.append(str(exc))
        context.set_trailing_metadata([("first", "x")])
        context.set_trailing_metadata([("trail", "2"), ("trail-bin", b"\x00")])
        seen.append(context.trailing_metadata())
        return b"ok"

    result = call(serve(service, Method=method), "Method")
    assert result.ok and result.payload == b"ok"
    assert result.initial_metadata.pairs() == (("init", "1"), ("init-bin", b"\xff"))
    assert result.trailing_metadata.pairs() == (("trail", "2"), ("trail-bin", b"\x00"))
    assert seen == ["Initial metadata no longer allowed!", (("trail", "2"), ("trail-bin", b"\x00"))]


def test_trailers_are_sent_with_errors(service: GrpcService) -> None:
    def method(request: bytes, context: Any) -> bytes:
        context.set_trailing_metadata([("why", "because")])
        context.abort(grpc.StatusCode.NOT_FOUND, "missing")

    result = call(serve(service, Method=method), "Method")
    assert result.code is StatusCode.NOT_FOUND
    assert result.trailing_metadata.pairs() == (("why", "because"),)


def test_invalid_metadata_fails_only_that_call(service: GrpcService) -> None:
    def method(request: bytes, context: Any) -> bytes:
        context.set_trailing_metadata([("Bad Key", "x")])
        return b""

    client = serve(service, Method=method, Fine=lambda request, context: b"fine")
    result = call(client, "Method")
    assert (result.code, result.message) == (StatusCode.INTERNAL, "Internal server error")
    assert call(client, "Fine").payload == b"fine"


def _compress_flag(service: GrpcService, path: bytes) -> int:
    """Dispatches a call at the ABI level to read the compression request."""
    call_ = lib.pgf_call_new(path, len(path))
    try:
        lib.pgf_dispatch(service._registry, call_)
        assert lib.pgf_call_status(call_) == 0
        return int(lib.pgf_call_compress_response(call_))
    finally:
        lib.pgf_call_unref(call_)


def test_set_compression(service: GrpcService) -> None:
    def compressed(request: bytes, context: Any) -> bytes:
        context.set_compression(grpc.Compression.Gzip)
        return b"x" * 100

    def disabled(request: bytes, context: Any) -> bytes:
        context.set_compression(grpc.Compression.Gzip)
        context.disable_next_message_compression()
        return b"x" * 100

    serve(service, Compressed=compressed, Disabled=disabled,
          Plain=lambda request, context: b"x")
    assert _compress_flag(service, f"/{SERVICE}/Compressed".encode()) == 1
    assert _compress_flag(service, f"/{SERVICE}/Disabled".encode()) == 0
    assert _compress_flag(service, f"/{SERVICE}/Plain".encode()) == 0


# ------------------------------------------------------ callbacks and cancel


def test_callbacks_run_when_the_call_ends(service: GrpcService) -> None:
    events: list[str] = []
    contexts: list[Any] = []

    def method(request: bytes, context: Any) -> bytes:
        assert context.add_callback(lambda: events.append("first"))
        assert context.add_callback(lambda: events.append("second"))
        assert context.is_active()
        contexts.append(context)
        events.append("returning")
        return b""

    assert call(serve(service, Method=method), "Method").ok
    assert events == ["returning", "first", "second"]
    # After the call, grpcio refuses new callbacks; the context is inactive.
    assert contexts[0].add_callback(lambda: events.append("late")) is False
    assert not contexts[0].is_active()
    assert events == ["returning", "first", "second"]


def test_failing_callback_does_not_change_the_outcome(service: GrpcService) -> None:
    def method(request: bytes, context: Any) -> bytes:
        context.add_callback(lambda: 1 / 0)
        return b"fine"

    assert call(serve(service, Method=method), "Method").payload == b"fine"


def test_host_cancellation_wakes_a_blocked_method(service: GrpcService) -> None:
    woken = threading.Event()
    seen: dict[str, Any] = {}

    def method(request: bytes, context: Any) -> bytes:
        context.add_callback(woken.set)
        seen["woken"] = woken.wait(10)  # the callback runs when the host cancels
        seen["active"] = context.is_active()
        return b""

    started = time.monotonic()
    result = call(serve(service, Method=method), "Method", timeout=0.2)
    assert result.code is StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 5
    while "active" not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == {"woken": True, "active": False}
    assert time.monotonic() - started < 5


def test_is_active_turns_false_on_cancellation(service: GrpcService) -> None:
    done = threading.Event()

    def method(request: bytes, context: Any) -> bytes:
        while context.is_active():
            time.sleep(0.005)
        done.set()
        return b""

    result = call(serve(service, Method=method), "Method", timeout=0.1)
    assert result.code is StatusCode.DEADLINE_EXCEEDED
    assert done.wait(5)


def test_cancel_from_the_method(service: GrpcService) -> None:
    events: list[str] = []

    def method(request: bytes, context: Any) -> bytes:
        context.add_callback(lambda: events.append("callback"))
        context.cancel()
        events.append(f"active={context.is_active()}")
        return b"ignored"

    result = call(serve(service, Method=method), "Method")
    assert result.code is StatusCode.CANCELLED
    assert events == ["callback", "active=False"]


def test_callback_added_after_cancellation_is_refused(service: GrpcService) -> None:
    seen: list[bool] = []

    def method(request: bytes, context: Any) -> bytes:
        context.add_callback(lambda: None)
        context.cancel()
        seen.append(context.add_callback(lambda: None))
        return b""

    assert call(serve(service, Method=method), "Method").code is StatusCode.CANCELLED
    assert seen == [False]


# -------------------------------------------------------------------- aio


def test_aio_abort_is_a_coroutine(service: GrpcService) -> None:
    async def method(request: bytes, context: Any) -> bytes:
        await context.send_initial_metadata([("init", "1")])
        context.set_trailing_metadata([("trail", "t")])
        await context.abort(grpc.StatusCode.OUT_OF_RANGE, "too far")

    async def swallowed(request: bytes, context: Any) -> bytes:
        try:
            await context.abort(grpc.StatusCode.ABORTED, "conflict")
        except grpc.aio.AbortError:
            pass
        return b"ignored"

    async def details_kept(request: bytes, context: Any) -> bytes:
        context.set_details("explained before")
        await context.abort(grpc.StatusCode.INTERNAL)

    client = serve(service, Method=method, Swallowed=swallowed, DetailsKept=details_kept)
    result = call(client, "Method")
    assert (result.code, result.message) == (StatusCode.OUT_OF_RANGE, "too far")
    assert result.trailing_metadata.pairs() == (("trail", "t"),)
    result = call(client, "Swallowed")
    assert (result.code, result.message) == (StatusCode.ABORTED, "conflict")
    result = call(client, "DetailsKept")
    assert (result.code, result.message) == (StatusCode.INTERNAL, "explained before")


def test_aio_set_code_and_exceptions(service: GrpcService) -> None:
    async def set_code(request: bytes, context: Any) -> bytes:
        await asyncio.sleep(0)
        context.set_code(grpc.StatusCode.NOT_FOUND)
        context.set_details("nope")
        return b""

    async def crash(request: bytes, context: Any) -> bytes:
        raise RuntimeError("secret")

    client = serve(service, SetCode=set_code, Crash=crash)
    result = call(client, "SetCode")
    assert (result.code, result.message) == (StatusCode.NOT_FOUND, "nope")
    result = call(client, "Crash")
    assert (result.code, result.message) == (StatusCode.INTERNAL, "Internal server error")


def test_aio_done_callbacks_and_cancellation(service: GrpcService) -> None:
    seen: list[Any] = []
    finished = threading.Event()

    async def method(request: bytes, context: Any) -> bytes:
        context.add_done_callback(lambda ctx: (seen.append((ctx.done(), ctx.cancelled())),
                                               finished.set()))
        assert not context.done() and not context.cancelled()
        await asyncio.sleep(10)  # cancelled by the host when the deadline passes
        return b""

    result = call(serve(service, Method=method), "Method", timeout=0.2)
    assert result.code is StatusCode.DEADLINE_EXCEEDED
    assert finished.wait(5)
    assert seen == [(False, True)]


def test_aio_read_and_write_are_for_streams(service: GrpcService) -> None:
    async def method(request: bytes, context: Any) -> bytes:
        await context.read()
        return b""

    result = call(serve(service, Method=method), "Method")
    assert result.code is StatusCode.INTERNAL


def test_cancellation_racing_the_end_of_calls(service: GrpcService) -> None:
    """Cancellation arriving just before, during or after a method's end: every
    callback runs exactly once and no handle is left behind."""
    from pygrpc_ffi import _runtime

    runs: list[int] = []
    lock = threading.Lock()

    def method(request: bytes, context: Any) -> bytes:
        number = int(request)
        context.add_callback(lambda: (lock.acquire(), runs.append(number), lock.release()))
        time.sleep((number % 7) * 0.002)
        return b""

    client = serve(service, Method=method)
    before = len(_runtime.handles)
    outcomes = set()
    for number in range(150):
        timeout = (number % 5) * 0.003 + 0.001
        outcomes.add(call(client, "Method", str(number).encode(), timeout=timeout).code)
    deadline = time.monotonic() + 5
    while (len(runs) < 150 or len(_runtime.handles) != before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(runs) == list(range(150))
    assert len(_runtime.handles) == before
    assert outcomes <= {StatusCode.OK, StatusCode.DEADLINE_EXCEEDED}
