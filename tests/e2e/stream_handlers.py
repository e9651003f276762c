"""Streaming handlers the end-to-end stream tests serve (e2e.Streams), and
a control method reporting how many handler generators were closed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pygrpc_ffi as pgf

service = pgf.default_service()
SVC = "e2e.Streams"
_lock = threading.Lock()
_closed: dict[str, int] = {}


def _mark_closed(name: str) -> None:
    with _lock:
        _closed[name] = _closed.get(name, 0) + 1


@service.method(SVC, "Total", request_streaming=True)
def total(requests: Iterator[pgf.GrpcRequest]) -> bytes:
    return str(sum(len(r.payload) for r in requests)).encode()


@service.method(SVC, "Count", response_streaming=True)
def count(request: pgf.GrpcRequest) -> Iterator[bytes]:
    for i in range(int(bytes(request.payload))):
        yield b"%d" % i


@service.method(SVC, "Echo", request_streaming=True, response_streaming=True)
def echo(requests: Iterator[pgf.GrpcRequest]) -> Iterator[memoryview]:
    for r in requests:
        yield r.payload  # the request's own bytes, sent without a copy


@service.method(SVC, "AsyncEcho", request_streaming=True, response_streaming=True)
async def async_echo(requests: AsyncIterator[pgf.GrpcRequest]) -> AsyncIterator[memoryview]:
    async for r in requests:
        yield r.payload


@service.method(SVC, "FailThird", response_streaming=True)
def fail_third(request: pgf.GrpcRequest) -> Iterator[pgf.GrpcResponse]:
    yield pgf.GrpcResponse(b"one", metadata={"x-initial": "i"})
    yield pgf.GrpcResponse(b"two", trailers={"x-trailer": "t"})
    raise pgf.FailedPrecondition("third is refused")


@service.method(SVC, "Endless", response_streaming=True)
def endless(request: pgf.GrpcRequest) -> Iterator[bytes]:
    try:
        while True:
            yield b"tick"
    finally:
        _mark_closed("Endless")


@service.method(SVC, "AsyncEndless", response_streaming=True)
async def async_endless(request: pgf.GrpcRequest) -> AsyncIterator[bytes]:
    try:
        while True:
            await asyncio.sleep(0.001)
            yield b"tick"
    finally:
        _mark_closed("AsyncEndless")


@service.method(SVC, "Drain", request_streaming=True)
def drain(requests: Iterator[pgf.GrpcRequest]) -> bytes:
    try:
        for _ in requests:
            pass
    finally:
        _mark_closed("Drain")
    return b"drained"


@service.method(SVC, "Big", response_streaming=True)
def big(request: pgf.GrpcRequest) -> Iterator[bytes]:
    """N messages of 1 MiB each (N the decimal request)."""
    chunk = b"\x5a" * (1024 * 1024)
    for _ in range(int(bytes(request.payload))):
        yield chunk


@service.method("e2e.StreamControl", "Closed")
def closed(request: pgf.GrpcRequest) -> bytes:
    with _lock:
        return str(_closed.get(bytes(request.payload).decode(), 0)).encode()


@service.method("e2e.StreamControl", "Live")
def live(request: pgf.GrpcRequest) -> bytes:
    counts = pgf.live_objects()
    return b"%d %d" % (counts["calls"], counts["messages"])
