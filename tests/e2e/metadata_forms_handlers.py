"""Handlers that send metadata in each form the package accepts (a dict, a
list of pairs, a grpcio context's trailers), for
tests/e2e/test_metadata_forms_served.py.  The method name says the form;
``A`` methods are ``async def``."""

from __future__ import annotations

from typing import Any

import pygrpc_ffi as pgf

S = "e2e.MetadataForms"
service = pgf.default_service()

TRAILERS: dict[str, Any] = {
    "Dict": {"x-reason": "gone", "x-count-bin": b"\x01\x02"},
    "Pairs": [("x-reason", "gone"), ("x-count-bin", b"\x01\x02")],
    "Tuple": (("x-reason", "gone"), ("x-count-bin", b"\x01\x02")),
    "Metadata": pgf.Metadata([("x-reason", "gone"), ("x-count-bin", b"\x01\x02")]),
    "Ab": {"ab": "value"},
}
# An entry that cannot be sent beside a good one: the status still goes out.
BAD = [("x-reason", "gone"), ("Bad Key", "x"), ("x-line", "a\nb"), ("only-key",)]


def _register(form: str, trailers: Any) -> None:
    @service.method(S, f"Error{form}")
    def error(request: pgf.GrpcRequest) -> bytes:
        raise pgf.GrpcError(pgf.StatusCode.NOT_FOUND, "no such thing", trailers=trailers)

    @service.method(S, f"AError{form}")
    async def aerror(request: pgf.GrpcRequest) -> bytes:
        raise pgf.NotFound("no such thing", trailers=trailers)

    @service.method(S, f"Response{form}")
    def response(request: pgf.GrpcRequest) -> pgf.GrpcResponse:
        return pgf.GrpcResponse(b"ok", metadata=trailers, trailers=trailers)

    @service.method(S, f"AResponse{form}")
    async def aresponse(request: pgf.GrpcRequest) -> pgf.GrpcResponse:
        return pgf.GrpcResponse(b"ok", metadata=trailers, trailers=trailers)


for _form, _trailers in TRAILERS.items():
    _register(_form, _trailers)
_register("Bad", BAD)
