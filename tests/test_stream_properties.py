"""Property tests of streaming servicers through the C path, driven by the
testing kit's strategies: whatever stream of messages and metadata a client
sends, every kind answers what the servicer computes, in order, with the
metadata it set."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from interop_servicer import pb

from pygrpc_ffi import GrpcService
from pygrpc_ffi.servicer import ServicerTarget
from pygrpc_ffi.testing import TestClient
from pygrpc_ffi.testing import strategies as gs

pytestmark = pytest.mark.timeout(120)

SVC = "demo.Props"
PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _echo_stream(requests: Iterator[pb.SimpleRequest],
                 context: grpc.ServicerContext) -> Iterator[pb.SimpleResponse]:
    context.send_initial_metadata(tuple(context.invocation_metadata()))
    for request in requests:
        yield pb.SimpleResponse(payload=request.payload, username=str(request.response_size))


async def _aecho_stream(requests: AsyncIterator[pb.SimpleRequest],
                        context: Any) -> AsyncIterator[pb.SimpleResponse]:
    async for request in requests:
        yield pb.SimpleResponse(payload=request.payload, username=str(request.response_size))


def _count(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    return str(sum(len(r) for r in requests)).encode()


def _split(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    context.set_trailing_metadata((("x-count", str(len(request))),))
    for i in range(0, len(request), 7):
        yield request[i:i + 7]


@pytest.fixture
def client(service: GrpcService) -> TestClient:
    message = {"request_deserializer": pb.SimpleRequest.FromString,
               "response_serializer": pb.SimpleResponse.SerializeToString}
    handlers = {
        "Echo": grpc.stream_stream_rpc_method_handler(_echo_stream, **message),
        "AEcho": grpc.stream_stream_rpc_method_handler(_aecho_stream, **message),
        "Count": grpc.stream_unary_rpc_method_handler(_count),
        "Split": grpc.unary_stream_rpc_method_handler(_split),
    }
    ServicerTarget(service).add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SVC, handlers),))
    return TestClient(service, default_timeout=20)


def _expected(requests: list[pb.SimpleRequest]) -> list[pb.SimpleResponse]:
    return [pb.SimpleResponse(payload=r.payload, username=str(r.response_size))
            for r in requests]


@PROPERTY
@given(requests=gs.message_sequences(pb.SimpleRequest), metadata=gs.metadata())
def test_bidi_answers_every_message_in_order(client: TestClient, requests: list[Any],
                                             metadata: list[tuple[str, Any]]) -> None:
    call = client.stream(f"/{SVC}/Echo", requests, metadata=metadata,
                         response_type=pb.SimpleResponse)
    assert list(call) == _expected(requests)
    assert call.initial_metadata() == tuple(metadata)


@PROPERTY
@given(requests=gs.message_sequences(pb.SimpleRequest))
def test_async_bidi_answers_every_message_in_order(client: TestClient,
                                                   requests: list[Any]) -> None:
    call = client.stream(f"/{SVC}/AEcho", requests, response_type=pb.SimpleResponse)
    assert list(call) == _expected(requests)


@PROPERTY
@given(requests=gs.message_sequences())
def test_client_stream_sees_every_byte(client: TestClient, requests: list[bytes]) -> None:
    result = client.call_stream_raw(f"/{SVC}/Count", requests)
    assert result.ok and result.messages == (str(sum(map(len, requests))).encode(),)


@PROPERTY
@given(payload=gs.payloads(max_size=2048))
def test_server_stream_splits_and_sets_trailers(client: TestClient, payload: bytes) -> None:
    result = client.call_stream_raw(f"/{SVC}/Split", [payload])
    assert result.ok and b"".join(result.messages) == payload
    assert all(0 < len(m) <= 7 for m in result.messages)
    assert result.trailing_metadata.pairs() == (("x-count", str(len(payload))),)
