"""The C dispatch loops of bench/native.c, driven from Python.

The module ``_pgf_bench`` is built by ``python bench/build_native.py`` into
build/bench/; it links the package's shim, so its loops dispatch into the
registry of ``pygrpc_ffi.default_service()``.
"""

from __future__ import annotations

import pathlib
import sys
import time
from dataclasses import dataclass
from typing import Any

BUILD = pathlib.Path(__file__).resolve().parent.parent / "build" / "bench"
if str(BUILD) not in sys.path:
    sys.path.insert(0, str(BUILD))

import _pgf_bench  # type: ignore[import-not-found]  # noqa: E402

ffi: Any = _pgf_bench.ffi
lib: Any = _pgf_bench.lib

FLOOR, DISPATCH = 0, 1


@ffi.def_extern()  # type: ignore[misc]
def _bench_noop(data: Any, call: Any) -> None:
    """The floor: a bare extern "Python" callback that does nothing."""


@dataclass(frozen=True)
class Run:
    """One timed loop: total calls over all threads, and its wall time."""

    calls: int
    threads: int
    wall_ns: int

    @property
    def ns_per_call(self) -> float:
        return self.wall_ns / self.calls

    @property
    def calls_per_s(self) -> float:
        return self.calls * 1e9 / self.wall_ns


def run(kind: int, path: str, payload: int, calls_per_thread: int, threads: int = 1,
        warmup: int = 200) -> Run:
    """Runs the loop on ``threads`` C threads; raises if any call failed."""
    errors = ffi.new("long *")
    wall = lib.bench_run(kind, path.encode(), payload, calls_per_thread, warmup, threads,
                         errors)
    if wall < 0:
        raise RuntimeError("bench_run could not start its threads")
    if errors[0]:
        raise RuntimeError(f"{errors[0]} calls to {path} failed")
    return Run(calls_per_thread * threads, threads, int(wall))


def calibrate(kind: int, path: str, payload: int, seconds: float, threads: int = 1) -> int:
    """Calls per thread that make one run last about ``seconds``."""
    probe = 200
    while True:
        start = time.perf_counter()
        run(kind, path, payload, probe, threads, warmup=20)
        took = time.perf_counter() - start
        if took > 0.05 or probe >= 1_000_000:
            return max(100, int(probe * seconds / took))
        probe *= 4


def stream(path: str, payload: int, messages: int) -> Run:
    """One bidi call of ``messages`` request messages into ``path``, served
    inline by a C host (bench/native.c); ``calls`` counts messages."""
    wall = lib.bench_stream(path.encode(), payload, messages)
    if wall < 0:
        raise RuntimeError(f"the stream to {path} failed")
    return Run(messages, 1, int(wall))


def pipeline(path: str, payload: int, calls: int, depth: int) -> Run:
    """``calls`` calls dispatched by one C thread with pgf_dispatch_async,
    up to ``depth`` in flight (bench/native.c); raises if any call failed."""
    errors = ffi.new("long *")
    wall = lib.bench_pipeline(path.encode(), payload, calls, depth, errors)
    if wall < 0:
        raise RuntimeError("bench_pipeline could not start its thread")
    if errors[0]:
        raise RuntimeError(f"{errors[0]} calls to {path} failed")
    return Run(calls, 1, int(wall))


def register_c_echo(service: str, with_callback: bool) -> None:
    """A C echo handler in the default registry (optionally calling the
    no-op Python callback), to split the cost between shim and Python."""
    rc = lib.bench_register_c(service.encode(), int(with_callback))
    if rc != 0:
        raise RuntimeError(f"cannot register {service}: {rc}")


def live_counts() -> dict[str, int]:
    """pgf_live_count for every kind, read through the bench's own module."""
    names = ("names", "handlers", "calls", "registries", "buffers", "messages")
    return {name: int(lib.pgf_live_count(i)) for i, name in enumerate(names)}
