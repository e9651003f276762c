"""The bounded /metrics server (pygrpc_ffi.metrics_server) in process, with
small limits: the connection cap (a new connection pushes out the oldest
idle one), the request head's timeout and size, one thread whatever the
number of clients, and the HTTP answers a scraper relies on."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pygrpc_ffi.metrics import start_metrics_server
from pygrpc_ffi.metrics_server import MetricsServer


@pytest.fixture()
def server() -> Iterator[MetricsServer]:
    srv = start_metrics_server(0, "127.0.0.1", max_connections=4, header_timeout=0.5,
                               max_request_bytes=1024)
    yield srv
    srv.shutdown()
    assert not srv.thread.is_alive()


def get(srv: MetricsServer, path: str = "/metrics",
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{srv.port}{path}",
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=3) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def closed(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def wait_for(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_scrape_answers(server: MetricsServer) -> None:
    status, headers, body = get(server)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert b"grpc_server_started_total" in body
    status, headers, zipped = get(server, headers={"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert b"# TYPE grpc_server_started_total counter" in gzip.decompress(zipped)
    _, _, only = get(server, "/metrics?name[]=grpc_server_started_total")
    assert only and all(line.startswith(b"grpc_server_started_total")
                        for line in only.splitlines() if not line.startswith(b"#"))
    assert get(server, "/elsewhere")[0] == 404
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", method="POST",
                                     data=b"x")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=3)
    assert err.value.code == 405


def test_idle_connections_are_capped_and_take_no_thread(server: MetricsServer) -> None:
    threads = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(40)]
    try:
        wait_for(lambda: closed(idle[-5], 0.01))
        assert threading.active_count() == threads
        assert server.connections <= 4
        # The oldest were pushed out as newer ones came; a scrape pushes out one more.
        assert sum(closed(sock, 0.05) for sock in idle[:-4]) == len(idle) - 4
        assert get(server)[0] == 200
    finally:
        for sock in idle:
            sock.close()


def test_unfinished_head_times_out(server: MetricsServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        start = time.monotonic()
        for _ in range(3):  # trickling bytes does not extend the deadline
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            time.sleep(0.1)
        assert closed(sock, 2.0)
        assert 0.4 < time.monotonic() - start < 1.5
    wait_for(lambda: server.connections == 0)
    assert server.connections == 0


def test_oversized_head_is_refused(server: MetricsServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * 2048)
        sock.settimeout(3)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        start_metrics_server(0, "127.0.0.1", max_connections=0)


class _Big:
    """A registry whose answer (~8 MB) cannot fit in the sockets' buffers."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("big", "a large answer", labels=["pad"])
        for i in range(8000):
            family.add_metric([f"{i:08d}" + "x" * 1000], i)
        yield family


def test_a_client_that_does_not_read_is_replaced() -> None:
    srv = MetricsServer(_Big(), "127.0.0.1", 0, max_connections=2, write_timeout=30)
    stuck = []
    try:
        for _ in range(2):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", srv.port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")  # and never reads
            stuck.append(sock)
        wait_for(lambda: len(srv._writing) == 2)
        time.sleep(1.1)  # stuck longer than a second: a new client may replace them
        status, _, body = get(srv)
        assert status == 200 and len(body) > 8_000_000
        # The server closes the answered connection just after its last
        # byte leaves, which the client may see first.
        wait_for(lambda: srv.connections <= 1)
        assert srv.connections <= 1
    finally:
        for sock in stuck:
            sock.close()
        srv.shutdown()
