"""``pygrpc-ffi serve --processes 2``: the server processes die with their
supervisor, even when it is SIGKILLed (no signal to forward), on both
engines, so that no orphan keeps serving the port (SO_REUSEPORT would let a
restarted supervisor share it with them)."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest
from conftest import ENGINES, ROOT, Server
from metrics_kit import free_port

pytestmark = pytest.mark.timeout(90)

EMPTY = "/grpc.testing.TestService/EmptyCall"  # interop_handlers: b"" -> b""


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (zombies are dead)."""
    found = set()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def call(port: int) -> grpc.StatusCode:
    # A channel of its own: a new connection, never one made before the kill.
    with grpc.insecure_channel(f"127.0.0.1:{port}",
                               options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        try:
            channel.unary_unary(EMPTY)(b"", timeout=5)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize("engine", ENGINES)
def test_server_processes_die_with_a_killed_supervisor(engine: str) -> None:
    port = free_port()
    server = Server(engine, "--listen", f"127.0.0.1:{port}", "--processes", "2")
    served = children(server.process.pid)
    try:
        assert len(served) == 2
        assert call(port) is grpc.StatusCode.OK
        server.process.kill()
        server.process.wait(10)
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in served) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in served if alive(pid)] == []
        assert call(port) is grpc.StatusCode.UNAVAILABLE
        # Nothing listens on the port any more: a plain bind (no SO_REUSEPORT) takes it.
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
            sock.bind(("127.0.0.1", port))
            sock.listen()
    finally:
        for pid in served:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


# A process that watches its parent as where there is no PR_SET_PDEATHSIG.
WATCHING_CHILD = """
import os, time
from pygrpc_ffi import parent_watch
parent_watch._set_death_signal = lambda signum: False
assert parent_watch.die_with_parent(os.getppid())
print("watching", flush=True)
time.sleep(60)
"""
PARENT = f"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", {WATCHING_CHILD!r}])
print(child.pid, flush=True)
child.wait()
"""


def test_without_prctl_a_thread_watches_the_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline() == "watching\n"
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_grpcio_process_whose_parent_is_gone_does_not_start() -> None:
    gone = subprocess.Popen(["true"])  # a supervisor that died before its child started
    gone.wait()
    done = subprocess.run(
        [sys.executable, "-m", "pygrpc_ffi", "serve", "interop_handlers", "--engine", "grpcio",
         "--listen", "127.0.0.1:0", "--die-with-parent", str(gone.pid)],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"error: the parent process {gone.pid} is gone\n"
