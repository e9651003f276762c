"""The benchmarks' Python echo handlers, registered on import into
``pygrpc_ffi.default_service()``: the module the C++ host and the pip-only
engine serve (``pygrpc-ffi serve bench.handlers``).

``/bench.Echo/Echo`` answers with a copy of the request payload (the view
is released after the call, so a handler that echoes must copy);
``/bench.Echo/AsyncEcho`` does the same from an ``async def``;
``/bench.Echo/Work`` spends ~0.2 ms of pure Python (it holds the GIL) before
echoing, for the processes benchmark.  The grpcio
baselines (bench/grpcio_servers.py) serve the same echo written the grpcio
way, bytes in and bytes out.
"""

from __future__ import annotations

import pygrpc_ffi as pgf

SERVICE = "bench.Echo"
METHOD = "Echo"
PATH = f"/{SERVICE}/{METHOD}"
WORK_PATH = f"/{SERVICE}/Work"
WORK_ITERATIONS = 12_000


def echo(request: pgf.GrpcRequest) -> bytes:
    """Sync echo."""
    return bytes(request.payload)


async def async_echo(request: pgf.GrpcRequest) -> bytes:
    """Async echo."""
    return bytes(request.payload)


def work(request: pgf.GrpcRequest) -> bytes:
    """CPU-bound echo: a Python loop, then the echo."""
    total = 0
    for i in range(WORK_ITERATIONS):
        total += i
    return bytes(request.payload) if total else b""


_service = pgf.default_service()
_service.register_method(SERVICE, METHOD, echo)
_service.register_method(SERVICE, "AsyncEcho", async_echo)
_service.register_method(SERVICE, "Work", work)
