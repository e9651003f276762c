"""The ``pygrpc-ffi serve`` command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import HERE, PROTOS, ROOT

pytestmark = pytest.mark.timeout(60)


def test_missing_host_binary_names_the_build_command() -> None:
    env = dict(os.environ, PGF_HOST_BINARY="/nonexistent/pygrpc_ffi_server")
    result = subprocess.run(
        [sys.executable, "-m", "pygrpc_ffi", "serve", "interop_handlers", "--engine", "cxx"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "pygrpc-ffi build-host" in result.stderr


def test_without_a_host_serve_uses_the_grpcio_engine() -> None:
    import grpc

    env = dict(os.environ, PGF_HOST_BINARY="/nonexistent/pygrpc_ffi_server",
               PYTHONPATH=os.pathsep.join([str(PROTOS), str(HERE)]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pygrpc_ffi", "serve", "interop_handlers", "--listen",
         "127.0.0.1:0"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        with grpc.insecure_channel(line.split(" ", 2)[2].strip()) as ch:
            seen = json.loads(ch.unary_unary("/e2e.Control/Inspect")(b"", timeout=10))
        assert seen["pid"] == proc.pid  # served in this process: the grpcio engine
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "grpcio engine" in err


def test_module_that_fails_to_import_is_reported() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pygrpc_ffi", "serve", "no_such_module_xyz", "--listen",
         "127.0.0.1:0"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "no_such_module_xyz" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("engine", ["cxx", "grpcio"])
def test_two_processes_share_one_port_and_stop_cleanly(engine: str) -> None:
    import grpc

    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROTOS), str(HERE)]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pygrpc_ffi", "serve", "interop_handlers", "--listen",
         f"127.0.0.1:{port}", "--processes", "2", "--engine", engine],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"listening on 127.0.0.1:{port}"
        pids = set()
        for _ in range(20):
            # A new channel each time: SO_REUSEPORT spreads connections.
            with grpc.insecure_channel(f"127.0.0.1:{port}",
                                       options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                seen = json.loads(ch.unary_unary("/e2e.Control/Inspect")(b"", timeout=10))
                pids.add(seen["pid"])
        # 20 connections hashed over 2 processes all landing on one: p < 1e-5.
        assert len(pids) == 2
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
