"""What runs when a server is asked to stop (SIGTERM, SIGINT), before it
stops: the start of the drain.

::

    from pygrpc_ffi.shutdown import on_shutdown

    on_shutdown(lambda: log.info("draining"))

``pygrpc-ffi serve`` (either engine) calls :func:`begin_shutdown` once, in
the handlers' process, when the stop signal arrives: every health status
goes NOT_SERVING first (:mod:`pygrpc_ffi.health`), then the callbacks run in
the order they were added, then the server keeps serving for
``--drain-seconds`` before it stops.  A handlers module cannot catch the
signal itself: the C++ host takes it in C++, and the grpcio engine installs
its own handlers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["begin_shutdown", "on_shutdown", "shutting_down"]

_log = logging.getLogger("pygrpc_ffi")
_lock = threading.Lock()
_first: list[Callable[[], object]] = []
_callbacks: list[Callable[[], object]] = []
_started = False


def on_shutdown(callback: Callable[[], object], *, first: bool = False) -> None:
    """Runs ``callback()`` at the start of the drain (``first``: before the
    callbacks added without it).  Added once shutdown began: runs at once.
    An exception is logged (logger ``pygrpc_ffi``) and the others still run."""
    with _lock:
        if not _started:
            (_first if first else _callbacks).append(callback)
            return
    _run(callback)


def shutting_down() -> bool:
    """Whether :func:`begin_shutdown` was called."""
    return _started


def begin_shutdown() -> None:
    """Runs the shutdown callbacks, once per process; later calls do nothing."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
        callbacks = [*_first, *_callbacks]
        _first.clear()
        _callbacks.clear()
    for callback in callbacks:
        _run(callback)


def _run(callback: Callable[[], object]) -> None:
    try:
        callback()
    except Exception:
        _log.exception("shutdown callback %r failed", callback)
