"""Starts real servers (the gRPC C++ host, and the pip-only grpcio engine
where it exists) serving tests/e2e/interop_handlers.py, for grpcio clients."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROTOS = ROOT / "tests" / "protos"
sys.path[:0] = [str(PROTOS), str(HERE)]

ENGINES = ["cxx"]
if importlib.util.find_spec("pygrpc_ffi.grpcio_server") is not None:
    ENGINES.append("grpcio")
# PGF_E2E_ENGINES=cxx runs one engine only (the sanitizer run of the host).
if os.environ.get("PGF_E2E_ENGINES"):
    ENGINES = [e for e in ENGINES if e in os.environ["PGF_E2E_ENGINES"].split(",")]

MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.max_send_message_length", MAX_MESSAGE)]


class Server:
    """A running ``pygrpc-ffi serve`` process and its address."""

    def __init__(self, engine: str, *extra: str, module: str = "interop_handlers",
                 env: dict[str, str] | None = None) -> None:
        env = dict(os.environ, **(env or {}),
                   PYTHONPATH=os.pathsep.join([str(PROTOS), str(HERE), str(HERE.parent)]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pygrpc_ffi", "serve", module,
             "--engine", engine, "--listen", "127.0.0.1:0", "--workers", "4", *extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.process.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        self.address = line.split(" ", 2)[2].strip()

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = Server(request.param)
    yield srv
    assert srv.stop() == 0


@pytest.fixture()
def serving() -> Iterator[Callable[..., Server]]:
    """start(engine, *flags, module=...): servers stopped (exit 0) at the end."""
    servers: list[Server] = []

    def start(engine: str, *flags: str, **kwargs: Any) -> Server:
        servers.append(Server(engine, *flags, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        assert server.stop() == 0


@pytest.fixture()
def channel(server: Server) -> Iterator[grpc.Channel]:
    with server.channel() as ch:
        yield ch
