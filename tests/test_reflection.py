"""Server reflection: the answers (list services, file by name, file
containing a symbol) as a unit-tested function, and the registered
bidi-streaming RPC, which answers UNIMPLEMENTED through the C path until
streaming exists."""

from __future__ import annotations

import grpc
import interop_servicer as interop
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from interop_servicer import pb_grpc

from pygrpc_ffi import GrpcService, StatusCode, grpcio_server
from pygrpc_ffi.health import add_health
from pygrpc_ffi.reflection import SERVICE_NAME, add_reflection
from pygrpc_ffi.servicer import add_servicer
from pygrpc_ffi.testing import TestClient

pytestmark = pytest.mark.timeout(20)

Request = reflection_pb2.ServerReflectionRequest


def _files(response: reflection_pb2.ServerReflectionResponse) -> list[
        descriptor_pb2.FileDescriptorProto]:
    assert response.WhichOneof("message_response") == "file_descriptor_response"
    return [descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in response.file_descriptor_response.file_descriptor_proto]


@pytest.fixture
def reflected(service: GrpcService) -> GrpcService:
    add_servicer(pb_grpc.add_TestServiceServicer_to_server, interop.TestServicer(), service)
    add_health(service)
    return service


def test_list_services_is_live(reflected: GrpcService) -> None:
    reflection = add_reflection(reflected)
    response = reflection.answer(Request(list_services=""))
    names = [s.name for s in response.list_services_response.service]
    assert names == ["grpc.health.v1.Health", SERVICE_NAME, "grpc.testing.TestService"]
    assert response.original_request == Request(list_services="")
    reflected.register_method("demo.Later", "Call", lambda request: b"")
    response = reflection.answer(Request(list_services="*"))
    assert "demo.Later" in [s.name for s in response.list_services_response.service]


def test_file_containing_symbol(reflected: GrpcService) -> None:
    reflection = add_reflection(reflected)
    for symbol in ("grpc.testing.TestService", "grpc.testing.TestService.UnaryCall",
                   "grpc.testing.SimpleRequest", "grpc.testing.SimpleRequest.response_size",
                   "grpc.testing.PayloadType", "grpc.testing.PayloadType.COMPRESSABLE"):
        files = _files(reflection.answer(Request(file_containing_symbol=symbol)))
        assert files[0].name == "interop.proto"
        assert "TestService" in [s.name for s in files[0].service]


def test_file_by_filename_with_dependencies(reflected: GrpcService) -> None:
    reflection = add_reflection(reflected)
    files = _files(reflection.answer(Request(file_by_filename="interop.proto")))
    assert [f.name for f in files] == ["interop.proto"]
    files = _files(reflection.answer(
        Request(file_by_filename="google/protobuf/descriptor.proto")))
    assert files[0].package == "google.protobuf"
    # A file that imports others comes with them, the file first.
    files = _files(reflection.answer(
        Request(file_containing_symbol="grpc.reflection.v1alpha.ServerReflection")))
    assert files[0].name == "grpc_reflection/v1alpha/reflection.proto"


def test_not_found_and_empty_requests(reflected: GrpcService) -> None:
    reflection = add_reflection(reflected)
    for request in (Request(file_by_filename="no/such.proto"),
                    Request(file_containing_symbol="no.Such"),
                    Request(file_containing_symbol="grpc.testing.TestService.NoSuch"),
                    Request(file_containing_symbol="grpc.testing.PayloadType.NO_SUCH"),
                    Request(file_containing_symbol="nodots"),
                    Request(all_extension_numbers_of_type="no.Such")):
        response = reflection.answer(request)
        assert response.error_response.error_code == StatusCode.NOT_FOUND
        assert response.original_request == request
    response = reflection.answer(Request(host="x"))
    assert response.error_response.error_code == StatusCode.INVALID_ARGUMENT


def test_extension_numbers_of_a_type_without_extensions(reflected: GrpcService) -> None:
    reflection = add_reflection(reflected)
    response = reflection.answer(Request(all_extension_numbers_of_type="grpc.testing.Empty"))
    assert response.all_extension_numbers_response.base_type_name == "grpc.testing.Empty"
    assert list(response.all_extension_numbers_response.extension_number) == []


def test_streaming_rpc_is_unimplemented_until_streaming(reflected: GrpcService) -> None:
    add_reflection(reflected)
    path = f"/{SERVICE_NAME}/ServerReflectionInfo"
    assert reflected.has_method(SERVICE_NAME, "ServerReflectionInfo")
    result = TestClient(reflected).call_raw(path, Request(list_services="").SerializeToString())
    assert result.code is StatusCode.UNIMPLEMENTED
    assert "streaming is not supported yet" in result.message
    # A real reflection client (grpcio) gets the same answer from the grpcio engine.
    server = grpcio_server.start(reflected, "127.0.0.1:0", max_workers=2)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                next(iter(stub.ServerReflectionInfo(iter([Request(list_services="")]),
                                                    timeout=10)))
            assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
            assert "streaming is not supported yet" in info.value.details()
    finally:
        server.stop(0)


def test_servicer_streams_answers_once_streaming_exists(reflected: GrpcService) -> None:
    reflection = add_reflection(reflected)
    requests = [Request(list_services=""), Request(file_containing_symbol="no.Such")]
    answers = list(reflection.ServerReflectionInfo(iter(requests), None))
    assert [a.WhichOneof("message_response") for a in answers] == [
        "list_services_response", "error_response"]
