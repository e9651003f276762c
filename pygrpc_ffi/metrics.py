"""Prometheus metrics of every call, read from the C shim's table.

The shim counts each call where every call passes -- dispatch, finish, each
request message delivered and response message sent -- without the GIL, for
C and Python handlers alike, UNIMPLEMENTED included (see "metrics" in
``csrc/pygrpc_ffi.h``).  This module exports those numbers through
``prometheus_client`` (the ``metrics`` extra) with go-grpc-prometheus's names
and labels (``grpc_type``, ``grpc_service``, ``grpc_method``)::

    grpc_server_started_total           counter
    grpc_server_handled_total           counter, + grpc_code ("OK", "NOT_FOUND", ...)
    grpc_server_msg_received_total      counter
    grpc_server_msg_sent_total          counter
    grpc_server_handling_seconds        histogram (Prometheus' default buckets)
    grpc_server_in_flight               gauge (pygrpc_ffi's own: started, not finished)

Calls to methods nobody registered, and methods beyond the table's bound
(``PGF_METRICS_MAX_METHODS``), are counted under ``grpc_service="unknown"``,
``grpc_method="unknown"``, ``grpc_type="unknown"``: clients cannot grow the
number of series.  Method names a whole-service handler (``register_handler``)
accepts get series of their own only up to ``PGF_METRICS_MAX_UNREGISTERED``
(128), then count as unknown too, so that methods registered by name keep
their slots (at least 384) whatever names clients send.

The host's thread pools, as gauges the host publishes in the same table
(``pgf_metrics_gauge_add``; the C++ host's pools do, as they change).  The
pool users size with ``--workers``/``--max-workers``, whose threads run the
handlers, and whose queue ``--max-queued-calls`` bounds::

    pygrpc_ffi_host_queued_calls        gauge: calls waiting for a handler thread
    pygrpc_ffi_host_workers             gauge: handler threads alive
    pygrpc_ffi_host_workers_busy        gauge: handler threads running a call
    pygrpc_ffi_host_workers_max         gauge: the most handler threads (--max-workers)

and the host's own pools, labelled ``pool``: ``streams`` (completes stream
reads and writes) and ``service`` (cancellations, response buffer releases)::

    pygrpc_ffi_host_pool_queued_tasks   gauge: tasks waiting for a thread
    pygrpc_ffi_host_pool_threads        gauge: threads alive
    pygrpc_ffi_host_pool_threads_busy   gauge: threads running a task
    pygrpc_ffi_host_pool_threads_max    gauge: the most threads the pool may have

A busy thread is one running a task: a sync handler holds its worker until
it returns; an ``async def`` handler holds it only while it is started, then
runs on the event loop.  Only pools a host published are exported: the
grpcio engine (``--engine grpcio``) runs handlers on grpcio's own thread
pool, which publishes nothing, so there these gauges are absent (no sample),
not 0.  With several processes each gauge is the sum over them (workers and
their maximum included: the capacity of the whole server).

Several processes (``pygrpc-ffi serve --processes N``): each server process
keeps its table in a file (``PGF_METRICS_FILE``, a shared mapping the shim
updates in place); the supervisor's collector (:class:`ShimCollector` with
``files=``) reads every child's file at each scrape and adds them up, so
one scrape sees every process's calls, exactly and current.

    from pygrpc_ffi.metrics import start_metrics_server
    start_metrics_server(9100)          # /metrics of this process

The server runs on one thread and bounds what clients can make it hold
(16 connections, 5 s for a request head, 8 KiB of it, 10 s for an answer;
see :mod:`pygrpc_ffi.metrics_server`): idle connections cannot take the
process's threads or descriptors.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._binding import metrics as c_metrics
from ._binding.base import EVERSION, PgfError
from .metrics_server import MetricsServer
from .status import StatusCode

__all__ = ["MethodStats", "PoolStats", "ShimCollector", "collect_pools", "collect_stats",
           "set_enabled", "start_metrics_server"]

KIND_NAMES = {0: "unary", 1: "client_stream", 2: "server_stream", 3: "bidi_stream"}
UNKNOWN = "unknown"
POOL_NAMES = {c_metrics.POOL_HANDLERS: "handlers", c_metrics.POOL_STREAMS: "streams",
              c_metrics.POOL_SERVICE: "service"}

_log = logging.getLogger("pygrpc_ffi.metrics")
_refused_files: set[str] = set()


@dataclass
class MethodStats:
    """One method's numbers (summed over processes when read from files)."""

    path: str
    kind: int
    started: int = 0
    handled: list[int] = field(default_factory=lambda: [0] * 17)
    msg_received: int = 0
    msg_sent: int = 0
    in_flight: int = 0
    buckets: list[int] = field(default_factory=list)  # per bucket; the last is +Inf
    sum_seconds: float = 0.0

    @property
    def service(self) -> str:
        return self.path[1:].partition("/")[0] if self.path else UNKNOWN

    @property
    def method(self) -> str:
        return self.path[1:].partition("/")[2] if self.path else UNKNOWN

    @property
    def grpc_type(self) -> str:
        return KIND_NAMES.get(self.kind, UNKNOWN)

    def add(self, other: MethodStats) -> None:
        self.started += other.started
        self.handled = [a + b for a, b in zip(self.handled, other.handled, strict=True)]
        self.msg_received += other.msg_received
        self.msg_sent += other.msg_sent
        self.in_flight += other.in_flight
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.sum_seconds += other.sum_seconds


@dataclass
class PoolStats:
    """One pool role's gauges (summed over processes when read from files)."""

    pool: int
    queued: int = 0
    threads: int = 0
    busy: int = 0
    max_threads: int = 0

    @property
    def name(self) -> str:
        return POOL_NAMES.get(self.pool, f"pool{self.pool}")

    def add(self, other: PoolStats) -> None:
        self.queued += other.queued
        self.threads += other.threads
        self.busy += other.busy
        self.max_threads += other.max_threads


def bucket_bounds() -> list[float]:
    """The histogram's finite upper bounds, seconds."""
    return c_metrics.bucket_bounds()


def set_enabled(enabled: bool) -> None:
    """Turns the shim's counting on or off (on by default; ``PGF_METRICS=0``
    in the environment starts with it off)."""
    c_metrics.set_enabled(enabled)


def _convert(raw: Any) -> MethodStats:
    return MethodStats(
        path=c_metrics.path_of(raw),
        kind=int(raw.kind),
        started=int(raw.started),
        handled=[int(raw.handled[c]) for c in range(17)],
        msg_received=int(raw.msg_received),
        msg_sent=int(raw.msg_sent),
        in_flight=int(raw.in_flight),
        buckets=[int(raw.duration_buckets[b]) for b in range(c_metrics.BUCKETS + 1)],
        sum_seconds=int(raw.duration_sum_ns) / 1e9,
    )


def _refused(file: str | None, rc: int) -> None:
    """Says once per file why a table file is skipped, when that is not
    just a child that has not created its table yet (PGF_EINVAL)."""
    if file is not None and rc == EVERSION and file not in _refused_files:
        _refused_files.add(file)
        _log.warning("metrics file %s was written by another version of pygrpc_ffi "
                     "(another table layout); its numbers are left out", file)


def _snapshot(file: str | None) -> list[MethodStats]:
    try:
        raws = c_metrics.method_stats(file)
    except PgfError as exc:
        _refused(file, exc.code)
        return []  # a child that has not created its table yet
    return [_convert(raw) for raw in raws]


def _pool_snapshot(file: str | None) -> list[PoolStats]:
    try:
        raws = c_metrics.pool_stats(file)
    except PgfError as exc:
        _refused(file, exc.code)
        return []
    return [PoolStats(pool=int(raw.pool), queued=int(raw.queued), threads=int(raw.threads),
                      busy=int(raw.busy), max_threads=int(raw.max_threads))
            for raw in raws]


def collect_stats(files: Iterable[str] | None = None) -> list[MethodStats]:
    """Every method's numbers: this process's table, or the sum of the
    tables in ``files`` (other processes' ``PGF_METRICS_FILE``)."""
    if files is None:
        return _snapshot(None)
    merged: dict[tuple[str, int], MethodStats] = {}
    for file in files:
        for stats in _snapshot(file):
            key = (stats.path, stats.kind)
            if key in merged:
                merged[key].add(stats)
            else:
                merged[key] = stats
    return list(merged.values())


def collect_pools(files: Iterable[str] | None = None) -> list[PoolStats]:
    """The gauges of every pool role a host published: this process's, or
    the sum over the tables in ``files``; in ``PGF_POOL_*`` order."""
    merged: dict[int, PoolStats] = {}
    for file in [None] if files is None else list(files):
        for stats in _pool_snapshot(file):
            if stats.pool in merged:
                merged[stats.pool].add(stats)
            else:
                merged[stats.pool] = stats
    return [merged[pool] for pool in sorted(merged)]


class ShimCollector:
    """A ``prometheus_client`` collector of the shim's call metrics: this
    process's (default), or the sum of the table files matched by
    ``files`` (glob patterns) at each scrape."""

    def __init__(self, files: Sequence[str] | None = None) -> None:
        self.files = list(files) if files is not None else None

    def _paths(self) -> list[str] | None:
        if self.files is None:
            return None
        return sorted({p for pattern in self.files for p in glob.glob(pattern)})

    def describe(self) -> list[Any]:
        return []  # collected at each scrape; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        labels = ["grpc_type", "grpc_service", "grpc_method"]
        started = CounterMetricFamily("grpc_server_started_total",
                                      "Total number of RPCs started on the server.",
                                      labels=labels)
        handled = CounterMetricFamily("grpc_server_handled_total",
                                      "Total number of RPCs completed on the server, "
                                      "regardless of success or failure.",
                                      labels=[*labels, "grpc_code"])
        received = CounterMetricFamily("grpc_server_msg_received_total",
                                       "Total number of RPC stream messages received on "
                                       "the server.", labels=labels)
        sent = CounterMetricFamily("grpc_server_msg_sent_total",
                                   "Total number of gRPC stream messages sent by the server.",
                                   labels=labels)
        seconds = HistogramMetricFamily("grpc_server_handling_seconds",
                                        "Histogram of response latency (seconds) of gRPC "
                                        "that had been application-level handled by the "
                                        "server.", labels=labels)
        in_flight = GaugeMetricFamily("grpc_server_in_flight",
                                      "RPCs started on the server and not yet finished.",
                                      labels=labels)
        bounds = [str(b) for b in bucket_bounds()] + ["+Inf"]
        paths = self._paths()
        for stats in collect_stats(paths):
            values = [stats.grpc_type, stats.service, stats.method]
            started.add_metric(values, stats.started)
            for code in StatusCode:
                count = stats.handled[int(code)]
                if count:
                    handled.add_metric([*values, code.name], count)
            received.add_metric(values, stats.msg_received)
            sent.add_metric(values, stats.msg_sent)
            cumulative, total = [], 0
            for bound, count in zip(bounds, stats.buckets, strict=True):
                total += count
                cumulative.append((bound, total))
            seconds.add_metric(values, cumulative, stats.sum_seconds)
            in_flight.add_metric(values, stats.in_flight)
        yield from (started, handled, received, sent, seconds, in_flight)
        yield from _pool_families(collect_pools(paths))


def _pool_families(pools: list[PoolStats]) -> Iterator[Any]:
    """The host gauges of the published pools (none: no family at all)."""
    from prometheus_client.core import GaugeMetricFamily

    for stats in pools:
        if stats.pool != c_metrics.POOL_HANDLERS:
            continue
        yield GaugeMetricFamily("pygrpc_ffi_host_queued_calls",
                                "Calls waiting for a handler thread of the host.",
                                value=stats.queued)
        yield GaugeMetricFamily("pygrpc_ffi_host_workers",
                                "Handler threads alive in the host.", value=stats.threads)
        yield GaugeMetricFamily("pygrpc_ffi_host_workers_busy",
                                "Handler threads running a call.", value=stats.busy)
        yield GaugeMetricFamily("pygrpc_ffi_host_workers_max",
                                "The most handler threads the host may have (--max-workers).",
                                value=stats.max_threads)
    others = [stats for stats in pools if stats.pool != c_metrics.POOL_HANDLERS]
    if not others:
        return
    families = [
        (GaugeMetricFamily("pygrpc_ffi_host_pool_queued_tasks",
                           "Tasks waiting for a thread of one of the host's own pools.",
                           labels=["pool"]), "queued"),
        (GaugeMetricFamily("pygrpc_ffi_host_pool_threads",
                           "Threads alive in one of the host's own pools.",
                           labels=["pool"]), "threads"),
        (GaugeMetricFamily("pygrpc_ffi_host_pool_threads_busy",
                           "Threads of one of the host's own pools running a task.",
                           labels=["pool"]), "busy"),
        (GaugeMetricFamily("pygrpc_ffi_host_pool_threads_max",
                           "The most threads one of the host's own pools may have.",
                           labels=["pool"]), "max_threads"),
    ]
    for family, attribute in families:
        for stats in others:
            family.add_metric([stats.name], getattr(stats, attribute))
        yield family


def metrics_dir_files(directory: str) -> list[str]:
    """The glob pattern of the table files server processes keep in ``directory``."""
    return [os.path.join(directory, "pgf-metrics-*.bin")]


def start_metrics_server(port: int, addr: str = "0.0.0.0",
                         files: Sequence[str] | None = None, **limits: Any) -> Any:
    """Serves ``/metrics`` on ``addr:port`` from one thread: the shim's call
    metrics (of this process, or of the table ``files``) in a registry of
    their own.  Returns the :class:`~pygrpc_ffi.metrics_server.MetricsServer`
    (``.port``, ``.shutdown()``), whose connections, request size and
    timeouts are bounded; ``limits`` (``max_connections``,
    ``header_timeout``, ``write_timeout``, ``max_request_bytes``) override
    its defaults."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShimCollector(files))
    return MetricsServer(registry, addr, port, **limits)
