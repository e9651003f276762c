"""Rich errors: a google.rpc.Status chosen by a handler reaches a grpcio
client as grpc-status-details-bin, and rpc_status.from_call decodes it.

Handlers raise GrpcError(details=<Status>) or call
context.abort_with_status(rpc_status.to_status(status)); the status details
travel through the C call (pgf_call_set_status_details: the shim refuses
grpc-status-details-bin as handler metadata) and the grpcio engine sends them as the
grpc-status-details-bin trailer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from pygrpc_ffi import GrpcError, GrpcService, StatusCode, grpcio_server
from pygrpc_ffi.servicer import ServicerTarget
from pygrpc_ffi.testing import CallError, TestClient

pytestmark = pytest.mark.timeout(20)

SERVICE = "demo.Rich"


def _status(code: int, message: str) -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason="QUOTA", domain="example.com",
                                            metadata={"limit": "10"}))
    help_detail = any_pb2.Any()
    help_detail.Pack(error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field="name", description="empty")]))
    return status_pb2.Status(code=code, message=message, details=[detail, help_detail])


QUOTA = _status(code_pb2.RESOURCE_EXHAUSTED, "quota exceeded ☹")
BAD = _status(code_pb2.INVALID_ARGUMENT, "bad request")


def abort_with_status(request: bytes, context: Any) -> bytes:
    # As in grpcio, the status's trailers replace those set before.
    context.set_trailing_metadata([("dropped", "x")])
    context.abort_with_status(rpc_status.to_status(QUOTA))


async def aio_abort_with_status(request: bytes, context: Any) -> bytes:
    await context.abort_with_status(rpc_status.to_status(QUOTA))


def trailer_and_code(request: bytes, context: Any) -> bytes:
    # The long way round: the trailer set by hand, then set_code and return.
    context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
    context.set_details("bad request")
    context.set_trailing_metadata([("grpc-status-details-bin", BAD.SerializeToString()),
                                   ("other", "kept")])
    return b""


def raise_grpc_error(request: Any) -> bytes:
    raise GrpcError(StatusCode.RESOURCE_EXHAUSTED, "quota exceeded ☹", details=QUOTA,
                    trailers=[("retry-after", "5")])


@pytest.fixture
def rich_service(service: GrpcService) -> GrpcService:
    handlers = {
        "AbortWithStatus": grpc.unary_unary_rpc_method_handler(abort_with_status),
        "AioAbortWithStatus": grpc.unary_unary_rpc_method_handler(aio_abort_with_status),
        "TrailerAndCode": grpc.unary_unary_rpc_method_handler(trailer_and_code),
    }
    ServicerTarget(service).add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, handlers),))
    service.register_method(SERVICE, "RaiseGrpcError", raise_grpc_error)
    return service


@pytest.fixture
def channel(rich_service: GrpcService) -> Iterator[grpc.Channel]:
    server = grpcio_server.start(rich_service, "127.0.0.1:0", max_workers=2)
    try:
        with grpc.insecure_channel(server.address) as ch:
            yield ch
    finally:
        server.stop(0)


CASES = {
    "AbortWithStatus": (QUOTA, ()),
    "AioAbortWithStatus": (QUOTA, ()),
    "TrailerAndCode": (BAD, (("other", "kept"),)),
    "RaiseGrpcError": (QUOTA, (("retry-after", "5"),)),
}


@pytest.mark.parametrize("method", sorted(CASES))
def test_grpcio_client_decodes_the_status(channel: grpc.Channel, method: str) -> None:
    expected, trailers = CASES[method]
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(f"/{SERVICE}/{method}")(b"", timeout=10)
    error = info.value
    assert error.code().value[0] == expected.code
    assert error.details() == expected.message
    status = rpc_status.from_call(error)
    assert status == expected
    info_detail = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info_detail) and info_detail.reason == "QUOTA"
    # Ordinary trailers travel beside the details.
    plain = [(k, v) for k, v in error.trailing_metadata() if k != "grpc-status-details-bin"]
    assert tuple(plain) == trailers


@pytest.mark.parametrize("method", sorted(CASES))
def test_details_ride_on_the_c_call(rich_service: GrpcService, method: str) -> None:
    expected, trailers = CASES[method]
    result = TestClient(rich_service).call_raw(f"/{SERVICE}/{method}")
    assert result.code.value == expected.code
    assert result.details == expected.SerializeToString()
    # The details are not among the handler's trailers: they ride apart.
    assert result.trailing_metadata.pairs() == trailers


def test_testing_kit_error_works_with_from_call(rich_service: GrpcService) -> None:
    with pytest.raises(CallError) as info:
        TestClient(rich_service).unary_raw(f"/{SERVICE}/AbortWithStatus")
    assert rpc_status.from_call(info.value) == QUOTA
    assert info.value.status == QUOTA


def test_status_details_are_dropped_on_success(service: GrpcService) -> None:
    def method(request: bytes, context: Any) -> bytes:
        context.set_trailing_metadata([("grpc-status-details-bin", QUOTA.SerializeToString())])
        return b"fine"

    ServicerTarget(service).add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {"Ok": grpc.unary_unary_rpc_method_handler(method)}),))
    result = TestClient(service).call_raw(f"/{SERVICE}/Ok")
    assert result.ok and result.payload == b"fine"
    assert result.details is None and result.trailing_metadata.pairs() == ()


def test_status_details_over_the_trailer_budget_fail_the_call_with_internal(
        service: GrpcService) -> None:
    big = status_pb2.Status(code=5, message="x" * 10_000)  # far over 5 KiB

    def handler(request: Any) -> bytes:
        raise GrpcError(StatusCode.NOT_FOUND, "gone", details=big)

    service.register_method("pkg.Rich", "Big", handler)
    result = service.call("pkg.Rich", "Big")
    assert result.code is StatusCode.INTERNAL
    assert result.details is None
