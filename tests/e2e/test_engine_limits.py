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
from test_host_limits import RawClient, started, wait_for

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


def block_calls(ch: grpc.Channel, where: pathlib.Path, count: int, running: int
                ) -> list[grpc.Future]:
    """Starts count Block calls; returns once ``running`` Block calls have
    started in all."""
    block = ch.unary_unary(BLOCK)
    calls = [block.future(str(where).encode(), timeout=60) for _ in range(count)]
    assert wait_for(lambda: started(where) == running)
    return calls


def test_metadata_beyond_the_limit_is_refused(serve: ServerFactory) -> None:
    server = serve("--max-metadata-bytes", "1024")
    with server.channel() as ch:
        def status(metadata_bytes: int) -> grpc.StatusCode:
            try:
                ch.unary_unary(AFAST)(b"x", metadata=[("x-m", "y" * metadata_bytes)], timeout=10)
            except grpc.RpcError as err:
                return err.code()
            return grpc.StatusCode.OK

        assert status(100) == grpc.StatusCode.OK
        assert status(4096) == grpc.StatusCode.RESOURCE_EXHAUSTED


def advertised_streams(address: str) -> int | None:
    """SETTINGS_MAX_CONCURRENT_STREAMS as a new connection gets it."""
    client = RawClient(address)
    try:
        assert client.settings_seen.wait(10)
        return client.settings.get(hf.SettingsFrame.MAX_CONCURRENT_STREAMS)
    finally:
        client.close()


def test_concurrent_streams_are_bounded(serve: ServerFactory, tmp_path: pathlib.Path) -> None:
    server = serve("--max-concurrent-streams", "2")
    assert advertised_streams(server.address) == 2
    with server.channel() as ch:
        # A third stream on the connection waits for one of the first two to
        # end, though workers are free.
        calls = block_calls(ch, tmp_path, 3, running=2)
        time.sleep(1)
        assert started(tmp_path) == 2
        (tmp_path / "release").touch()
        assert [f.result() for f in calls] == [b"released"] * 3


def test_every_process_gets_the_limits(serve: ServerFactory) -> None:
    with socket.socket() as probe:  # a free port: --processes N needs a fixed one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve("--listen", f"127.0.0.1:{port}", "--processes", "2",
                   "--max-concurrent-streams", "3")
    # SO_REUSEPORT spreads connections over both processes.
    assert [advertised_streams(server.address) for _ in range(8)] == [3] * 8


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
    with server.channel() as ch:
        calls = block_calls(ch, tmp_path, 2, running=2)
        calls += block_calls(ch, tmp_path, 2, running=2)  # queued
        time.sleep(0.5)
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            ch.unary_unary(BLOCK)(str(tmp_path).encode(), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() - t0 < 2
        (tmp_path / "release").touch()
        assert [f.result() for f in calls] == [b"released"] * 4
        assert block_calls(ch, tmp_path, 1, running=5)[0].result() == b"released"


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
