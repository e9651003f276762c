"""Spikard's Python API where it costs nothing in safety: mutable response
metadata, reprs with payload_size, the errors of registration and of
handle_request, and handle_request raising the handler's own exception."""

from __future__ import annotations

import asyncio
import traceback

import pytest

from pygrpc_ffi import GrpcError, GrpcHandler, GrpcRequest, GrpcResponse, GrpcService, StatusCode
from pygrpc_ffi.service import HandlerNotFound


def test_response_metadata_is_a_mutable_dict_defaulting_to_empty(service: GrpcService) -> None:
    response = GrpcResponse(b"x")
    assert response.metadata == {} and response.trailers == {}
    assert GrpcResponse().metadata is not response.metadata  # not shared
    response.metadata["x-k"] = "v"
    response.trailers["x-t"] = "w"

    service.register_method("pkg.Svc", "M", lambda request: response)
    result = service.call("pkg.Svc", "M", timeout=5)
    assert result.ok
    assert result.initial_metadata["x-k"] == "v"
    assert result.trailing_metadata["x-t"] == "w"


def test_reprs_show_names_and_payload_size() -> None:
    request = GrpcRequest("pkg.Svc", "Get", b"abc")
    assert repr(request) == "GrpcRequest(service_name='pkg.Svc', method_name='Get', payload_size=3)"
    assert request.payload_size == 3
    response = GrpcResponse(b"hello", metadata={"k": "v"})
    assert repr(response) == "GrpcResponse(payload_size=5, metadata={'k': 'v'}, trailers={})"
    assert GrpcResponse(memoryview(b"1234")).payload_size == 4


def test_registering_a_non_handler_names_the_protocol(service: GrpcService) -> None:
    with pytest.raises(TypeError, match="implement GrpcHandler protocol") as info:
        service.register_handler("pkg.Svc", 42)
    assert "handle_request" in str(info.value) and "not int" in str(info.value)
    with pytest.raises(TypeError, match="implement GrpcHandler protocol"):
        service.register_method("pkg.Svc", "M", object())  # type: ignore[arg-type]
    assert not service.has_service("pkg.Svc")


def test_handle_request_for_an_unknown_service_raises_value_error(service: GrpcService) -> None:
    with pytest.raises(ValueError, match=r"No handler registered for service 'pkg\.Nope'") as info:
        asyncio.run(service.handle_request(GrpcRequest("pkg.Nope", "Get")))
    assert isinstance(info.value, HandlerNotFound)
    assert isinstance(info.value, GrpcError) and info.value.code is StatusCode.UNIMPLEMENTED


class Boom(Exception):
    pass


class Handler:
    async def handle_request(self, request: GrpcRequest) -> GrpcResponse:
        if request.method_name == "Fail":
            raise Boom("async handler failed")
        return GrpcResponse(request.payload[::-1])


def test_handle_request_raises_the_handlers_own_exception(service: GrpcService) -> None:
    assert isinstance(Handler(), GrpcHandler)
    service.register_handler("pkg.Async", Handler())

    def failing_sync(request: GrpcRequest) -> bytes:
        raise KeyError("the handler's own")

    service.register_method("pkg.Sync", "Fail", failing_sync)

    with pytest.raises(Boom, match="async handler failed") as info:
        asyncio.run(service.handle_request(GrpcRequest("pkg.Async", "Fail")))
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "handle_request" in frames  # the handler's own frame is in the traceback
    with pytest.raises(KeyError, match="the handler's own") as sync_info:
        asyncio.run(service.handle_request(GrpcRequest("pkg.Sync", "Fail")))
    assert "failing_sync" in [f.name for f in traceback.extract_tb(sync_info.value.__traceback__)]

    response = asyncio.run(service.handle_request(GrpcRequest("pkg.Async", "Echo", b"abc")))
    assert isinstance(response, GrpcResponse) and response.payload == b"cba"
    # Hosts and call() still see the mapped status, never the exception.
    assert service.call("pkg.Async", "Fail", timeout=5).code is StatusCode.INTERNAL
    assert service.call("pkg.Sync", "Fail", timeout=5).code is StatusCode.NOT_FOUND


def test_handle_request_answers_bytes_like(service: GrpcService) -> None:
    service.register_method("pkg.Svc", "Bytes", lambda request: bytearray(b"raw"))
    service.register_method("pkg.Svc", "Nothing", lambda request: None)
    assert asyncio.run(service.handle_request(GrpcRequest("pkg.Svc", "Bytes"))).payload == b"raw"
    with pytest.raises(TypeError, match="handler returned NoneType"):
        asyncio.run(service.handle_request(GrpcRequest("pkg.Svc", "Nothing")))
