"""Issue 24, finding 6: idle connections to ``--metrics-port`` (slowloris)
held a thread each, with no timeout and no cap.  On both engines (the
grpcio engine serves /metrics in its own process, the C++ engine's
supervisor for the host): 200 idle connections, half of them with an
unfinished request head, leave the serving process's thread count and
descriptors bounded; a scrape is answered at once and gRPC calls are served
while they are held; the server closes them after the head timeout."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import ENGINES, Server
from metrics_kit import free_port
from prometheus_client.parser import text_string_to_metric_families

from pygrpc_ffi.metrics_server import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS

SERVICE = "flood.Svc"  # metrics_flood_handlers.SERVICE: importing it would register it here

IDLE = 200
SCRAPE_WITHIN = 3.0  # seconds


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads: line")


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _timed_scrape(port: int) -> tuple[float, dict[tuple[str, str], float]]:
    start = time.monotonic()
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                  timeout=SCRAPE_WITHIN).read()
    elapsed = time.monotonic() - start
    started = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == "grpc_server_started_total":
                started[(sample.labels["grpc_service"], sample.labels["grpc_method"])] = \
                    sample.value
    return elapsed, started


def _closed_by_server(socks: list[socket.socket], within: float) -> int:
    """How many of ``socks`` the server closes (EOF or reset) within ``within`` s."""
    pending, closed = set(socks), 0
    deadline = time.monotonic() + within
    while pending and time.monotonic() < deadline:
        readable, _, _ = select.select(list(pending), [], [], 0.2)
        for sock in readable:
            pending.discard(sock)
            try:
                closed += sock.recv(1) == b""
            except ConnectionResetError:
                closed += 1
    return closed


@pytest.mark.parametrize("engine", ENGINES)
def test_idle_metrics_connections_hold_no_threads(engine: str) -> None:
    port = free_port()
    server = Server(engine, "--metrics-port", str(port), module="metrics_flood_handlers")
    idle: list[socket.socket] = []
    try:
        pid = server.process.pid  # the process that serves /metrics on either engine
        with server.channel() as channel:
            real = channel.unary_unary(f"/{SERVICE}/Real")
            assert real(b"", timeout=10) == b"real"
            _timed_scrape(port)
            threads, descriptors = _threads(pid), _descriptors(pid)
            for i in range(IDLE):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                if i % 2:
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never ended
                idle.append(sock)
            time.sleep(0.5)
            held_threads, held_descriptors = _threads(pid), _descriptors(pid)
            elapsed, started = _timed_scrape(port)
            assert started[(SERVICE, "Real")] == 1
            assert elapsed < SCRAPE_WITHIN
            assert real(b"", timeout=10) == b"real"
        assert held_threads <= threads + 3, (threads, held_threads)
        assert held_descriptors <= descriptors + DEFAULT_MAX_CONNECTIONS + 2, \
            (descriptors, held_descriptors)
        # Beyond the cap they were closed at once; the rest after the head timeout.
        assert _closed_by_server(idle, DEFAULT_HEADER_TIMEOUT + 3) == IDLE
    finally:
        for sock in idle:
            sock.close()
        assert server.stop() == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_metrics_limits_from_flags(engine: str) -> None:
    port = free_port()
    server = Server(engine, "--metrics-port", str(port), "--metrics-max-connections", "2",
                    "--metrics-header-timeout", "0.5", module="metrics_flood_handlers")
    socks: list[socket.socket] = []
    try:
        _timed_scrape(port)
        for _ in range(3):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        start = time.monotonic()
        assert _closed_by_server(socks[:1], 2.0) == 1  # replaced by the third at once
        assert _closed_by_server(socks[1:], 3.0) == 2  # after 0.5 s, not 5
        assert time.monotonic() - start < DEFAULT_HEADER_TIMEOUT - 1
        _timed_scrape(port)
    finally:
        for sock in socks:
            sock.close()
        assert server.stop() == 0


@pytest.mark.parametrize("flags", [["--metrics-max-connections", "0"],
                                   ["--metrics-header-timeout", "0"]])
def test_metrics_limit_flags_are_checked(flags: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "pygrpc_ffi", "serve", "nobody_module",
                           "--metrics-port", "0", *flags],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "error: --metrics-" in done.stderr
