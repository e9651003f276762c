"""Server reflection: the answers (list services, file by name, file
containing a symbol) as a unit-tested function, and the bidi-streaming RPC
through the C path, answering as grpcio-reflection's own servicer does and
serving grpcio-reflection's client."""

from __future__ import annotations

import interop_servicer as interop
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection as grpc_reflection
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from interop_servicer import pb_grpc

from pygrpc_ffi import GrpcService, StatusCode
from pygrpc_ffi.health import add_health
from pygrpc_ffi.reflection import SERVICE_NAME, SERVICE_NAME_V1, add_reflection
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
    assert names == ["grpc.health.v1.Health", SERVICE_NAME_V1, SERVICE_NAME,
                     "grpc.testing.TestService"]
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


REQUESTS = [
    Request(list_services=""),
    Request(file_by_filename="interop.proto"),
    Request(file_containing_symbol="grpc.testing.TestService"),
    Request(file_containing_symbol="grpc.testing.SimpleRequest"),
    Request(file_containing_symbol="grpc.health.v1.Health"),
    Request(file_containing_symbol="no.Such"),
    Request(file_by_filename="no/such.proto"),
    Request(all_extension_numbers_of_type="no.Such"),
    Request(file_containing_extension=reflection_pb2.ExtensionRequest(
        containing_type="grpc.testing.Empty", extension_number=7)),
    Request(),
]


def test_bidi_stream_answers_as_grpcio_reflection_does(reflected: GrpcService) -> None:
    add_reflection(reflected)
    names = reflected.list_services()
    expected = list(grpc_reflection.ReflectionServicer(names).ServerReflectionInfo(
        iter(REQUESTS), None))
    stub = reflection_pb2_grpc.ServerReflectionStub(TestClient(reflected).channel)
    answers = list(stub.ServerReflectionInfo(iter(REQUESTS), timeout=10))
    assert answers == expected
    assert [a.WhichOneof("message_response") for a in answers[:6]] == [
        "list_services_response", "file_descriptor_response", "file_descriptor_response",
        "file_descriptor_response", "file_descriptor_response", "error_response"]


def test_grpcio_reflection_client_lists_and_resolves_every_service(
        reflected: GrpcService) -> None:
    add_reflection(reflected)
    database = ProtoReflectionDescriptorDatabase(TestClient(reflected, default_timeout=10).channel)
    services = sorted(database.get_services())
    assert services == reflected.list_services()
    pool = descriptor_pool.DescriptorPool(database)
    for name in services:
        described = pool.FindServiceByName(name)
        assert described.full_name == name and described.methods
    method = pool.FindMethodByName("grpc.testing.TestService.UnaryCall")
    assert method.input_type.full_name == "grpc.testing.SimpleRequest"
