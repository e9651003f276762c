"""Handlers for ``serve --health/--reflection/--drain-seconds``: the interop
servicer (descriptors known), ``e2e.HealthApp/Set`` (request ``service=status``
as text) flipping a status through the module-level API and answering what
``get_status`` then reads, ``e2e.HealthApp/Echo``, ``e2e.HealthApp/Pid`` (the
server process's id), and a shutdown callback
that writes ``$PGF_E2E_SHUTDOWN_FILE``."""

from __future__ import annotations

import os
import time

import interop_servicer as interop

import pygrpc_ffi as pgf
from pygrpc_ffi import health
from pygrpc_ffi.servicer import add_servicer

service = pgf.default_service()
add_servicer(interop.pb_grpc.add_TestServiceServicer_to_server, interop.TestServicer())


@service.method("e2e.HealthApp", "Set")
def set_status(request: pgf.GrpcRequest) -> bytes:
    name, _, status = bytes(request.payload).decode().partition("=")
    health.set_status(name, status)
    return str(health.get_status(name)).encode()


@service.method("e2e.HealthApp", "Pid")
def pid(request: pgf.GrpcRequest) -> bytes:
    return str(os.getpid()).encode()


@service.method("e2e.HealthApp", "Echo")
def echo(request: pgf.GrpcRequest) -> bytes:
    return bytes(request.payload)


def _record_shutdown() -> None:
    path = os.environ.get("PGF_E2E_SHUTDOWN_FILE")
    if path:
        with open(path + ".tmp", "w") as out:
            out.write(f"{os.getpid()} {time.time()} {health.get_status('')}\n")
        os.replace(path + ".tmp", path)


health.on_shutdown(_record_shutdown)
