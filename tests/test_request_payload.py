"""``GrpcRequest.payload`` is bytes (made once, on first access) for unary and
every stream message, through the C dispatch; ``payload_view`` is the
zero-copy view: a handler reading only the view copies nothing."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable

import pytest
from request_idioms import DOC, EXPECTED, SERVICE, register

from pygrpc_ffi import GrpcRequest, GrpcService, StatusCode

pytestmark = pytest.mark.timeout(60, method="thread")


def test_bytes_idioms_work_on_a_unary_payload(service: GrpcService) -> None:
    register(service)
    result = service.call(SERVICE, "Unary", DOC)
    assert result.code is StatusCode.OK, result.message
    assert json.loads(result.payload) == EXPECTED


def test_bytes_idioms_work_on_every_stream_message(service: GrpcService) -> None:
    register(service)
    result = service.call_stream(SERVICE, "ClientStream", [DOC, DOC, DOC])
    assert result.code is StatusCode.OK, result.message
    assert json.loads(result.payload) == [EXPECTED] * 3
    result = service.call_stream(SERVICE, "AsyncBidi", [DOC, DOC])
    assert result.code is StatusCode.OK, result.message
    assert [json.loads(m) for m in result.messages] == [EXPECTED] * 2


def test_payload_and_view_of_a_request_made_in_python() -> None:
    request = GrpcRequest("pkg.Svc", "M", DOC)
    assert request.payload is DOC  # already bytes: no copy
    assert request.payload_view.readonly and request.payload_view == DOC
    from_view = GrpcRequest("pkg.Svc", "M", memoryview(bytearray(DOC)))
    assert type(from_view.payload) is bytes and from_view.payload == DOC


SIXTEEN_MIB = 16 * 1024 * 1024


def _peak_of_a_call(service: GrpcService, handler: Callable[[GrpcRequest], bytes],
                    size: int) -> int:
    """The peak of Python's allocations while a request of ``size`` bytes
    goes through the C dispatch into ``handler``."""
    service.register_method("zero.Copy", f"M{size}{handler.__name__}", handler)
    payload = bytes(size)  # the host's bytes: made before tracing starts
    tracemalloc.start()
    try:
        result = service.call("zero.Copy", f"M{size}{handler.__name__}", payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.code is StatusCode.OK and result.payload == b"ok"
    return peak


def reads_the_view(request: GrpcRequest) -> bytes:
    view = request.payload_view
    return b"ok" if view.nbytes and view[-1] == 0 else b"no"


def reads_the_bytes(request: GrpcRequest) -> bytes:
    data = request.payload
    return b"ok" if data and data[-1] == 0 else b"no"


def test_a_handler_reading_only_the_view_copies_nothing(service: GrpcService) -> None:
    small = _peak_of_a_call(service, reads_the_view, 16)
    large = _peak_of_a_call(service, reads_the_view, SIXTEEN_MIB)
    # A 16 MiB request costs what a 16 B one does: no copy of its bytes.
    assert large < small + 256 * 1024, (small, large)


def test_a_handler_reading_payload_makes_one_copy(service: GrpcService) -> None:
    large = _peak_of_a_call(service, reads_the_bytes, SIXTEEN_MIB)
    assert SIXTEEN_MIB <= large < 2 * SIXTEEN_MIB, large
