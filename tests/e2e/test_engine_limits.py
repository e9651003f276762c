"""The serve limits hold on both engines (issue 22): the cxx engine passes
them to the host, the grpcio engine to gRPC core as channel arguments; a
flag the engine cannot honour is refused, never ignored.  Each limit is
checked by what a client sees: a status code, the server's HTTP/2 SETTINGS,
a GOAWAY frame."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import grpc
import hyperframe.frame as hf
import pytest
from conftest import ENGINES, HERE, PROTOS, ROOT, Server
from test_host_limits import PREFACE, RawClient, started, wait_for

from pygrpc_ffi.cli import build_parser, grpcio_command, grpcio_limits

BLOCK = "/e2e.Limits/Block"
AFAST = "/e2e.Limits/AFast"

ServerFactory = Callable[..., Server]


@pytest.fixture(params=ENGINES)
def serve(request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """Starts ``pygrpc-ffi serve limits_handlers`` on the engine with flags."""
    servers: list[Server] = []

    def start(*flags: str) -> Server:
        server = Server(request.param, *flags, module="limits_handlers")
        servers.append(server)
        return server

    yield start
    for server in servers:
        assert server.stop() == 0


def test_metadata_beyond_the_limit_is_refused(serve: ServerFactory) -> None:
    server = serve("--max-metadata-bytes", "1024")
    with server.channel() as ch:
        afast = ch.unary_unary(AFAST)
        assert afast(b"small", metadata=[("x-small", "y" * 100)], timeout=10) == b"small"
        with pytest.raises(grpc.RpcError) as err:
            afast(b"big", metadata=[("x-big", "y" * 4096)], timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def server_settings(address: str) -> dict[int, int]:
    """The SETTINGS the server sends a new HTTP/2 connection."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(PREFACE + hf.SettingsFrame(0).serialize())
        buf = b""
        while True:
            data = sock.recv(1 << 16)
            assert data, "closed before its SETTINGS"
            buf += data
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                frame, _ = hf.Frame.parse_frame_header(memoryview(buf[:9]))
                frame.parse_body(memoryview(buf[9:9 + length]))
                buf = buf[9 + length:]
                if isinstance(frame, hf.SettingsFrame) and "ACK" not in frame.flags:
                    return dict(frame.settings)


def test_concurrent_streams_are_bounded(serve: ServerFactory, tmp_path: pathlib.Path) -> None:
    server = serve("--max-concurrent-streams", "2")
    assert server_settings(server.address)[hf.SettingsFrame.MAX_CONCURRENT_STREAMS] == 2
    arg = str(tmp_path).encode()
    with server.channel() as ch:
        block = ch.unary_unary(BLOCK)
        holding = [block.future(arg, timeout=60) for _ in range(2)]
        assert wait_for(lambda: started(tmp_path) == 2)
        # A third stream on the connection waits for one of them to end,
        # though workers are free.
        third = block.future(arg, timeout=60)
        time.sleep(1)
        assert started(tmp_path) == 2
        (tmp_path / "release").touch()
        assert [f.result() for f in [*holding, third]] == [b"released"] * 3


def test_an_old_connection_gets_goaway_then_is_closed(serve: ServerFactory) -> None:
    server = serve("--max-connection-age-ms", "500", "--max-connection-age-grace-ms", "500")
    client = RawClient(server.address, ack_settings=True)
    try:
        assert client.goaway.wait(10)
        assert wait_for(client.closed.is_set, 10)
    finally:
        client.close()


def test_an_idle_connection_gets_goaway(serve: ServerFactory) -> None:
    server = serve("--max-connection-idle-ms", "500")
    client = RawClient(server.address, ack_settings=True)
    try:
        assert client.goaway.wait(10)
    finally:
        client.close()


def test_calls_beyond_the_queue_are_refused_while_workers_block(
        serve: ServerFactory, tmp_path: pathlib.Path) -> None:
    server = serve("--workers", "2", "--max-workers", "2", "--max-queued-calls", "2")
    arg = str(tmp_path).encode()
    with server.channel() as ch:
        block = ch.unary_unary(BLOCK)
        holding = [block.future(arg, timeout=60) for _ in range(2)]
        assert wait_for(lambda: started(tmp_path) == 2)
        queued = [block.future(arg, timeout=60) for _ in range(2)]
        time.sleep(0.5)
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            block(arg, timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() - t0 < 2
        (tmp_path / "release").touch()
        assert [f.result() for f in holding + queued] == [b"released"] * 4
        assert block(arg, timeout=10) == b"released"


def serve_and_exit(*flags: str, env: dict[str, str] | None = None
                   ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pygrpc_ffi", "serve", "limits_handlers",
         "--listen", "127.0.0.1:0", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
        env=dict(os.environ, **(env or {}),
                 PYTHONPATH=os.pathsep.join([str(PROTOS), str(HERE), str(HERE.parent)])))


@pytest.mark.parametrize("engine", ["grpcio", "auto"])
def test_worker_scheduling_is_refused_by_the_grpcio_engine(engine: str) -> None:
    # No host binary: auto resolves to grpcio.
    done = serve_and_exit("--engine", engine, "--worker-scheduling", "batch",
                          env={"PGF_HOST_BINARY": "/nonexistent/pygrpc_ffi_server"})
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: --worker-scheduling needs the cxx engine (grpcio's worker "
                      "threads keep the default scheduling)"]
    assert done.stdout == ""


def test_a_negative_limit_is_refused_by_the_grpcio_engine() -> None:
    done = serve_and_exit("--engine", "grpcio", "--max-concurrent-streams", "-1")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: max_concurrent_streams must be in 0..2147483647, not -1"]


def test_the_limits_reach_grpcio_processes_and_channel_arguments() -> None:
    args = build_parser().parse_args(
        ["serve", "m", "--engine", "grpcio", "--max-queued-calls", "5",
         "--max-metadata-bytes", "8192", "--keepalive-permit-without-calls"])
    command = grpcio_command(args)
    assert command[command.index("--max-queued-calls") + 1] == "5"
    assert command[command.index("--max-metadata-bytes") + 1] == "8192"
    assert "--keepalive-permit-without-calls" in command
    assert "--max-connection-age-ms" not in command  # grpcio's default
    limits = grpcio_limits(args)
    assert limits.channel_arguments() == [
        ("grpc.max_metadata_size", 8192), ("grpc.absolute_max_metadata_size", 8192),
        ("grpc.keepalive_permit_without_calls", 1)]
    assert limits.maximum_concurrent_rpcs(max_workers=64, max_memory_bytes=1 << 30) == 69
    # None given: grpcio's defaults, and the memory bound alone.
    none = grpcio_limits(build_parser().parse_args(["serve", "m"]))
    assert none.channel_arguments() == []
    assert none.maximum_concurrent_rpcs(max_workers=64, max_memory_bytes=1 << 30) == 32768
