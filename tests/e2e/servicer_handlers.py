"""A generated grpcio servicer, unchanged, registered for a server through
pygrpc_ffi's ServicerTarget (the grpc.aio flavour when PGF_E2E_ASYNC=1)."""

from __future__ import annotations

import os

import interop_servicer as interop

from pygrpc_ffi.servicer import add_servicer

servicer = (interop.AsyncTestServicer() if os.environ.get("PGF_E2E_ASYNC") == "1"
            else interop.TestServicer())
add_servicer(interop.pb_grpc.add_TestServiceServicer_to_server, servicer)
