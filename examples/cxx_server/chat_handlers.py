"""Python handlers of examples/cxx_server: every RPC kind of ``cxxdemo.Chat``,
served by the C++ server's ``pgf::grpc::PythonService`` beside its compiled
``helloworld.Greeter``.  Importing the module registers them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pygrpc_ffi as pgf

service = pgf.default_service()
SVC = "cxxdemo.Chat"


@service.method(SVC, "Hello")
def hello(request: pgf.GrpcRequest) -> pgf.GrpcResponse:
    """Unary: metadata both ways, a status of the handler's choice."""
    name = request.payload.decode()
    if not name:
        raise pgf.InvalidArgument("a name is required")
    caller = request.metadata.get("x-caller", "unknown")
    return pgf.GrpcResponse(f"Hello from Python, {name}!".encode(),
                            metadata={"x-served-by": "python"},
                            trailers={"x-caller-was": str(caller)})


@service.method(SVC, "Count", response_streaming=True)
def count(request: pgf.GrpcRequest) -> Iterator[bytes]:
    """Server streaming: N messages for the request N."""
    for i in range(int(request.payload)):
        yield b"%d" % i


@service.method(SVC, "Sum", request_streaming=True)
def total(requests: Iterator[pgf.GrpcRequest]) -> bytes:
    """Client streaming: the sum of the numbers sent."""
    return str(sum(int(r.payload) for r in requests)).encode()


@service.method(SVC, "Echo", request_streaming=True, response_streaming=True)
async def echo(requests: AsyncIterator[pgf.GrpcRequest]) -> AsyncIterator[bytes]:
    """Bidi streaming, async: each message back, upper-cased."""
    async for r in requests:
        yield r.payload.upper()


@service.method(SVC, "Wait")
async def wait(request: pgf.GrpcRequest) -> bytes:
    """Waits as long as the request says (seconds): the client's deadline ends it."""
    await asyncio.sleep(float(request.payload))
    return b"waited"
