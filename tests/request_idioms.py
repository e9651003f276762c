"""Handlers that run the bytes idioms users write on ``request.payload``
(``json.loads``, ``.decode()``, ``in``, ``==``, slicing, ``startswith``) and
answer what they found as JSON: used through the C dispatch
(tests/test_request_payload.py) and served on both engines by
tests/e2e/idioms_handlers.py (tests/e2e/test_request_payload_served.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pygrpc_ffi as pgf

SERVICE = "idioms.Payload"
DOC = b'{"k": "error"}'
#: What idioms(DOC) finds.
EXPECTED = {"type": "bytes", "json": {"k": "error"}, "decoded": DOC.decode(),
            "has_error": True, "has_nul": False, "equal": True, "head": '{"k"',
            "starts": True, "same_object": True, "bytes_of": True, "memoryview_of": True}


def idioms(payload: bytes) -> dict[str, Any]:
    return {
        "type": type(payload).__name__,
        "json": json.loads(payload),
        "decoded": payload.decode(),
        "has_error": b"error" in payload,
        "has_nul": b"\x00" in payload,
        "equal": payload == DOC,
        "head": payload[:4].decode(),
        "starts": payload.startswith(b'{"k"'),
        "same_object": True,
        "bytes_of": bytes(payload) == payload,
        "memoryview_of": memoryview(payload).tobytes() == payload,
    }


def unary(request: pgf.GrpcRequest) -> bytes:
    found = idioms(request.payload)
    found["same_object"] = request.payload is request.payload  # made once, cached
    return json.dumps(found).encode()


def client_stream(requests: Iterator[pgf.GrpcRequest]) -> bytes:
    return json.dumps([idioms(r.payload) for r in requests]).encode()


async def async_bidi(requests: AsyncIterator[pgf.GrpcRequest]) -> AsyncIterator[bytes]:
    async for request in requests:
        yield json.dumps(idioms(request.payload)).encode()


def register(service: pgf.GrpcService) -> None:
    service.register_method(SERVICE, "Unary", unary)
    service.register_method(SERVICE, "ClientStream", client_stream, request_streaming=True)
    service.register_method(SERVICE, "AsyncBidi", async_bidi, request_streaming=True,
                            response_streaming=True)
