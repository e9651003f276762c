"""Typed handlers: register_method / register_handler / @method with
request_type= and response_type= parse the request with protobuf from the
zero-copy view and serialize the reply; calls go through the C path."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest
from interop_servicer import pb

from pygrpc_ffi import GrpcError, GrpcRequest, GrpcResponse, GrpcService, StatusCode
from pygrpc_ffi.context import AioServicerContext, ServicerContext
from pygrpc_ffi.testing import CallError, TestClient
from pygrpc_ffi.typed import takes_context

pytestmark = pytest.mark.timeout(20)

SERVICE = "grpc.testing.TestService"
PATH = f"/{SERVICE}/UnaryCall"


def unary_call(request: pb.SimpleRequest) -> pb.SimpleResponse:
    return pb.SimpleResponse(payload=pb.Payload(body=b"\1" * request.response_size),
                             username=str(type(request).__name__))


def test_typed_handler_gets_the_message(service: GrpcService) -> None:
    service.register_method(SERVICE, "UnaryCall", unary_call,
                            request_type=pb.SimpleRequest, response_type=pb.SimpleResponse)
    reply = TestClient(service).unary(PATH, pb.SimpleRequest(response_size=3))
    assert reply == pb.SimpleResponse(payload=pb.Payload(body=b"\1\1\1"),
                                      username="SimpleRequest")
    assert service.get_method_handler(SERVICE, "UnaryCall") is unary_call


def test_unparsable_request_is_invalid_argument(service: GrpcService) -> None:
    called: list[Any] = []
    service.register_method(SERVICE, "UnaryCall", called.append,
                            request_type=pb.SimpleRequest, response_type=pb.SimpleResponse)
    result = TestClient(service).call_raw(PATH, b"\xff\xff\xff\xff")
    assert result.code is StatusCode.INVALID_ARGUMENT
    assert result.message == "request is not a valid grpc.testing.SimpleRequest"
    assert called == []


def test_request_is_parsed_from_the_payload_view(service: GrpcService) -> None:
    seen: list[type] = []

    class Recording:
        """A message type whose parser records what it was given."""

        DESCRIPTOR = pb.Empty.DESCRIPTOR

        @staticmethod
        def FromString(data: Any) -> pb.Empty:
            seen.append(type(data))
            return pb.Empty.FromString(data)

    service.register_method(SERVICE, "EmptyCall", lambda message: pb.Empty(),
                            request_type=Recording, response_type=pb.Empty)
    assert TestClient(service).unary_raw(f"/{SERVICE}/EmptyCall", b"") == b""
    assert seen == [memoryview]  # no bytes() copy on our side


def test_handler_with_context(service: GrpcService) -> None:
    seen: dict[str, Any] = {}

    def handler(request: pb.SimpleRequest, context: ServicerContext) -> pb.SimpleResponse:
        seen["context"] = context
        seen["metadata"] = dict(context.invocation_metadata())
        seen["method"] = context.request.full_method
        context.set_trailing_metadata([("served-by", "typed")])
        if request.response_size < 0:
            context.abort(grpc.StatusCode.OUT_OF_RANGE, "negative size")
        return pb.SimpleResponse(username="ok")

    service.register_method(SERVICE, "UnaryCall", handler,
                            request_type=pb.SimpleRequest, response_type=pb.SimpleResponse)
    client = TestClient(service)
    reply, result = client.unary_with_call(PATH, pb.SimpleRequest(), metadata=[("who", "me")])
    assert reply.username == "ok"
    assert result.trailing_metadata.pairs() == (("served-by", "typed"),)
    assert isinstance(seen["context"], ServicerContext)
    assert seen["metadata"] == {"who": "me"}
    assert seen["method"] == PATH
    with pytest.raises(CallError) as info:
        client.unary(PATH, pb.SimpleRequest(response_size=-1))
    assert (info.value.status_code, info.value.details()) == (StatusCode.OUT_OF_RANGE,
                                                              "negative size")


def test_async_typed_handlers(service: GrpcService) -> None:
    async def plain(request: pb.SimpleRequest) -> pb.SimpleResponse:
        await asyncio.sleep(0)
        return pb.SimpleResponse(username=f"plain {request.response_size}")

    async def with_context(request: pb.Empty, context: AioServicerContext) -> pb.Empty:
        assert isinstance(context, AioServicerContext)
        await context.send_initial_metadata([("async", "yes")])
        return pb.Empty()

    service.register_method(SERVICE, "UnaryCall", plain,
                            request_type=pb.SimpleRequest, response_type=pb.SimpleResponse)
    service.register_method(SERVICE, "EmptyCall", with_context,
                            request_type=pb.Empty, response_type=pb.Empty)
    client = TestClient(service)
    assert client.unary(PATH, pb.SimpleRequest(response_size=4)).username == "plain 4"
    reply, result = client.unary_with_call(f"/{SERVICE}/EmptyCall", pb.Empty())
    assert reply == pb.Empty()
    assert result.initial_metadata.pairs() == (("async", "yes"),)


def test_decorator_and_service_wide_registration(service: GrpcService) -> None:
    @service.method(SERVICE, "UnaryCall", request_type=pb.SimpleRequest,
                    response_type=pb.SimpleResponse)
    def decorated(request: pb.SimpleRequest) -> pb.SimpleResponse:
        return pb.SimpleResponse(username="decorated")

    class Everything:
        def handle_request(self, request: pb.Empty) -> pb.Empty:
            assert isinstance(request, pb.Empty)
            return pb.Empty()

    service.register_handler("demo.Empties", Everything(), request_type=pb.Empty,
                             response_type=pb.Empty)
    client = TestClient(service)
    assert client.unary(PATH, pb.SimpleRequest()).username == "decorated"
    assert client.unary("/demo.Empties/Any", pb.Empty(), response_type=pb.Empty) == pb.Empty()
    assert decorated(pb.SimpleRequest()).username == "decorated"  # still the function


def test_wrong_response_type_is_internal(service: GrpcService,
                                         caplog: pytest.LogCaptureFixture) -> None:
    service.register_method(SERVICE, "UnaryCall", lambda request: pb.Empty(),
                            request_type=pb.SimpleRequest, response_type=pb.SimpleResponse)
    service.register_method(SERVICE, "EmptyCall", lambda request, context: pb.SimpleResponse(),
                            request_type=pb.Empty, response_type=pb.Empty)
    client = TestClient(service)
    with caplog.at_level(logging.ERROR, logger="pygrpc_ffi"):
        for path in (PATH, f"/{SERVICE}/EmptyCall"):
            result = client.call_raw(path, b"")
            assert (result.code, result.message) == (StatusCode.INTERNAL,
                                                     "Internal server error")
    assert "expected grpc.testing.SimpleResponse" in caplog.text
    assert "expected grpc.testing.Empty" in caplog.text


def test_grpc_response_and_errors(service: GrpcService) -> None:
    def handler(request: pb.SimpleRequest) -> Any:
        if request.response_size == 1:
            raise GrpcError(StatusCode.NOT_FOUND, "no such size")
        if request.response_size == 2:
            raise KeyError("size")  # mapped: NOT_FOUND
        return GrpcResponse(pb.SimpleResponse(username="wrapped"), metadata=[("m", "1")])

    service.register_method(SERVICE, "UnaryCall", handler,
                            request_type=pb.SimpleRequest, response_type=pb.SimpleResponse)
    client = TestClient(service)
    reply, result = client.unary_with_call(PATH, pb.SimpleRequest())
    assert reply.username == "wrapped" and result.initial_metadata.pairs() == (("m", "1"),)
    for size in (1, 2):
        with pytest.raises(CallError) as info:
            client.unary(PATH, pb.SimpleRequest(response_size=size))
        assert info.value.status_code is StatusCode.NOT_FOUND


def test_request_type_only_and_response_type_only(service: GrpcService) -> None:
    service.register_method(SERVICE, "UnaryCall",
                            lambda request: request.payload.body,  # bytes are fine
                            request_type=pb.SimpleRequest)

    def raw_in(request: GrpcRequest) -> pb.Empty:
        assert isinstance(request, GrpcRequest)
        return pb.Empty()

    service.register_method(SERVICE, "EmptyCall", raw_in, response_type=pb.Empty)
    client = TestClient(service)
    request = pb.SimpleRequest(payload=pb.Payload(body=b"body"))
    assert client.unary_raw(PATH, request.SerializeToString()) == b"body"
    assert client.unary(f"/{SERVICE}/EmptyCall", pb.Empty()) == pb.Empty()


def test_takes_context() -> None:
    assert not takes_context(lambda request: None)
    assert takes_context(lambda request, context: None)
    assert takes_context(lambda *args: None)
    assert not takes_context(lambda request, *, context=None: None)

    class Handler:
        def handle_request(self, request: Any, context: Any) -> None: ...

    assert takes_context(Handler().handle_request)
