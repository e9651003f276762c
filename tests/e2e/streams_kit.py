"""What the stream tests share: the host started directly (its pid is the
server's), a request iterator fed one message at a time, and the server's
live C objects."""

from __future__ import annotations

import json
import os
import pathlib
import queue
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
from conftest import CHANNEL_OPTIONS, HERE, PROTOS, ROOT, Server

from pygrpc_ffi.cli import find_host_binary

ECHO = "/echo.Echo/Any"
COUNT = "/echo.Count/Any"  # the bench's C server stream: N 16-byte messages for b"N"
UNARY_C = "/echo.Unary/Any"  # the bench's C unary echo
UNARY_PY = "/grpc.testing.TestService/EmptyCall"

# The bench's build of each host: the same host with the C handlers of
# bench/host/native_handlers.h, which the product binaries do not have.
BENCH_HOSTS = {"pygrpc_ffi_server": "pygrpc_ffi_bench_server",
               "pygrpc_ffi_grpcpp_server": "pygrpc_ffi_grpcpp_bench_server"}


def bench_host_binary() -> pathlib.Path | None:
    """The bench's build of the host under test (find_host_binary: the product
    host, or the one $PGF_HOST_BINARY names), from the same build directory;
    built there (its CMake target) if it is not yet."""
    binary = find_host_binary()
    if binary is None or binary.name not in BENCH_HOSTS:
        return None
    bench = binary.with_name(BENCH_HOSTS[binary.name])
    if not bench.is_file() and (binary.parent / "CMakeCache.txt").is_file():
        subprocess.run(["cmake", "--build", str(binary.parent), "--target", bench.name],
                       check=False, capture_output=True)
    return bench if bench.is_file() else None


class Host:
    """The host itself (so its pid is the host's), in the bench's build
    (bench_host_binary): the C echo on echo.Echo, the C server stream on
    echo.Count, the C unary echo on echo.Unary, and
    tests/e2e/host_stream_handlers.py in Python."""

    def __init__(self, *extra: str) -> None:
        binary = bench_host_binary()
        if binary is None:
            pytest.skip("the C++ host (with the bench's C handlers) is not built")
        command = [str(binary), "--listen", "127.0.0.1:0", "--workers", "4",
                   "--native-echo", "echo.Echo", "--native-server-stream", "echo.Count",
                   "--native-unary-echo", "echo.Unary",
                   "--module", "host_stream_handlers",
                   "--sys-path", os.pathsep.join(map(str, [PROTOS, HERE, ROOT])), *extra]
        if sys.prefix != sys.base_prefix:
            command += ["--venv", sys.prefix]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.process.kill()
            raise RuntimeError(f"host did not start: {line!r}")
        self.address = line.split(" ", 2)[2].strip()

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)

    def status(self, field: str) -> int:
        """A number from /proc/PID/status (VmRSS in KiB, Threads)."""
        return proc_status(self.process.pid, field)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(60)


def proc_status(pid: int, field: str) -> int:
    """A number from /proc/PID/status (VmRSS in KiB, Threads)."""
    text = pathlib.Path(f"/proc/{pid}/status").read_text()
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class EngineServer(Server):
    """conftest's Server serving host_stream_handlers, with its process's
    /proc numbers (the grpcio engine serves in the CLI's own process)."""

    def __init__(self, engine: str) -> None:
        super().__init__(engine, module="host_stream_handlers")

    def status(self, field: str) -> int:
        return proc_status(self.process.pid, field)


def live_once(channel: grpc.Channel) -> dict[str, int]:
    # After a garbage collection: a request message a Python reference cycle
    # still holds is not leaked (an async handler ended by its deadline leaves
    # one until the next collection).
    return json.loads(channel.unary_unary("/e2e.HostStreams/Live")(b"gc", timeout=10))


def live(channel: grpc.Channel) -> dict[str, int]:
    """The host's live C objects while no other call is alive (the call that
    asks counts as one; the one before it may still be ending)."""
    deadline = time.monotonic() + 10
    while (now := live_once(channel))["calls"] != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    return now


# Per-message objects an earlier test may still have had on their way back
# when `before` was read (gRPC drops a sent message's slice, and so its
# buffer, after the call that wrote it may have ended): fewer is no leak.
_TRANSIENT = ("buffers", "messages")


def _idle(now: dict[str, int], before: dict[str, int]) -> bool:
    return all(now[k] <= before[k] if k in _TRANSIENT else now[k] == before[k]
               for k in before)


def wait_idle(channel: grpc.Channel, before: dict[str, int]) -> None:
    """The host's live C objects return to their count before the test
    (buffers and messages: at most it)."""
    deadline = time.monotonic() + 20  # generous: the sanitizer run is slow
    while not _idle(now := live(channel), before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _idle(now, before), f"live objects {now}, before the test {before}"


class Requests:
    """A request iterator the test feeds one message at a time; close() ends
    it (half-close), and it blocks while empty."""

    def __init__(self) -> None:
        self._q: queue.Queue[bytes | None] = queue.Queue()

    def send(self, message: bytes) -> None:
        self._q.put(message)

    def close(self) -> None:
        self._q.put(None)

    def __iter__(self) -> Iterator[bytes]:
        while (message := self._q.get()) is not None:
            yield message


def closed(channel: grpc.Channel) -> dict[str, int]:
    return json.loads(channel.unary_unary("/e2e.HostStreams/Closed")(b"", timeout=10))


def wait_closed(channel: grpc.Channel, name: str, before: int) -> None:
    """The handler's finally block ran once more than before."""
    deadline = time.monotonic() + 10
    while (now := closed(channel).get(name, 0)) <= before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert now == before + 1
