"""What tests/e2e/test_stream_memory_budget.py serves (beside the host's C
echo and host_stream_handlers): `async def` streams that hold what a client
makes them hold, for the host's memory budget (--max-memory-bytes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pygrpc_ffi as pgf

service = pgf.default_service()

BUDGET = "e2e.Budget"


@service.method(BUDGET, "Hold", request_streaming=True, response_streaming=True)
async def hold(requests: AsyncIterator[pgf.GrpcRequest]) -> AsyncIterator[bytes]:
    """A bidi stream that answers each message and waits for the next one: a
    client that never half-closes keeps it (a running task) forever."""
    async for r in requests:
        yield bytes(r.payload)


@service.method(BUDGET, "NoRead", request_streaming=True, response_streaming=True)
async def no_read(requests: AsyncIterator[pgf.GrpcRequest]) -> AsyncIterator[bytes]:
    """A bidi stream whose handler never reads: what the client sends stays
    in the transport."""
    await asyncio.sleep(3600)
    yield b""


@service.method(BUDGET, "Big", response_streaming=True)
async def big(request: pgf.GrpcRequest) -> AsyncIterator[bytes]:
    """Request: the decimal SIZE; answers SIZE-byte messages until the
    client goes (a new object each time, as a real producer makes them)."""
    size = int(bytes(request.payload))
    i = 0
    while True:
        i += 1
        yield bytes([i % 256]) * size


@service.method(BUDGET, "Stream", response_streaming=True)
async def stream(request: pgf.GrpcRequest) -> AsyncIterator[bytes]:
    """Request: "COUNT SIZE"; answers COUNT messages of SIZE bytes."""
    count, size = map(int, bytes(request.payload).split())
    for i in range(count):
        yield bytes([i % 256]) * size


# Messages the Counted streams made, by stream kind ("sync" or "async").
produced = {"sync": 0, "async": 0}


@service.method(BUDGET, "Counted", response_streaming=True)
def counted(request: pgf.GrpcRequest) -> Iterator[bytes]:
    """16-byte messages until the client goes, each counted as it is made."""
    while True:
        produced["sync"] += 1
        yield b"0123456789abcdef"


@service.method(BUDGET, "AsyncCounted", response_streaming=True)
async def async_counted(request: pgf.GrpcRequest) -> AsyncIterator[bytes]:
    while True:
        produced["async"] += 1
        yield b"0123456789abcdef"


@service.method(BUDGET, "Produced")
def produced_count(request: pgf.GrpcRequest) -> bytes:
    """How many messages the Counted stream of kind PAYLOAD made so far."""
    return str(produced[bytes(request.payload).decode()]).encode()


@service.method(BUDGET, "Ping")
def ping(request: pgf.GrpcRequest) -> bytes:
    """A unary call, for the legitimate client."""
    return b"pong"
