"""Handlers the end-to-end tests serve: grpc.testing.TestService (the unary
interop cases) written with pygrpc_ffi's own API, and e2e.Control, raw-bytes
methods that misbehave on purpose or report what the handler saw."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import interop_pb2 as messages
from google.rpc import status_pb2

import pygrpc_ffi as pgf

service = pgf.default_service()
TEST_SERVICE = "grpc.testing.TestService"
ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"

_seen_lock = threading.Lock()
_seen: dict[str, object] = {}


Pairs = list[tuple[str, str | bytes]]


def _echo_metadata(request: pgf.GrpcRequest) -> tuple[Pairs, Pairs]:
    initial = [(ECHO_INITIAL, v) for v in request.metadata.get_all(ECHO_INITIAL)]
    trailing = [(ECHO_TRAILING, v) for v in request.metadata.get_all(ECHO_TRAILING)]
    return initial, trailing


@service.method(TEST_SERVICE, "EmptyCall")
def empty_call(request: pgf.GrpcRequest) -> pgf.GrpcResponse:
    messages.Empty.FromString(request.payload)
    initial, trailing = _echo_metadata(request)
    return pgf.GrpcResponse(messages.Empty(), metadata=initial, trailers=trailing)


@service.method(TEST_SERVICE, "UnaryCall")
def unary_call(request: pgf.GrpcRequest) -> pgf.GrpcResponse:
    message = messages.SimpleRequest.FromString(request.payload)
    initial, trailing = _echo_metadata(request)
    if message.response_status.code:
        raise pgf.GrpcError(message.response_status.code, message.response_status.message,
                            trailers=trailing)
    reply = messages.SimpleResponse(
        payload=messages.Payload(body=b"\0" * message.response_size))
    return pgf.GrpcResponse(reply, metadata=initial, trailers=trailing,
                            compress=message.response_compressed.value)


def _record(key: str, value: object) -> None:
    with _seen_lock:
        _seen[key] = value


@service.method("e2e.Control", "Seen")
def seen(request: pgf.GrpcRequest) -> bytes:
    """What earlier handlers observed, as JSON."""
    with _seen_lock:
        return json.dumps(_seen).encode()


@service.method("e2e.Control", "Inspect")
def inspect(request: pgf.GrpcRequest) -> bytes:
    """The request as the handler sees it: deadline, peer, metadata, size."""
    metadata = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in request.metadata.pairs()
                if k.startswith("x-")}
    return json.dumps({
        "time_remaining": request.time_remaining(),
        "peer": request.peer,
        "metadata": metadata,
        "size": request.payload_view.nbytes,
        "pid": os.getpid(),
        "service": request.service_name,
        "method": request.method_name,
    }).encode()


@service.method("e2e.Control", "SleepAsync")
async def sleep_async(request: pgf.GrpcRequest) -> bytes:
    """Sleeps for the payload's seconds; records whether it was cancelled."""
    seconds = float(bytes(request.payload) or b"1")
    _record("sleep_async", "started")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _record("sleep_async", "cancelled")
        raise
    _record("sleep_async", "finished")
    return b"slept"


@service.method("e2e.Control", "SleepSync")
def sleep_sync(request: pgf.GrpcRequest) -> bytes:
    """Sleeps, polling is_active(); records whether it saw cancellation."""
    seconds = float(bytes(request.payload) or b"1")
    _record("sleep_sync", "started")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not request.is_active():
            _record("sleep_sync", "cancelled")
            raise pgf.Cancelled("client went away")
        time.sleep(0.01)
    _record("sleep_sync", "finished")
    return b"slept"


@service.method("e2e.Control", "Raise")
def raise_error(request: pgf.GrpcRequest) -> bytes:
    raise RuntimeError("secret internal detail")


@service.method("e2e.Control", "BadMetadata")
def bad_metadata(request: pgf.GrpcRequest) -> pgf.GrpcResponse:
    key = bytes(request.payload).decode() or "Bad-Key"
    return pgf.GrpcResponse(b"never sent", trailers=[(key, "x\r\ny")])


@service.method("e2e.Control", "BadReturn")
def bad_return(request: pgf.GrpcRequest) -> object:
    return 42


@service.method("e2e.Control", "Huge")
def huge(request: pgf.GrpcRequest) -> bytes:
    return b"\x5a" * (16 * 1024 * 1024)


@service.method("e2e.Control", "RichError")
def rich_error(request: pgf.GrpcRequest) -> bytes:
    detail = status_pb2.Status(code=5, message="no such thing")
    raise pgf.NotFound("no such thing", details=detail)


@service.method("e2e.Control", "Echo")
def echo(request: pgf.GrpcRequest) -> bytes:
    return request.payload


@service.method("e2e.Control", "EchoForwarded")
def echo_forwarded(request: pgf.GrpcRequest) -> pgf.GrpcResponse:
    """Echoes payload, and the metadata whose keys start with "f-" as trailers."""
    pairs = [(k, v) for k, v in request.metadata.pairs() if k.startswith("f-")]
    return pgf.GrpcResponse(request.payload, metadata=pairs, trailers=pairs)


@service.method("e2e.Control", "SendMetadata")
def send_metadata(request: pgf.GrpcRequest) -> pgf.GrpcResponse:
    """Sends whatever metadata the request describes: JSON [where, key, value,
    is_bytes] entries, bytes values in hex.  Invalid ones must fail the call."""
    initial: Pairs = []
    trailing: Pairs = []
    for where, key, value, is_bytes in json.loads(bytes(request.payload)):
        entry = (key, bytes.fromhex(value) if is_bytes else value)
        (initial if where == "initial" else trailing).append(entry)
    return pgf.GrpcResponse(b"sent", metadata=initial, trailers=trailing)


@service.method("e2e.Control", "FailWith")
def fail_with(request: pgf.GrpcRequest) -> bytes:
    """Raises GrpcError(code, message, trailers=...): JSON [code, message]
    or [code, message, [[key, value], ...]]."""
    code, message, *rest = json.loads(bytes(request.payload))
    trailers = [tuple(entry) for entry in rest[0]] if rest else ()
    raise pgf.GrpcError(code, message, trailers=trailers)


@service.method("e2e.Control", "Hang")
def hang(request: pgf.GrpcRequest) -> bytes:
    """Blocks its thread for the payload's seconds, ignoring cancellation."""
    time.sleep(float(bytes(request.payload) or b"1"))
    return b"woke"


@service.method("e2e.Control", "Live")
def live(request: pgf.GrpcRequest) -> bytes:
    """The server process's live C objects (this call counts as one)."""
    return json.dumps(pgf.live_objects()).encode()
