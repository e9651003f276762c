"""Property tests through the C path: arbitrary payload bytes and arbitrary
valid metadata survive a round trip (the handler echoes the payload and sends
the request metadata back as initial metadata and as trailers), for sync and
async handlers, call and acall; GrpcError codes, messages and trailers too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pygrpc_ffi import GrpcError, GrpcRequest, GrpcResponse, GrpcService, StatusCode, live_objects
from pygrpc_ffi.testing import strategies as gs

pytestmark = pytest.mark.timeout(120, method="thread")

PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# The testing kit's strategies: what users property-test their handlers with.
text_keys = gs.metadata_keys(binary=False, max_size=20)
binary_keys = gs.metadata_keys(binary=True, max_size=20)
valid_metadata = gs.metadata(max_entries=12)

payloads = st.one_of(st.binary(max_size=512), st.binary(min_size=4096, max_size=70000))


def echo(request: GrpcRequest) -> GrpcResponse:
    pairs = request.metadata.pairs()
    return GrpcResponse(bytes(request.payload), metadata=pairs, trailers=pairs)


async def async_echo(request: GrpcRequest) -> GrpcResponse:
    await asyncio.sleep(0)
    return echo(request)


@pytest.fixture(scope="module")
def echo_service() -> Iterator[GrpcService]:
    # One service for every example (fixtures are not reset between them).
    svc = GrpcService()
    svc.register_method("pkg.Echo", "Sync", echo)
    svc.register_method("pkg.Echo", "Async", async_echo)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture(autouse=True)
def no_leaked_c_objects() -> Iterator[None]:
    # Overrides conftest's check: the module's echo service stays registered
    # across tests; calls and buffers must still be gone after each test.
    yield
    deadline = time.monotonic() + 3.0
    while (live_objects()["calls"] or live_objects()["buffers"]) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert live_objects()["calls"] == 0
    assert live_objects()["buffers"] == 0


@PROPERTY_SETTINGS
@given(payload=payloads, metadata=valid_metadata, method=st.sampled_from(["Sync", "Async"]),
       timeout=st.sampled_from([None, 30.0]))
def test_payload_and_metadata_round_trip(echo_service: GrpcService, payload: bytes,
                                         metadata: list[tuple[str, Any]], method: str,
                                         timeout: float | None) -> None:
    result = echo_service.call("pkg.Echo", method, payload, metadata, timeout=timeout)
    assert result.code is StatusCode.OK, result
    assert result.payload == payload
    assert list(result.initial_metadata.pairs()) == metadata
    assert list(result.trailing_metadata.pairs()) == metadata
    for key, value in metadata:
        assert isinstance(result.initial_metadata[key], bytes if key.endswith("-bin") else str)
        assert value in result.trailing_metadata.get_all(key)


@PROPERTY_SETTINGS
@given(payload=payloads, metadata=valid_metadata, method=st.sampled_from(["Sync", "Async"]))
def test_payload_and_metadata_round_trip_through_acall(
    echo_service: GrpcService, payload: bytes, metadata: list[tuple[str, Any]], method: str,
) -> None:
    result = asyncio.run(echo_service.acall("pkg.Echo", method, bytearray(payload), metadata))
    assert result.code is StatusCode.OK
    assert result.payload == payload
    assert list(result.initial_metadata.pairs()) == metadata
    assert list(result.trailing_metadata.pairs()) == metadata


@PROPERTY_SETTINGS
@given(metadata=st.lists(
    st.one_of(st.tuples(text_keys, st.text(st.characters(max_codepoint=0xFF), max_size=30)),
              st.tuples(binary_keys, gs.binary_values())),
    max_size=10))
def test_request_metadata_reaches_the_handler_unchanged(
    echo_service: GrpcService, metadata: list[tuple[str, Any]],
) -> None:
    # Host input is taken as delivered: text values are any octets (latin-1).
    seen: list[Any] = []

    def record(request: GrpcRequest) -> bytes:
        seen.append(list(request.metadata.pairs()))
        seen.append([request.get_metadata(k) for k, _ in metadata])
        return b""

    svc = GrpcService()
    try:
        svc.register_handler("pkg.Record", record)
        assert svc.call("pkg.Record", "M", b"", metadata).code is StatusCode.OK
    finally:
        svc.close()
    pairs, firsts = seen
    assert pairs == metadata
    first_of = {}
    for key, value in metadata:
        first_of.setdefault(key, value)
    assert firsts == [first_of[k] for k, _ in metadata]


@PROPERTY_SETTINGS
@given(payload=st.binary(max_size=256), start=st.integers(0, 64), step=st.sampled_from([1]))
def test_memoryview_slices_as_payload(echo_service: GrpcService, payload: bytes, start: int,
                                      step: int) -> None:
    view = memoryview(payload)[start::step]
    result = echo_service.call("pkg.Echo", "Sync", view)
    assert result.payload == bytes(view)


non_ok_codes = st.sampled_from([c for c in StatusCode if c is not StatusCode.OK])


@PROPERTY_SETTINGS
@given(code=non_ok_codes, message=st.text(max_size=60), trailers=valid_metadata,
       details=st.none() | st.binary(min_size=1, max_size=64),
       asynchronous=st.booleans())
@example(code=StatusCode.ABORTED, message="nul \x00 inside", trailers=[], details=None,
         asynchronous=False)
def test_grpc_error_round_trip(code: StatusCode, message: str,
                               trailers: list[tuple[str, Any]], details: bytes | None,
                               asynchronous: bool) -> None:
    error = GrpcError(code, message, details=details, trailers=trailers)

    def fail(request: GrpcRequest) -> bytes:
        raise error

    async def async_fail(request: GrpcRequest) -> bytes:
        raise error

    svc = GrpcService()
    try:
        svc.register_handler("pkg.Fail", async_fail if asynchronous else fail)
        result = svc.call("pkg.Fail", "M", b"x")
    finally:
        svc.close()
    assert result.code is code
    assert result.message == message
    assert result.payload == b""
    assert result.details == details
    assert list(result.trailing_metadata.pairs()) == trailers
