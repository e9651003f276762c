"""Python handlers for tests/c/test_embed_host.c.

The C host imports this module with ``pgf_python_import("host_handlers")``;
importing it registers the handlers below into ``pygrpc_ffi.default_service()``,
the registry the host dispatches into (``pgf_default_registry()``).
"""

from __future__ import annotations

import asyncio
import threading

import pygrpc_ffi
from pygrpc_ffi import GrpcRequest, GrpcResponse

# Opened by the host (a call to test.Control/OpenGate) to let test.Slow calls
# finish: the host unregisters test.Slow while its calls wait here.
_gate = threading.Event()


def echo(request: GrpcRequest) -> bytes | GrpcResponse:
    """The request's bytes; with an x-tag header, metadata too."""
    payload = bytes(request.payload)
    tag = request.get_metadata("x-tag")
    if tag is None:
        return payload
    return GrpcResponse(payload, metadata={"x-tag": tag}, trailers={"x-len": str(len(payload))})


def upper(request: GrpcRequest) -> bytes:
    """test.Echo/Upper: a method registration ahead of the service's."""
    return bytes(request.payload).upper()


async def async_echo(request: GrpcRequest) -> GrpcResponse:
    """Answers from the event-loop thread and says which thread that was."""
    payload = bytes(request.payload)
    await asyncio.sleep(0)
    if request.method_name == "Fail":
        raise ValueError(f"async bad input {payload.decode()}")
    return GrpcResponse(payload, trailers={"x-thread": str(threading.get_native_id())})


def raise_value_error(request: GrpcRequest) -> bytes:
    raise ValueError(f"bad input {bytes(request.payload).decode()}")


def raise_runtime_error(request: GrpcRequest) -> bytes:
    raise RuntimeError("secret detail that must not reach the client")


async def slow(request: GrpcRequest) -> bytes:
    """Waits for the gate, then answers."""
    payload = bytes(request.payload)
    while not _gate.is_set():
        await asyncio.sleep(0.002)
    return b"slow:" + payload


def control(request: GrpcRequest) -> bytes:
    if request.method_name == "OpenGate":
        _gate.set()
        return b"open"
    if request.method_name == "CloseGate":
        _gate.clear()
        return b"closed"
    raise NotImplementedError(request.method_name)


service = pygrpc_ffi.default_service()
service.register_handler("test.Echo", echo)
service.register_method("test.Echo", "Upper", upper)
service.register_handler("test.AsyncEcho", async_echo)
service.register_handler("test.Raise", raise_value_error)
service.register_method("test.Raise", "Internal", raise_runtime_error)
service.register_handler("test.Slow", slow)
service.register_handler("test.Control", control)
