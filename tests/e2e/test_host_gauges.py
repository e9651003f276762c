"""The host's queue and worker gauges on /metrics, through the real path:
the C++ host's pools publish them in the shim's table (its file under
``pygrpc-ffi serve``), the supervisor's collector reads and sums the files,
prometheus_client serves them, and prometheus_client's parser reads them
back here.  Handlers that hold their worker (tests/e2e/limits_handlers.py,
released through a file) make the numbers known: with 2 workers and N
blocked calls, 2 are busy and N - 2 wait."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from conftest import ENGINES, Server
from metrics_kit import Samples, free_port, scrape

pytestmark = pytest.mark.timeout(120)

BLOCK = "/e2e.Limits/Block"
QUEUED = "pygrpc_ffi_host_queued_calls"
WORKERS = "pygrpc_ffi_host_workers"
BUSY = "pygrpc_ffi_host_workers_busy"
WORKERS_MAX = "pygrpc_ffi_host_workers_max"


def gauge(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def handler_gauges(samples: Samples) -> dict[str, float | None]:
    return {name: gauge(samples, name) for name in (QUEUED, WORKERS, BUSY, WORKERS_MAX)}


def scrape_until(port: int, want: Callable[[Samples], bool], timeout: float = 15) -> Samples:
    """Scrapes until want(samples) holds (the pool's state settles as the
    calls arrive), or returns the last scrape for the assertion to show."""
    deadline = time.monotonic() + timeout
    samples = scrape(port)
    while not want(samples) and time.monotonic() < deadline:
        time.sleep(0.05)
        samples = scrape(port)
    return samples


def started(where: pathlib.Path) -> int:
    return len(list(where.glob("started-*")))


def started_when(where: pathlib.Path, count: int, timeout: float = 10) -> int:
    """The number of handlers that have written their start file, once it
    reaches count or the timeout ends (a worker counts as busy a moment
    before its handler writes the file)."""
    deadline = time.monotonic() + timeout
    while started(where) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return started(where)


@pytest.fixture()
def serving() -> Iterator[Callable[..., tuple[Server, int]]]:
    """Starts ``pygrpc-ffi serve limits_handlers --metrics-port`` servers;
    stops them all (status 0) at the end."""
    servers: list[Server] = []

    def start(engine: str, *flags: str) -> tuple[Server, int]:
        port = free_port()
        servers.append(Server(engine, *flags, "--metrics-port", str(port),
                              module="limits_handlers"))
        return servers[-1], port

    yield start
    for server in servers:
        assert server.stop() == 0


needs_cxx = pytest.mark.skipif("cxx" not in ENGINES, reason="PGF_E2E_ENGINES leaves out cxx")


@needs_cxx
def test_busy_workers_and_queued_calls_follow_blocked_handlers(
        serving: Callable[..., tuple[Server, int]], tmp_path: pathlib.Path) -> None:
    server, port = serving("cxx", "--workers", "2", "--max-workers", "2")
    # Idle: both threads alive, none busy, nothing queued.
    idle = scrape_until(port, lambda s: gauge(s, WORKERS) == 2)
    assert handler_gauges(idle) == {QUEUED: 0, WORKERS: 2, BUSY: 0, WORKERS_MAX: 2}

    calls = 5
    arg = str(tmp_path).encode()
    with server.channel() as channel:
        block = channel.unary_unary(BLOCK)
        futures = [block.future(arg, timeout=60) for _ in range(calls)]
        try:
            loaded = scrape_until(port, lambda s: gauge(s, QUEUED) == calls - 2
                                  and gauge(s, BUSY) == 2)
            assert handler_gauges(loaded) == {QUEUED: calls - 2, WORKERS: 2, BUSY: 2,
                                              WORKERS_MAX: 2}
            assert started_when(tmp_path, 2) == 2  # the gauges agree with the handlers
            time.sleep(0.2)
            assert started(tmp_path) == 2  # and no third handler runs while both are held
        finally:
            (tmp_path / "release").touch()
        assert [f.result() for f in futures] == [b"released"] * calls

    done = scrape_until(port, lambda s: gauge(s, BUSY) == 0 and gauge(s, QUEUED) == 0)
    assert handler_gauges(done) == {QUEUED: 0, WORKERS: 2, BUSY: 0, WORKERS_MAX: 2}
    assert started(tmp_path) == calls
    # The host's own pools are there too, labelled, and idle again: the
    # service pool is one thread; the streams pool starts with 2 of 16.
    pool = "pygrpc_ffi_host_pool_"
    assert gauge(done, pool + "threads", pool="service") == 1
    assert gauge(done, pool + "threads_max", pool="service") == 1
    assert gauge(done, pool + "threads", pool="streams") == 2
    assert gauge(done, pool + "threads_max", pool="streams") == 16
    for name in ("service", "streams"):
        assert gauge(done, pool + "threads_busy", pool=name) == 0
        assert gauge(done, pool + "queued_tasks", pool=name) == 0


@needs_cxx
def test_a_burst_of_blocking_calls_wakes_every_idle_worker(
        serving: Callable[..., tuple[Server, int]], tmp_path: pathlib.Path) -> None:
    # The gRPC thread that queues a burst wakes one worker; each woken one
    # wakes the next while calls remain queued.  All four must end up busy,
    # long before the stall limit would add threads (there are none to add).
    server, port = serving("cxx", "--workers", "4", "--max-workers", "4")
    scrape_until(port, lambda s: gauge(s, WORKERS) == 4)
    arg = str(tmp_path).encode()
    with server.channel() as channel:
        block = channel.unary_unary(BLOCK)
        futures = [block.future(arg, timeout=60) for _ in range(4)]
        try:
            assert started_when(tmp_path, 4) == 4
            assert gauge(scrape_until(port, lambda s: gauge(s, BUSY) == 4), BUSY) == 4
        finally:
            (tmp_path / "release").touch()
        assert [f.result() for f in futures] == [b"released"] * 4


@needs_cxx
def test_workers_gauge_counts_the_threads_a_stalled_pool_adds(
        serving: Callable[..., tuple[Server, int]], tmp_path: pathlib.Path) -> None:
    server, port = serving("cxx", "--workers", "1", "--max-workers", "3")
    assert handler_gauges(scrape_until(port, lambda s: gauge(s, WORKERS) == 1)) == {
        QUEUED: 0, WORKERS: 1, BUSY: 0, WORKERS_MAX: 3}
    arg = str(tmp_path).encode()
    with server.channel() as channel:
        block = channel.unary_unary(BLOCK)
        futures = [block.future(arg, timeout=60) for _ in range(4)]
        try:
            # The pool grows to its maximum while the calls wait; the one
            # left over stays queued.
            grown = scrape_until(port, lambda s: gauge(s, BUSY) == 3 and gauge(s, QUEUED) == 1)
            assert handler_gauges(grown) == {QUEUED: 1, WORKERS: 3, BUSY: 3, WORKERS_MAX: 3}
        finally:
            (tmp_path / "release").touch()
        assert [f.result() for f in futures] == [b"released"] * 4
    done = scrape_until(port, lambda s: gauge(s, BUSY) == 0)
    assert handler_gauges(done) == {QUEUED: 0, WORKERS: 3, BUSY: 0, WORKERS_MAX: 3}


@needs_cxx
def test_gauges_are_summed_over_processes(
        serving: Callable[..., tuple[Server, int]], tmp_path: pathlib.Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    server, port = serving("cxx", "--listen", listen, "--processes", "2",
                           "--workers", "2", "--max-workers", "2")
    idle = scrape_until(port, lambda s: gauge(s, WORKERS) == 4)
    assert handler_gauges(idle) == {QUEUED: 0, WORKERS: 4, BUSY: 0, WORKERS_MAX: 4}
    assert gauge(idle, "pygrpc_ffi_host_pool_threads", pool="service") == 2

    calls = 8
    arg = str(tmp_path).encode()
    # A connection each (no shared subchannel), so the kernel spreads them
    # over both processes; however it does, every call is busy or queued.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.insecure_channel(server.address, options=options) for _ in range(calls)]
    try:
        futures = [ch.unary_unary(BLOCK).future(arg, timeout=60) for ch in channels]
        try:
            loaded = scrape_until(port, lambda s: (gauge(s, BUSY) or 0) + (gauge(s, QUEUED) or 0)
                                  == calls and started(tmp_path) == gauge(s, BUSY))
            busy, queued = gauge(loaded, BUSY), gauge(loaded, QUEUED)
            assert (busy or 0) + (queued or 0) == calls
            assert busy is not None and 2 <= busy <= 4  # 2 per process that got calls
            assert started(tmp_path) == busy
        finally:
            (tmp_path / "release").touch()
        assert [f.result() for f in futures] == [b"released"] * calls
    finally:
        for ch in channels:
            ch.close()
    done = scrape_until(port, lambda s: gauge(s, BUSY) == 0 and gauge(s, QUEUED) == 0)
    assert handler_gauges(done) == {QUEUED: 0, WORKERS: 4, BUSY: 0, WORKERS_MAX: 4}


@pytest.mark.skipif("grpcio" not in ENGINES,
                    reason="PGF_E2E_ENGINES leaves out grpcio")
@pytest.mark.parametrize("processes", ["1", "2"])
def test_grpcio_engine_has_no_host_gauges(serving: Callable[..., tuple[Server, int]],
                                          processes: str) -> None:
    listen = f"127.0.0.1:{free_port()}"
    server, port = serving("grpcio", "--listen", listen, "--processes", processes)
    with server.channel() as channel:
        assert channel.unary_unary("/e2e.Limits/AFast")(b"x", timeout=10) == b"x"
    samples = scrape_until(port, lambda s: gauge(
        s, "grpc_server_started_total", grpc_type="unary", grpc_service="e2e.Limits",
        grpc_method="AFast") == 1)
    # The scrape has the call (so the tables were read), and no host gauge:
    # grpcio's own thread pool publishes none, so they are absent, not 0.
    assert gauge(samples, "grpc_server_started_total", grpc_type="unary",
                 grpc_service="e2e.Limits", grpc_method="AFast") == 1
    assert [name for name, _ in samples if name.startswith("pygrpc_ffi_host_")] == []
