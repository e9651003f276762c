"""Example handlers, served through the C ABI by ``pygrpc-ffi serve examples.greeter``.

Importing this module registers them into the process-wide default service,
which the gRPC C++ host dispatches into.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pygrpc_ffi as pgf

service = pgf.default_service()


@service.method("demo.Greeter", "SayHello")
def say_hello(request: pgf.GrpcRequest) -> pgf.GrpcResponse:
    """A sync handler: the payload is a name, the answer a greeting."""
    name = request.payload.decode("utf-8") or "world"
    return pgf.GrpcResponse(f"Hello, {name}!".encode(), metadata={"x-served-by": "pygrpc_ffi"})


@service.method("demo.Greeter", "SayHelloLater")
async def say_hello_later(request: pgf.GrpcRequest) -> bytes:
    """An async handler: runs on the package's event loop, not a host thread."""
    name = request.payload.decode("utf-8") or "world"
    await asyncio.sleep(0.01)
    return f"Hello later, {name}!".encode()


@service.method("demo.Calculator", "Divide")
def divide(request: pgf.GrpcRequest) -> bytes:
    """Errors become statuses: InvalidArgument is sent as INVALID_ARGUMENT."""
    numbers = json.loads(request.payload)
    if numbers["b"] == 0:
        raise pgf.InvalidArgument("division by zero")
    return json.dumps({"quotient": numbers["a"] / numbers["b"]}).encode()


class Echo:
    """A GrpcHandler for every method of demo.Echo: echoes payload and x-echo-* metadata."""

    def handle_request(self, request: pgf.GrpcRequest) -> pgf.GrpcResponse:
        echoed = [(k, v) for k, v in request.metadata.pairs() if k.startswith("x-echo-")]
        return pgf.GrpcResponse(request.payload, trailers=echoed)


service.register_handler("demo.Echo", Echo())


@service.method("demo.Greeter", "Countdown", response_streaming=True)
def countdown(request: pgf.GrpcRequest) -> Iterator[bytes]:
    """A server stream: each message is written once the client can take it."""
    for n in range(int(request.payload or b"3"), 0, -1):
        yield f"{n}...".encode()
    yield b"liftoff"


@service.method("demo.Greeter", "Chat", request_streaming=True, response_streaming=True)
async def chat(requests: AsyncIterator[pgf.GrpcRequest]) -> AsyncIterator[bytes]:
    """A bidi stream, async: each message is pulled from the client when asked for."""
    async for request in requests:
        yield b"you said: " + request.payload
