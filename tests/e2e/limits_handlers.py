"""What tests/e2e/test_host_limits.py serves besides host_stream_handlers:
handlers that hold a worker until the test says so.  They signal through
files, so that neither starting nor releasing them needs a worker."""

from __future__ import annotations

import os
import pathlib
import time

import pygrpc_ffi as pgf

service = pgf.default_service()


@service.method("e2e.Limits", "Block")
def block(request: pgf.GrpcRequest) -> bytes:
    """Payload: a directory.  Creates a "started-*" file in it, then holds
    its worker until the file "release" exists there (at most 60 s)."""
    where = pathlib.Path(bytes(request.payload).decode())
    (where / f"started-{os.getpid()}-{time.monotonic_ns()}").touch()
    deadline = time.monotonic() + 60
    while not (where / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return b"released"


@service.method("e2e.Limits", "AFast")
async def afast(request: pgf.GrpcRequest) -> bytes:
    return bytes(request.payload)


@service.method("e2e.Limits", "ABlock")
async def ablock(request: pgf.GrpcRequest) -> bytes:
    """As Block, but an async handler that blocks the event loop itself (a
    handler bug the host must survive)."""
    return block(request)
