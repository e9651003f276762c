"""The benchmarks' Python echo handlers, registered on import into
``pygrpc_ffi.default_service()``: the module the C++ host and the pip-only
engine serve (``pygrpc-ffi serve bench.handlers``).

``/bench.Echo/Echo`` answers with a copy of the request payload (as a
grpcio servicer would; the view itself could be sent without a copy);
``/bench.Echo/AsyncEcho`` does the same from an ``async def``;
``/bench.Echo/Work`` spends ~0.2 ms of pure Python (it holds the GIL) before
echoing, for the processes benchmark.  The grpcio
baselines (bench/grpcio_servers.py) serve the same echo written the grpcio
way, bytes in and bytes out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pygrpc_ffi as pgf

SERVICE = "bench.Echo"
METHOD = "Echo"
PATH = f"/{SERVICE}/{METHOD}"
WORK_PATH = f"/{SERVICE}/Work"
WORK_ITERATIONS = 12_000


def echo(request: pgf.GrpcRequest) -> bytes:
    """Sync echo."""
    return request.payload


async def async_echo(request: pgf.GrpcRequest) -> bytes:
    """Async echo."""
    return request.payload


def work(request: pgf.GrpcRequest) -> bytes:
    """CPU-bound echo: a Python loop, then the echo."""
    total = 0
    for i in range(WORK_ITERATIONS):
        total += i
    return request.payload if total else b""


STREAM_SERVICE = "bench.Stream"
MESSAGE = b"0123456789abcdef"


def bidi(requests: Iterator[pgf.GrpcRequest]) -> Iterator[bytes]:
    """Bidi echo: each message back, copied as a grpcio servicer would."""
    for request in requests:
        yield request.payload


async def async_bidi(requests: AsyncIterator[pgf.GrpcRequest]) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request.payload


def server_stream(request: pgf.GrpcRequest) -> Iterator[bytes]:
    """N 16-byte messages for a request holding the decimal N."""
    for _ in range(int(request.payload)):
        yield MESSAGE


async def async_server_stream(request: pgf.GrpcRequest) -> AsyncIterator[bytes]:
    for _ in range(int(request.payload)):
        yield MESSAGE


_service = pgf.default_service()
_service.register_method(STREAM_SERVICE, "Bidi", bidi, request_streaming=True,
                         response_streaming=True)
_service.register_method(STREAM_SERVICE, "AsyncBidi", async_bidi, request_streaming=True,
                         response_streaming=True)
_service.register_method(STREAM_SERVICE, "Server", server_stream, response_streaming=True)
_service.register_method(STREAM_SERVICE, "AsyncServer", async_server_stream,
                         response_streaming=True)
_service.register_method(SERVICE, METHOD, echo)
_service.register_method(SERVICE, "AsyncEcho", async_echo)
_service.register_method(SERVICE, "Work", work)
