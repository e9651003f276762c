"""The shim's metrics tables: per-method counts and histograms, pools."""

from __future__ import annotations

from typing import Any

from .._native import ffi, lib
from .base import NULL, ensure

BUCKETS: int = lib.PGF_METRICS_BUCKETS
MAX_POOLS: int = lib.PGF_METRICS_MAX_POOLS
POOL_HANDLERS: int = lib.PGF_POOL_HANDLERS
POOL_STREAMS: int = lib.PGF_POOL_STREAMS
POOL_SERVICE: int = lib.PGF_POOL_SERVICE


def bucket_bounds() -> list[float]:
    """The histogram's finite upper bounds, seconds."""
    bounds = lib.pgf_metrics_bucket_bounds()
    return [float(bounds[i]) for i in range(BUCKETS)]


def set_enabled(enabled: bool) -> None:
    lib.pgf_metrics_set_enabled(1 if enabled else 0)


def count_refused_unknown(code: int) -> None:
    """Counts a call to an unknown method (the overflow entry)."""
    lib.pgf_metrics_count_refused(NULL, 0, -1, code)


def path_of(raw: Any) -> str:
    """The method path of a ``pgf_method_stats``."""
    return str(ffi.string(raw.path).decode("utf-8", "replace"))


def method_stats(file: str | None) -> list[Any]:
    """Owned copies of the ``pgf_method_stats`` of this process's table, or of the table file
    ``file``; PgfError (PGF_EINVAL: no table yet, PGF_EVERSION: another
    layout) if it cannot be read."""
    size = ffi.new("size_t *")
    cap = 64
    while True:
        out = ffi.new("pgf_method_stats[]", cap)
        _snapshot("pgf_metrics_snapshot", file, out, cap, size)
        if size[0] <= cap:
            return _owned(out, size[0])
        cap = size[0] + 16


def pool_stats(file: str | None) -> list[Any]:
    """Owned copies of the ``pgf_pool_stats`` of this process, or of the table file ``file``;
    PgfError as :func:`method_stats`."""
    cap = int(MAX_POOLS)
    out = ffi.new("pgf_pool_stats[]", cap)
    size = ffi.new("size_t *")
    _snapshot("pgf_metrics_pool_snapshot", file, out, cap, size)
    return _owned(out, min(size[0], cap))


def _owned(out: Any, count: int) -> list[Any]:
    """Copies of the first ``count`` structs of ``out``, each owning its
    memory: an item of a cffi array does not keep the array alive."""
    item = ffi.getctype(ffi.typeof(out).item, "*")
    return [ffi.new(item, out[i]) for i in range(count)]


def _snapshot(function: str, file: str | None, out: Any, cap: int, size: Any) -> None:
    """Calls ``function`` (this process's table) or ``function``_file (the
    table file ``file``) to fill ``out``; PgfError unless PGF_OK."""
    stats_size = ffi.sizeof(ffi.typeof(out).item)
    if file is None:
        ensure(getattr(lib, function)(out, cap, stats_size, size), function)
    else:
        name = f"{function}_file"
        ensure(getattr(lib, name)(file.encode(), out, cap, stats_size, size), name)
