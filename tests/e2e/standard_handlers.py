"""The standard services on a server: the interop servicer (unchanged),
health checking and server reflection, plus e2e.HealthControl/Set (request:
``service=status`` as text) to change serving statuses from the test."""

from __future__ import annotations

import interop_servicer as interop

import pygrpc_ffi as pgf
from pygrpc_ffi.health import add_health
from pygrpc_ffi.reflection import add_reflection
from pygrpc_ffi.servicer import add_servicer

service = pgf.default_service()
add_servicer(interop.pb_grpc.add_TestServiceServicer_to_server, interop.TestServicer())
health = add_health(service, {"grpc.testing.TestService": "SERVING"})
add_reflection(service)


@service.method("e2e.HealthControl", "Set")
def set_status(request: pgf.GrpcRequest) -> bytes:
    name, _, status = bytes(request.payload).decode().partition("=")
    health.set(name, status)
    return b""
