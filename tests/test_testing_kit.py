"""Property tests of handlers through the testing kit: TestClient calls go
through the C path (pgf_call + pgf_dispatch) and the inputs come from
pygrpc_ffi.testing.strategies."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from interop_servicer import pb, pb_grpc

from pygrpc_ffi import GrpcError, GrpcRequest, GrpcResponse, GrpcService, StatusCode
from pygrpc_ffi.metadata import is_binary_key
from pygrpc_ffi.testing import CallError, TestClient
from pygrpc_ffi.testing import strategies as gs

pytestmark = pytest.mark.timeout(60)

PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def echo_metadata(request: GrpcRequest) -> GrpcResponse:
    """Sends the client's metadata back, as initial and trailing metadata."""
    pairs = request.metadata.pairs()
    return GrpcResponse(bytes(request.payload), metadata=pairs, trailers=pairs)


def send_metadata(request: GrpcRequest) -> GrpcResponse:
    """Sends the metadata encoded in the payload (a Struct of lists)."""
    spec = struct_pb2.ListValue.FromString(request.payload)
    pairs = []
    for item in spec.values:
        key, value = item.list_value.values
        pairs.append((key.string_value,
                      value.string_value.encode("latin-1") if is_binary_key(key.string_value)
                      else value.string_value))
    return GrpcResponse(b"", trailers=pairs)


def report_deadline(request: GrpcRequest) -> bytes:
    remaining = request.time_remaining()
    return b"none" if remaining is None else repr(remaining).encode()


@pytest.fixture
def kit() -> Iterator[TestClient]:
    service = GrpcService()
    service.register_method("kit.Echo", "Metadata", echo_metadata)
    service.register_method("kit.Echo", "Send", send_metadata)
    service.register_method("kit.Echo", "Deadline", report_deadline)
    for message_class in (pb.SimpleRequest, descriptor_pb2.FileDescriptorProto,
                          struct_pb2.Struct):
        service.register_method("kit.Typed", message_class.DESCRIPTOR.full_name,
                                lambda message: message, request_type=message_class,
                                response_type=message_class)
    try:
        yield TestClient(service)
    finally:
        service.close()


@PROPERTY
@given(metadata=gs.metadata(), payload=gs.payloads(max_size=4096))
def test_valid_metadata_and_payload_round_trip(kit: TestClient,
                                               metadata: list[tuple[str, Any]],
                                               payload: bytes) -> None:
    result = kit.call_raw("/kit.Echo/Metadata", payload, metadata=metadata)
    assert result.ok, result
    assert result.payload == payload
    assert list(result.initial_metadata.pairs()) == metadata
    assert list(result.trailing_metadata.pairs()) == metadata


def _spec(pairs: list[tuple[str, Any]]) -> bytes:
    spec = struct_pb2.ListValue()
    for key, value in pairs:
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        spec.values.add().list_value.extend([key, text])
    return spec.SerializeToString()


@PROPERTY
@given(metadata=gs.metadata())
def test_handlers_may_send_valid_metadata(kit: TestClient,
                                          metadata: list[tuple[str, Any]]) -> None:
    result = kit.call_raw("/kit.Echo/Send", _spec(metadata))
    assert result.ok, result
    assert list(result.trailing_metadata.pairs()) == metadata


@PROPERTY
@given(metadata=gs.invalid_metadata())
def test_invalid_metadata_from_a_handler_fails_only_that_call(
        kit: TestClient, metadata: list[tuple[str, Any]]) -> None:
    result = kit.call_raw("/kit.Echo/Send", _spec(metadata))
    assert (result.code, result.message) == (StatusCode.INTERNAL, "Internal server error")
    assert result.trailing_metadata.pairs() == ()
    assert kit.call_raw("/kit.Echo/Send", _spec([])).ok  # the next call is fine


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(timeout=gs.deadlines(min_value=1.0, max_value=3600.0))
def test_handlers_see_the_deadline(kit: TestClient, timeout: float | None) -> None:
    seen = kit.unary_raw("/kit.Echo/Deadline", b"", timeout=timeout)
    if timeout is None:
        assert seen == b"none"
    else:
        remaining = float(seen)
        assert 0 < remaining <= timeout
        assert remaining > timeout - 1.0


def _same(a: Any, b: Any) -> bool:
    # NaN is not generated, but -0.0 == 0.0 is fine: compare serializations.
    return bool(a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True))


@pytest.mark.parametrize("message_class", [pb.SimpleRequest,
                                           descriptor_pb2.FileDescriptorProto,
                                           struct_pb2.Struct],
                         ids=lambda cls: cls.DESCRIPTOR.full_name)
def test_typed_echo_returns_the_message(kit: TestClient, message_class: Any) -> None:
    @PROPERTY
    @given(message=gs.messages(message_class))
    def check(message: Any) -> None:
        path = f"/kit.Typed/{message_class.DESCRIPTOR.full_name}"
        reply = kit.unary(path, message, response_type=message_class)
        assert _same(reply, message)

    check()


@PROPERTY
@given(payload=st.binary(min_size=1, max_size=64))
def test_garbage_is_invalid_argument_or_parses(kit: TestClient, payload: bytes) -> None:
    try:
        expected: Any = pb.SimpleRequest.FromString(payload)
    except Exception:
        expected = None
    result = kit.call_raw("/kit.Typed/grpc.testing.SimpleRequest", payload)
    if expected is None:
        assert result.code is StatusCode.INVALID_ARGUMENT
        assert "not a valid grpc.testing.SimpleRequest" in result.message
    else:
        assert result.ok and pb.SimpleRequest.FromString(result.payload) == expected


def test_strategies_generate_what_they_promise() -> None:
    @settings(max_examples=200, deadline=None)
    @given(key=gs.metadata_keys(binary=None), value=gs.metadata_values(),
           bad_key=gs.invalid_metadata_keys(), bad_value=gs.invalid_metadata_values(),
           timeout=gs.timeouts())
    def check(key: str, value: str, bad_key: str, bad_value: str, timeout: float) -> None:
        assert key and all(c in gs.KEY_CHARS for c in key) and not key.startswith("grpc-")
        assert key not in gs.RESERVED_KEYS
        assert all(0x20 <= ord(c) <= 0x7E for c in value) and value == value.strip(" ")
        assert not bad_key or any(c not in gs.KEY_CHARS for c in bad_key)
        assert (bad_value != bad_value.strip(" ")
                or any(not 0x20 <= ord(c) <= 0x7E for c in bad_value))
        assert 0.5 <= timeout <= 60 and math.isfinite(timeout)

    check()


# ----------------------------------------------------- the client's surface


def test_generated_stub_on_the_test_channel() -> None:
    service = GrpcService()
    try:
        service.register_method("grpc.testing.TestService", "UnaryCall",
                                lambda request: pb.SimpleResponse(username="stub"),
                                request_type=pb.SimpleRequest, response_type=pb.SimpleResponse)
        client = TestClient(service)
        stub = pb_grpc.TestServiceStub(client.channel)
        assert stub.UnaryCall(pb.SimpleRequest()).username == "stub"
        reply, call = stub.UnaryCall.with_call(pb.SimpleRequest(), timeout=5)
        assert reply.username == "stub" and call.code() is grpc.StatusCode.OK
        # A method given as the stub's own method, or as its descriptor.
        method = pb.DESCRIPTOR.services_by_name["TestService"].methods_by_name["UnaryCall"]
        assert client.unary(stub.UnaryCall, pb.SimpleRequest()).username == "stub"
        assert client.unary(method, pb.SimpleRequest()).username == "stub"
        with pytest.raises(CallError) as info:
            stub.EmptyCall(pb.Empty())
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert info.value.status_code is StatusCode.UNIMPLEMENTED
    finally:
        service.close()


def test_grpcio_multicallable_and_async_call() -> None:
    service = GrpcService()
    try:
        async def handler(request: pb.Empty) -> pb.Empty:
            await asyncio.sleep(0)
            raise GrpcError(StatusCode.ABORTED, "try again", trailers=[("retry", "1")])

        service.register_method("grpc.testing.TestService", "EmptyCall", handler,
                                request_type=pb.Empty, response_type=pb.Empty)
        client = TestClient(service)
        with grpc.insecure_channel("127.0.0.1:1") as channel:  # never connected
            real_stub = pb_grpc.TestServiceStub(channel)
            with pytest.raises(CallError) as info:
                client.unary(real_stub.EmptyCall, pb.Empty())
        error = info.value
        assert (error.code(), error.details()) == (grpc.StatusCode.ABORTED, "try again")
        assert error.trailing_metadata() == (("retry", "1"),)
        assert isinstance(error, grpc.RpcError)

        async def main() -> None:
            with pytest.raises(CallError):
                await client.aunary("/grpc.testing.TestService/EmptyCall", pb.Empty())

        asyncio.run(main())
    finally:
        service.close()


def test_unknown_paths() -> None:
    service = GrpcService()
    try:
        client = TestClient(service)
        with pytest.raises(LookupError, match="descriptor pool"):
            client.unary("/no.Such/Method", pb.Empty())
        with pytest.raises(ValueError):
            client.call_raw("not-a-path")
        result = client.call_raw("/no.Such/Method")
        assert result.code is StatusCode.UNIMPLEMENTED
    finally:
        service.close()


def test_status_message_with_a_nul_arrives_whole_as_through_service_call() -> None:
    service = GrpcService()
    try:
        def fail(request: GrpcRequest) -> bytes:
            raise GrpcError(StatusCode.ABORTED, "before\0after")

        service.register_method("pkg.Svc", "M", fail)
        via_kit = TestClient(service).call_raw("/pkg.Svc/M")
        via_service = service.call("pkg.Svc", "M")
        assert via_kit.message == via_service.message == "before\0after"
    finally:
        service.close()
