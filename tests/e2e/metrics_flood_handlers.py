"""A whole-service handler and a method registered by name in the same
service, for ``pygrpc-ffi serve metrics_flood_handlers``: the metrics table
flood of issue 24 (finding 7) sends method names at will to the first and
counts calls of the second."""

from __future__ import annotations

import pygrpc_ffi

SERVICE = "flood.Svc"

_service = pygrpc_ffi.default_service()


def _any_method(request: pygrpc_ffi.GrpcRequest) -> bytes:
    return b"any"


def _real(request: pygrpc_ffi.GrpcRequest) -> bytes:
    return b"real"


_service.register_handler(SERVICE, _any_method)
_service.register_method(SERVICE, "Real", _real)
