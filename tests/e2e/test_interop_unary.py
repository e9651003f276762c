"""gRPC's interop test cases that apply to unary calls, served by Python
handlers through the C ABI and answered to a grpcio client."""

from __future__ import annotations

import grpc
import interop_pb2 as messages
import interop_pb2_grpc as services
import pytest

pytestmark = pytest.mark.timeout(60)

SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"


@pytest.fixture()
def stub(channel: grpc.Channel) -> services.TestServiceStub:
    return services.TestServiceStub(channel)


def test_empty_unary_returns_empty_message(stub: services.TestServiceStub) -> None:
    assert stub.EmptyCall(messages.Empty(), timeout=10) == messages.Empty()


def test_large_unary_returns_requested_size(stub: services.TestServiceStub) -> None:
    request = messages.SimpleRequest(response_size=314159,
                                     payload=messages.Payload(body=b"\0" * 271828))
    reply = stub.UnaryCall(request, timeout=10)
    assert reply.payload.body == b"\0" * 314159


def test_client_compressed_unary_is_decompressed_and_answered(
        stub: services.TestServiceStub) -> None:
    request = messages.SimpleRequest(response_size=314159,
                                     payload=messages.Payload(body=b"\0" * 271828),
                                     expect_compressed=messages.BoolValue(value=True))
    reply = stub.UnaryCall(request, timeout=10, compression=grpc.Compression.Gzip)
    assert len(reply.payload.body) == 314159


@pytest.mark.parametrize("compressed", [True, False])
def test_server_compressed_unary_answers_either_way(stub: services.TestServiceStub,
                                                    compressed: bool) -> None:
    request = messages.SimpleRequest(response_size=314159,
                                     payload=messages.Payload(body=b"\0" * 271828),
                                     response_compressed=messages.BoolValue(value=compressed))
    reply = stub.UnaryCall(request, timeout=10)
    assert reply.payload.body == b"\0" * 314159


@pytest.mark.parametrize("method", ["EmptyCall", "UnaryCall"])
def test_custom_metadata_is_echoed_as_initial_and_trailing(stub: services.TestServiceStub,
                                                           method: str) -> None:
    metadata = [("x-grpc-test-echo-initial", "test_initial_metadata_value"),
                ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")]
    request = (messages.Empty() if method == "EmptyCall" else
               messages.SimpleRequest(response_size=314159,
                                      payload=messages.Payload(body=b"\0" * 271828)))
    _, call = getattr(stub, method).with_call(request, metadata=metadata, timeout=10)
    assert ("x-grpc-test-echo-initial", "test_initial_metadata_value") in call.initial_metadata()
    assert ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab") in call.trailing_metadata()


@pytest.mark.parametrize("message", ["test status message", SPECIAL_MESSAGE])
def test_status_code_and_message_are_sent(stub: services.TestServiceStub, message: str) -> None:
    request = messages.SimpleRequest(
        response_status=messages.EchoStatus(code=2, message=message))
    with pytest.raises(grpc.RpcError) as info:
        stub.UnaryCall(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    assert info.value.details() == message


def test_unimplemented_method_answers_unimplemented(stub: services.TestServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.UnimplementedCall(messages.Empty(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unimplemented_service_answers_unimplemented(channel: grpc.Channel) -> None:
    stub = services.UnimplementedServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.UnimplementedCall(messages.Empty(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_timeout_on_sleeping_server_gives_deadline_exceeded(channel: grpc.Channel) -> None:
    sleep = channel.unary_unary("/e2e.Control/SleepAsync")
    with pytest.raises(grpc.RpcError) as info:
        sleep(b"5", timeout=0.001)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
