"""Sections 1 and 2: nanoseconds per unary call, dispatched by a C loop
through the registry into Python and back, beside its floors.

    python -m bench.dispatch [--quick] [--out bench/results/dispatch.json]

Rows (all from C threads of bench/native.c, GIL released by the caller):
  floor       a bare no-op extern "Python" callback per iteration
  c_shim      a full call (new, 16 B payload, 2 metadata, dispatch, unref)
              into a C echo handler: the shim's own cost, no Python
  c_callback  the same C handler also calls the no-op callback
  sync/async  the full call into a trivial Python handler (def / async def)
              that answers with a prebuilt bytes object of the request's
              size: nothing is copied anywhere, at any size
  sync_echo   the full call into the echo users write, request.payload (the
              request's bytes: one copy, made on first access)
  sync_native_icpt/sync_grpc_icpt
              the sync row through one no-op interceptor: a native
              Interceptor with a before hook, or a grpc.ServerInterceptor
              that returns continuation(details)
  bidi_sync/bidi_async
              one bidi stream into a Python echo generator (def / async
              def), served inline by a C host (no network): ns per message,
              to compare with a unary call's ns per call
  sync_pipelined/async_pipelined
              one C thread dispatching with pgf_dispatch_async, as the C++
              host's threads do, with up to PIPELINE_DEPTH calls in flight
              (refilled half a window at a time): wall time per call when
              the dispatching thread does not wait for each answer
Each configuration is calibrated to ~0.3 s, run `reps` times in interleaved
order, and reported as the median (and every sample).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

import pygrpc_ffi as pgf
from bench import loops
from pygrpc_ffi.interceptors import Interceptor, ServerCall

ROOT = pathlib.Path(__file__).resolve().parent.parent
SERVICE = "bench.Dispatch"
STREAM = 2  # a row measured per message of one bidi stream
PIPELINE = 3  # a row of pipelined pgf_dispatch_async calls from one thread
PIPELINE_DEPTH = 64
SIZES = (16, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024)
_REPLIES = {size: bytes(size) for size in SIZES}


def reply(request: pgf.GrpcRequest) -> bytes:
    """The trivial sync handler: a prebuilt answer of the request's size."""
    return _REPLIES[request.payload_view.nbytes]


def echo(request: pgf.GrpcRequest) -> bytes:
    """The echo handler users write: the request's bytes back (one copy)."""
    return request.payload


async def async_reply(request: pgf.GrpcRequest) -> bytes:
    return _REPLIES[request.payload_view.nbytes]


def bidi_reply(requests: Iterator[pgf.GrpcRequest]) -> Iterator[bytes]:
    """The trivial bidi handler: a prebuilt answer per request message."""
    for request in requests:
        yield _REPLIES[request.payload_view.nbytes]


async def async_bidi_reply(requests: AsyncIterator[pgf.GrpcRequest]) -> AsyncIterator[bytes]:
    async for request in requests:
        yield _REPLIES[request.payload_view.nbytes]


class NoopNative(Interceptor):
    """One native hook that does nothing."""

    def before(self, call: ServerCall) -> None:
        pass


class NoopGrpc(grpc.ServerInterceptor):  # type: ignore[misc]
    """grpcio's no-op interceptor."""

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        return continuation(details)


def register() -> None:
    # Services of their own over the default registry: their interceptors
    # apply to their handlers only.
    for method, interceptor in (("SyncNativeIcpt", NoopNative()), ("SyncGrpcIcpt", NoopGrpc())):
        intercepted = pgf.GrpcService(_registry=pgf.default_service()._registry,
                                      interceptors=[interceptor])
        intercepted.register_method(SERVICE, method, reply)
    service = pgf.default_service()
    service.register_method(SERVICE, "Sync", reply)
    service.register_method(SERVICE, "SyncEcho", echo)
    service.register_method(SERVICE, "Async", async_reply)
    service.register_method(SERVICE, "BidiSync", bidi_reply, request_streaming=True,
                            response_streaming=True)
    service.register_method(SERVICE, "BidiAsync", async_bidi_reply, request_streaming=True,
                            response_streaming=True)
    loops.register_c_echo("bench.CEcho", with_callback=False)
    loops.register_c_echo("bench.CEchoCallback", with_callback=True)


@dataclass
class Config:
    group: str      # overhead | threads | payload
    label: str      # floor | c_shim | c_callback | sync | async
    kind: int
    path: str
    payload: int
    threads: int
    calls_per_thread: int = 0
    samples_ns: list[float] = field(default_factory=list)

    @property
    def median_ns(self) -> float:
        return statistics.median(self.samples_ns)


PATHS = {
    "floor": (loops.FLOOR, "/none/none"),
    "c_shim": (loops.DISPATCH, "/bench.CEcho/Echo"),
    "c_callback": (loops.DISPATCH, "/bench.CEchoCallback/Echo"),
    "sync": (loops.DISPATCH, f"/{SERVICE}/Sync"),
    "sync_echo": (loops.DISPATCH, f"/{SERVICE}/SyncEcho"),
    "async": (loops.DISPATCH, f"/{SERVICE}/Async"),
    "sync_native_icpt": (loops.DISPATCH, f"/{SERVICE}/SyncNativeIcpt"),
    "sync_grpc_icpt": (loops.DISPATCH, f"/{SERVICE}/SyncGrpcIcpt"),
    "bidi_sync": (STREAM, f"/{SERVICE}/BidiSync"),
    "bidi_async": (STREAM, f"/{SERVICE}/BidiAsync"),
    "sync_pipelined": (PIPELINE, f"/{SERVICE}/Sync"),
    "async_pipelined": (PIPELINE, f"/{SERVICE}/Async"),
}


def configs() -> list[Config]:
    def make(group: str, label: str, payload: int = 16, threads: int = 1) -> Config:
        kind, path = PATHS[label]
        return Config(group, label, kind, path, payload, threads)

    rows = [make("overhead", label) for label in PATHS if PATHS[label][0] == loops.DISPATCH
            or PATHS[label][0] == loops.FLOOR]
    rows += [make("stream", label) for label in ("bidi_sync", "bidi_async")]
    rows += [make("pipeline", label) for label in ("sync_pipelined", "async_pipelined")]
    rows += [make("threads", label, threads=t) for label in ("floor", "sync", "async")
             for t in (2, 4)]
    rows += [make("payload", label, size) for label in ("c_shim", "sync", "sync_echo")
             for size in SIZES[1:]]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--reps", type=int, default=0, help="runs per configuration")
    parser.add_argument("--only", default="", help="comma-separated labels to run")
    parser.add_argument("--out", type=pathlib.Path,
                        default=ROOT / "bench" / "results" / "dispatch.json")
    args = parser.parse_args(argv)
    reps = args.reps or (2 if args.quick else 5)
    seconds = 0.05 if args.quick else 0.3
    register()
    rows = [c for c in configs() if not args.only or c.label in args.only.split(",")]
    for row in rows:
        if row.kind == STREAM:
            probe = loops.stream(row.path, row.payload, 2000)
            row.calls_per_thread = max(1000, int(2000 * seconds * 1e9 / probe.wall_ns))
        elif row.kind == PIPELINE:
            probe = loops.pipeline(row.path, row.payload, 2000, PIPELINE_DEPTH)
            row.calls_per_thread = max(1000, int(2000 * seconds * 1e9 / probe.wall_ns))
        else:
            row.calls_per_thread = loops.calibrate(row.kind, row.path, row.payload, seconds,
                                                   row.threads)
    for rep in range(reps):
        # Alternate the order so that drift hits every row alike.
        for row in rows if rep % 2 == 0 else reversed(rows):
            if row.kind == STREAM:
                run = loops.stream(row.path, row.payload, row.calls_per_thread)
            elif row.kind == PIPELINE:
                run = loops.pipeline(row.path, row.payload, row.calls_per_thread,
                                     PIPELINE_DEPTH)
            else:
                run = loops.run(row.kind, row.path, row.payload, row.calls_per_thread,
                                row.threads)
            row.samples_ns.append(run.ns_per_call)
    for row in rows:
        unit = "ns/message" if row.kind == STREAM else "ns/call"
        if row.kind == PIPELINE:
            unit += f" ({PIPELINE_DEPTH} in flight)"
        print(f"  {row.group:9} {row.label:10} {row.payload:>9} B {row.threads} thr "
              f"{row.median_ns:9.0f} {unit}", flush=True)
    by_label = {(r.group, r.label): r.median_ns for r in rows}
    unary = by_label.get(("overhead", "sync"))
    for label in ("bidi_sync", "bidi_async"):
        if unary and ("stream", label) in by_label:
            print(f"  {label} per message / sync unary per call: "
                  f"{by_label[('stream', label)] / unary:.2f}x (target <= 1.5x)", flush=True)
    report = {
        "config": {"reps": reps, "seconds_per_run": seconds, "pipeline_depth": PIPELINE_DEPTH,
                   "finished": time.strftime("%Y-%m-%d %H:%M:%S")},
        "rows": [{**asdict(row), "median_ns": row.median_ns} for row in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
