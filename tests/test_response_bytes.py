"""``bytes(GrpcResponse)`` is its payload, as grpcio interceptors read an
answer; a GrpcResponse stays non-iterable."""

from __future__ import annotations

import pytest
from google.protobuf import wrappers_pb2

from pygrpc_ffi import GrpcResponse


@pytest.mark.parametrize("payload", [b"abc", bytearray(b"abc"), memoryview(b"xabc")[1:]])
def test_bytes_of_a_response_is_its_payload(payload: object) -> None:
    assert bytes(GrpcResponse(payload, trailers={"k": "v"})) == b"abc"


def test_bytes_of_a_message_response_is_the_serialized_message() -> None:
    message = wrappers_pb2.StringValue(value="x")
    assert bytes(GrpcResponse(message)) == message.SerializeToString()


def test_a_response_is_not_iterable() -> None:
    with pytest.raises(TypeError):
        iter(GrpcResponse(b"abc"))


def test_bytes_of_a_response_without_bytes_raises_type_error() -> None:
    with pytest.raises(TypeError):
        bytes(GrpcResponse(1.5))
