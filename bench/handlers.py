"""The benchmarks' Python echo handlers, registered on import into
``pygrpc_ffi.default_service()``: the module the C++ host and the pip-only
engine serve (``pygrpc-ffi serve bench.handlers``).

``/bench.Echo/Echo`` answers with a copy of the request payload (the view
is released after the call, so a handler that echoes must copy);
``/bench.Echo/AsyncEcho`` does the same from an ``async def``.  The grpcio
baselines (bench/grpcio_servers.py) serve the same echo written the grpcio
way, bytes in and bytes out.
"""

from __future__ import annotations

import pygrpc_ffi as pgf

SERVICE = "bench.Echo"
METHOD = "Echo"
PATH = f"/{SERVICE}/{METHOD}"


def echo(request: pgf.GrpcRequest) -> bytes:
    """Sync echo."""
    return bytes(request.payload)


async def async_echo(request: pgf.GrpcRequest) -> bytes:
    """Async echo."""
    return bytes(request.payload)


_service = pgf.default_service()
_service.register_method(SERVICE, METHOD, echo)
_service.register_method(SERVICE, "AsyncEcho", async_echo)
