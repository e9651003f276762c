"""The host gauges as pygrpc_ffi.metrics exports them: processes that
publish through the C ABI (``pgf_metrics_gauge_add`` into their
``PGF_METRICS_FILE``), a collector that sums their files into Prometheus
gauges, and a file of another table layout left out with a warning rather
than misread."""

from __future__ import annotations

import logging
import os
import pathlib
import struct
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pygrpc_ffi.metrics import PoolStats, ShimCollector, collect_pools

# Publishes the gauges given as "pool:gauge:delta" arguments, as a host does.
PUBLISHER = """
import sys
from pygrpc_ffi._native import lib
for spec in sys.argv[1:]:
    pool, gauge, delta = (int(x) for x in spec.split(":"))
    assert lib.pgf_metrics_gauge_add(pool, gauge, delta) == lib.PGF_OK
"""
HANDLERS, STREAMS, SERVICE = 0, 1, 2
QUEUED, THREADS, BUSY, MAX = 0, 1, 2, 3


def publish(file: pathlib.Path, *specs: str) -> None:
    env = dict(os.environ, PGF_METRICS_FILE=str(file))
    subprocess.run([sys.executable, "-c", PUBLISHER, *specs], env=env, check=True, timeout=60)


def scrape(collector: ShimCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def host_samples(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
                 ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {key: value for key, value in samples.items()
            if key[0].startswith("pygrpc_ffi_host_")}


def test_collector_sums_every_process_gauges(tmp_path: pathlib.Path) -> None:
    # Two server processes: 4 + 2 handler threads (of 8 + 8), 3 + 1 busy,
    # 5 + 0 calls queued; only the first has a streams pool.
    publish(tmp_path / "pgf-metrics-0.bin", f"{HANDLERS}:{MAX}:8", f"{HANDLERS}:{THREADS}:4",
            f"{HANDLERS}:{BUSY}:3", f"{HANDLERS}:{QUEUED}:6", f"{HANDLERS}:{QUEUED}:-1",
            f"{STREAMS}:{THREADS}:2", f"{STREAMS}:{MAX}:16", f"{STREAMS}:{QUEUED}:7")
    publish(tmp_path / "pgf-metrics-1.bin", f"{HANDLERS}:{MAX}:8", f"{HANDLERS}:{THREADS}:2",
            f"{HANDLERS}:{BUSY}:1")
    files = [str(tmp_path / "pgf-metrics-*.bin")]

    pools = collect_pools(sorted(str(p) for p in tmp_path.glob("*.bin")))
    assert pools == [PoolStats(pool=HANDLERS, queued=5, threads=6, busy=4, max_threads=16),
                     PoolStats(pool=STREAMS, queued=7, threads=2, busy=0, max_threads=16)]
    assert [p.name for p in pools] == ["handlers", "streams"]

    # Only roles a host published: no "service" series.
    assert host_samples(scrape(ShimCollector(files))) == {
        ("pygrpc_ffi_host_queued_calls", ()): 5,
        ("pygrpc_ffi_host_workers", ()): 6,
        ("pygrpc_ffi_host_workers_busy", ()): 4,
        ("pygrpc_ffi_host_workers_max", ()): 16,
        ("pygrpc_ffi_host_pool_queued_tasks", (("pool", "streams"),)): 7,
        ("pygrpc_ffi_host_pool_threads", (("pool", "streams"),)): 2,
        ("pygrpc_ffi_host_pool_threads_busy", (("pool", "streams"),)): 0,
        ("pygrpc_ffi_host_pool_threads_max", (("pool", "streams"),)): 16,
    }


def test_no_pool_published_means_no_host_gauges(tmp_path: pathlib.Path) -> None:
    # A process whose table exists (it counted a call: a refused one here)
    # but that has no host pool, as under the grpcio engine.
    env = dict(os.environ, PGF_METRICS_FILE=str(tmp_path / "pgf-metrics-0.bin"))
    subprocess.run([sys.executable, "-c", "from pygrpc_ffi._native import lib, ffi; "
                    "lib.pgf_metrics_count_refused(ffi.NULL, 0, -1, 12)"],
                   env=env, check=True, timeout=60)
    samples = scrape(ShimCollector([str(tmp_path / "*.bin")]))
    assert samples[("grpc_server_handled_total", (("grpc_code", "UNIMPLEMENTED"),
                                                  ("grpc_method", "unknown"),
                                                  ("grpc_service", "unknown"),
                                                  ("grpc_type", "unknown")))] == 1
    assert host_samples(samples) == {}
    assert collect_pools([str(tmp_path / "pgf-metrics-0.bin")]) == []


def test_file_of_another_layout_is_left_out_with_a_warning(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    publish(tmp_path / "pgf-metrics-0.bin", f"{HANDLERS}:{THREADS}:3")
    # The first layout's header ("PGFMETR1", version 1) on a table of its size.
    old = tmp_path / "pgf-metrics-1.bin"
    old.write_bytes(struct.pack("<QI", 0x5047464D45545231, 1).ljust(24 + 1025 * 480, b"\0"))
    collector = ShimCollector([str(tmp_path / "pgf-metrics-*.bin")])
    with caplog.at_level(logging.WARNING, logger="pygrpc_ffi.metrics"):
        first = host_samples(scrape(collector))
        second = host_samples(scrape(collector))
    assert first == second
    assert first[("pygrpc_ffi_host_workers", ())] == 3  # the good file still counts
    warnings = [r.getMessage() for r in caplog.records if r.name == "pygrpc_ffi.metrics"]
    assert len(warnings) == 1  # once per file, not per scrape
    assert str(old) in warnings[0] and "another version" in warnings[0]


def test_a_table_not_created_yet_is_skipped_quietly(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "pgf-metrics-0.bin").write_bytes(b"")  # created, not yet sized
    with caplog.at_level(logging.WARNING, logger="pygrpc_ffi.metrics"):
        assert collect_pools([str(tmp_path / "pgf-metrics-0.bin")]) == []
    assert [r for r in caplog.records if r.name == "pygrpc_ffi.metrics"] == []
