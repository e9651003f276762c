"""What the host's stream tests serve besides the bench's C echo
(--native-echo of pygrpc_ffi_bench_server, bench/host/):
the unary Python handlers of interop_handlers, e2e.HostStreams (the server's
live C objects, request messages included; which handlers were closed) and
e2e.PyStream, Python streaming handlers of every kind, sync and async."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from collections.abc import AsyncIterator, Iterator

import interop_handlers  # noqa: F401  (registers its handlers)
from pygrpc_ffi._native import lib

import pygrpc_ffi as pgf

service = pgf.default_service()

LIVE_KINDS = {"names": 0, "handlers": 1, "calls": 2, "registries": 3, "buffers": 4,
              "messages": 5}


@service.method("e2e.HostStreams", "Live")
def live(request: pgf.GrpcRequest) -> bytes:
    """Every PGF_LIVE_* count of the server process (this call counts too);
    after a garbage collection if the payload is b"gc"."""
    if bytes(request.payload) == b"gc":
        gc.collect()
    return json.dumps({k: lib.pgf_live_count(v) for k, v in LIVE_KINDS.items()}).encode()


# --------------------------------------------------- Python streaming handlers

STREAM = "e2e.PyStream"
_closed_lock = threading.Lock()
_closed: dict[str, int] = {}


def _note_closed(name: str) -> None:
    with _closed_lock:
        _closed[name] = _closed.get(name, 0) + 1


@service.method("e2e.HostStreams", "Closed")
def closed(request: pgf.GrpcRequest) -> bytes:
    """How many times each handler's finally block ran."""
    with _closed_lock:
        return json.dumps(_closed).encode()


@service.method(STREAM, "Chat", request_streaming=True, response_streaming=True)
def chat(requests: Iterator[pgf.GrpcRequest]) -> Iterator[bytes]:
    try:
        for r in requests:
            yield b"echo:" + bytes(r.payload)
    finally:
        _note_closed("Chat")


@service.method(STREAM, "AChat", request_streaming=True, response_streaming=True)
async def achat(requests: AsyncIterator[pgf.GrpcRequest]) -> AsyncIterator[bytes]:
    try:
        async for r in requests:
            yield b"aecho:" + bytes(r.payload)
    finally:
        _note_closed("AChat")


@service.method(STREAM, "Total", request_streaming=True)
def total(requests: Iterator[pgf.GrpcRequest]) -> bytes:
    return str(sum(len(r.payload) for r in requests)).encode()


@service.method(STREAM, "ATotal", request_streaming=True)
async def atotal(requests: AsyncIterator[pgf.GrpcRequest]) -> bytes:
    n = 0
    async for r in requests:
        n += len(r.payload)
    return str(n).encode()


@service.method(STREAM, "Count", response_streaming=True)
def count(request: pgf.GrpcRequest) -> Iterator[bytes | pgf.GrpcResponse]:
    n = int(bytes(request.payload))
    for i in range(n):
        if i == 0:
            # The first answer carries the initial metadata and the trailers.
            yield pgf.GrpcResponse(b"0", metadata=[("x-first", "yes")],
                                   trailers=[("x-count", str(n))])
        else:
            yield str(i).encode()


@service.method(STREAM, "ACount", response_streaming=True)
async def acount(request: pgf.GrpcRequest) -> AsyncIterator[bytes]:
    for i in range(int(bytes(request.payload))):
        await asyncio.sleep(0)
        yield str(i).encode()


@service.method(STREAM, "Flood", response_streaming=True)
def flood(request: pgf.GrpcRequest) -> Iterator[bytes]:
    """Payload: "COUNT SIZE"; COUNT messages of SIZE bytes."""
    count_, size = map(int, bytes(request.payload).split())
    try:
        for i in range(count_):
            _note_closed("Flood.yielded")
            yield bytes([i % 256]) * size  # a new object each time
    finally:
        _note_closed("Flood")


@service.method(STREAM, "FailAfterTwo", response_streaming=True)
def fail_after_two(request: pgf.GrpcRequest) -> Iterator[bytes]:
    yield b"one"
    yield b"two"
    raise ValueError("no third")


@service.method(STREAM, "Wait", request_streaming=True, response_streaming=True)
def wait(requests: Iterator[pgf.GrpcRequest]) -> Iterator[bytes]:
    """Answers each message, then waits for the next one (sync)."""
    try:
        for r in requests:
            yield bytes(r.payload)
    finally:
        _note_closed("Wait")


@service.method(STREAM, "AWait", request_streaming=True, response_streaming=True)
async def await_(requests: AsyncIterator[pgf.GrpcRequest]) -> AsyncIterator[bytes]:
    """Answers each message, then waits for the next one (async)."""
    try:
        async for r in requests:
            yield bytes(r.payload)
    finally:
        _note_closed("AWait")


@service.method(STREAM, "AReuse", response_streaming=True)
async def areuse(request: pgf.GrpcRequest) -> AsyncIterator[bytearray]:
    """Yields one bytearray, rewritten after each yield: once a write has
    completed, its bytes are the handler's again."""
    buf = bytearray(16)
    for i in range(int(bytes(request.payload))):
        buf[:] = bytes([i % 256]) * 16
        yield buf
