"""Generated grpcio servicers run unchanged through the C path.

The interop TestService servicer, served by grpcio's own server and by
pygrpc_ffi's grpcio engine (every call dispatched through the C registry),
gives a grpcio client the same status, details, metadata and payload in
every interop unary case.  The other tests call through the C path directly
(TestClient → GrpcService.call → pgf_dispatch).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import interop_servicer as interop
import pytest
from interop_servicer import pb, pb_grpc

from pygrpc_ffi import GrpcService, StatusCode, grpcio_server
from pygrpc_ffi.servicer import (
    ServicerTarget,
    add_servicer,
    is_protobuf_parser,
)
from pygrpc_ffi.testing import CallError, TestClient

pytestmark = pytest.mark.timeout(30)

TEST_SERVICE = "grpc.testing.TestService"


@pytest.fixture(scope="module")
def reference_address() -> Iterator[str]:
    """grpcio's own server with the servicer: the expected behaviour."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_TestServiceServicer_to_server(interop.TestServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture(params=["sync", "async"])
def ffi_address(request: pytest.FixtureRequest, service: GrpcService) -> Iterator[str]:
    """pygrpc_ffi's grpcio engine with the same servicer (or its grpc.aio
    twin) registered through ServicerTarget."""
    servicer = interop.TestServicer() if request.param == "sync" else interop.AsyncTestServicer()
    add_servicer(pb_grpc.add_TestServiceServicer_to_server, servicer, service)
    server = grpcio_server.start(service, "127.0.0.1:0", max_workers=4)
    yield server.address
    server.stop(0)


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("case", sorted(set(interop.CASES) - {"unimplemented_service"}))
def test_interop_case_through_the_c_path_matches_grpcio_server(
        case: str, kind: str, reference_address: str, service: GrpcService) -> None:
    """Every interop case, the servicer called through the C path by the
    testing kit's channel, against grpcio's own server over the network.
    (An unknown service is answered by the host, not by a servicer: the
    end-to-end suite compares that one.)"""
    servicer = interop.TestServicer() if kind == "sync" else interop.AsyncTestServicer()
    add_servicer(pb_grpc.add_TestServiceServicer_to_server, servicer, service)
    run = interop.CASES[case]
    with grpc.insecure_channel(reference_address) as expected_channel:
        expected = run(expected_channel)
    assert run(TestClient(service).channel) == expected


@pytest.mark.parametrize("case", sorted(set(interop.CASES) - interop.STREAMING_CASES))
def test_interop_case_matches_grpcio_server(case: str, reference_address: str,
                                            ffi_address: str) -> None:
    run = interop.CASES[case]
    with grpc.insecure_channel(reference_address) as expected_channel:
        expected = run(expected_channel)
    with grpc.insecure_channel(ffi_address) as channel:
        actual = run(channel)
    assert actual == expected


def test_generated_add_function_registers_every_method_once(service: GrpcService) -> None:
    target = ServicerTarget(service)
    # Generated code calls both add_generic_rpc_handlers and
    # add_registered_method_handlers with the same handlers.
    pb_grpc.add_TestServiceServicer_to_server(interop.TestServicer(), target)
    assert target.methods() == [f"/{TEST_SERVICE}/{name}" for name in sorted(
        ["EmptyCall", "UnaryCall", "StreamingOutputCall", "StreamingInputCall",
         "FullDuplexCall", "HalfDuplexCall", "UnimplementedCall"])]
    assert service.list_services() == [TEST_SERVICE]
    for method in ("EmptyCall", "UnaryCall", "UnimplementedCall"):
        assert service.has_method(TEST_SERVICE, method)


def test_servicer_through_the_c_path(service: GrpcService) -> None:
    add_servicer(pb_grpc.add_TestServiceServicer_to_server, interop.TestServicer(), service)
    stub = pb_grpc.TestServiceStub(TestClient(service).channel)
    reply = stub.UnaryCall(pb.SimpleRequest(response_size=7))
    assert reply.payload.body == b"\0" * 7
    with pytest.raises(CallError) as info:
        stub.UnimplementedCall(pb.Empty())
    assert info.value.status_code is StatusCode.UNIMPLEMENTED
    assert info.value.details() == "Method not implemented!"


def test_default_target_is_the_default_service(clean_default_service: GrpcService) -> None:
    target = add_servicer(pb_grpc.add_TestServiceServicer_to_server, interop.TestServicer())
    assert target.service is clean_default_service
    assert clean_default_service.has_method(TEST_SERVICE, "EmptyCall")
    assert TestClient().unary(f"/{TEST_SERVICE}/EmptyCall", pb.Empty()) == pb.Empty()


def test_registering_a_servicer_twice_is_refused(service: GrpcService) -> None:
    add_servicer(pb_grpc.add_TestServiceServicer_to_server, interop.TestServicer(), service)
    with pytest.raises(ValueError, match="already registered"):
        add_servicer(pb_grpc.add_TestServiceServicer_to_server, interop.TestServicer(), service)


def test_remove_unregisters_the_servicer(service: GrpcService) -> None:
    target = add_servicer(pb_grpc.add_TestServiceServicer_to_server, interop.TestServicer(),
                          service)
    target.remove()
    assert not service.has_service(TEST_SERVICE)
    result = TestClient(service).call_raw(f"/{TEST_SERVICE}/EmptyCall")
    assert result.code is StatusCode.UNIMPLEMENTED


def _echo(request: bytes, context: Any) -> bytes:
    return request


def _count(request: bytes, context: Any) -> Iterator[bytes]:
    for i in range(3):
        yield request + str(i).encode()


def _join(requests: Iterator[bytes], context: Any) -> bytes:
    return b"|".join(requests)


def _upper(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
    for request in requests:
        yield request.upper()


def test_every_kind_of_a_generic_handler_runs_through_the_c_path(service: GrpcService) -> None:
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_count),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_join),
        "Bidi": grpc.stream_stream_rpc_method_handler(_upper),
    }
    ServicerTarget(service).add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("demo.Streams", handlers),))
    client = TestClient(service)
    assert client.unary_raw("/demo.Streams/Echo", b"abc") == b"abc"
    server = client.call_stream_raw("/demo.Streams/ServerStream", [b"n"], timeout=10)
    assert server.messages == (b"n0", b"n1", b"n2") and server.ok
    joined = client.call_stream_raw("/demo.Streams/ClientStream", [b"a", b"b", b"c"],
                                    timeout=10)
    assert joined.messages == (b"a|b|c",) and joined.ok
    bidi = client.call_stream_raw("/demo.Streams/Bidi", [b"x", b"y"], timeout=10)
    assert bidi.messages == (b"X", b"Y") and bidi.ok
    assert client.call_stream_raw("/demo.Streams/Bidi", [], timeout=10).messages == ()


class _PerCallHandler(grpc.ServiceRpcHandler):  # type: ignore[misc]
    """A generic handler that resolves methods per call."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[tuple[str, Any], ...]]] = []

    def service_name(self) -> str:
        return "demo.PerCall"

    def service(self, handler_call_details: Any) -> Any:
        self.seen.append((handler_call_details.method,
                          tuple(handler_call_details.invocation_metadata)))
        if handler_call_details.method.endswith("/Known"):
            return grpc.unary_unary_rpc_method_handler(_echo)
        return None


def test_service_level_generic_handler(service: GrpcService) -> None:
    handler = _PerCallHandler()
    ServicerTarget(service).add_generic_rpc_handlers((handler,))
    client = TestClient(service)
    assert client.unary_raw("/demo.PerCall/Known", b"hi", metadata=[("k", "v")]) == b"hi"
    assert handler.seen == [("/demo.PerCall/Known", (("k", "v"),))]
    result = client.call_raw("/demo.PerCall/Other", b"")
    assert (result.code, result.message) == (StatusCode.UNIMPLEMENTED, "Method not found!")


def test_generic_handler_without_a_service_name_is_refused(service: GrpcService) -> None:
    class Anonymous(grpc.GenericRpcHandler):  # type: ignore[misc]
        def service(self, handler_call_details: Any) -> Any:
            return None

    with pytest.raises(TypeError, match="service_name"):
        ServicerTarget(service).add_generic_rpc_handlers((Anonymous(),))


def test_unparsable_request_is_internal_like_grpcio(service: GrpcService,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    add_servicer(pb_grpc.add_TestServiceServicer_to_server, interop.TestServicer(), service)
    with caplog.at_level(logging.ERROR, logger="pygrpc_ffi"):
        result = TestClient(service).call_raw(f"/{TEST_SERVICE}/UnaryCall", b"\xff\xff\xff")
    assert (result.code, result.message) == (StatusCode.INTERNAL,
                                             "Exception deserializing request!")
    assert "cannot deserialize" in caplog.text


def test_protobuf_parser_gets_the_zero_copy_view(service: GrpcService) -> None:
    seen: list[type] = []

    def deserialize(data: Any) -> Any:
        seen.append(type(data))
        return data

    handlers = {
        "Proto": grpc.unary_unary_rpc_method_handler(
            lambda request, context: pb.Empty(), request_deserializer=pb.Empty.FromString,
            response_serializer=pb.Empty.SerializeToString),
        "Custom": grpc.unary_unary_rpc_method_handler(
            lambda request, context: bytes(request), request_deserializer=deserialize),
    }
    ServicerTarget(service).add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("demo.Parse", handlers),))
    assert is_protobuf_parser(pb.Empty.FromString)
    assert not is_protobuf_parser(deserialize)
    client = TestClient(service)
    assert client.unary_raw("/demo.Parse/Proto", b"") == b""
    # A deserializer that is not protobuf's gets bytes it may keep.
    assert client.unary_raw("/demo.Parse/Custom", b"abc") == b"abc"
    assert seen == [bytes]


def test_returning_none_is_internal_like_grpcio(service: GrpcService) -> None:
    handlers = {"Nothing": grpc.unary_unary_rpc_method_handler(
        lambda request, context: None, response_serializer=pb.Empty.SerializeToString)}
    ServicerTarget(service).add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("demo.None", handlers),))
    result = TestClient(service).call_raw("/demo.None/Nothing")
    assert (result.code, result.message) == (StatusCode.INTERNAL, "Failed to serialize response!")
