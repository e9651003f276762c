"""The C written with the CPython API (unary.c, stream_io.c, loop_queue.c
beside this file), compiled into the cffi module: the unary fast path, the
blocking stream reads and writes, the queue of async unary calls."""

from __future__ import annotations

from typing import Any

from .._native import lib
from .base import NULL, OK, void_p

# Handler functions and releases to register with (C function pointers).
#: The handler function of unary registrations (unary.c).
UNARY_HANDLE: Any = lib._pgf_unary_handle
#: Releases the handler data of :func:`unary_binding`.
UNARY_RELEASE: Any = lib._pgf_unary_release
#: The handler function of every other Python registration (build.py).
PY_HANDLE: Any = lib._pgf_handle
#: The handler function that queues a call for the event loop (loop_queue.c).
LOOP_QUEUE_HANDLE: Any = lib._pgf_loop_queue_handle


def install_builtins(builtins: dict[str, Any]) -> None:
    """Fills ``builtins`` with the C functions of unary.c, stream_io.c and
    loop_queue.c; MemoryError if C cannot make them."""
    for install in (lib._pgf_unary_install, lib._pgf_stream_io_install,
                    lib._pgf_loop_queue_install):
        if install(void_p(id(builtins))) != OK:
            raise MemoryError("pygrpc_ffi cannot set up its C functions")


def setup_unary(run_unary: Any) -> None:
    """Has unary.c run handlers through ``run_unary`` (kept alive by the
    caller); MemoryError if C cannot set it up."""
    if lib._pgf_unary_setup(void_p(id(run_unary))) != OK:
        raise MemoryError("pygrpc_ffi cannot set up its unary fast path")


def unary_binding(handle: Any, binding: Any) -> Any:
    """Handler data for :data:`UNARY_HANDLE` (release: :data:`UNARY_RELEASE`)
    of a binding whose cffi handle is ``handle``; None if C cannot allocate
    it."""
    data = lib._pgf_unary_binding_new(handle, void_p(id(binding)))
    return None if data == NULL else data


# The queue of async unary calls.
#: set_limit(n): at most n calls wait for the loop.
loop_queue_set_limit = lib._pgf_loop_queue_set_limit
#: fd() -> the pipe the loop watches, or -1 if it cannot be made.
loop_queue_fd = lib._pgf_loop_queue_fd
#: set_open(0/1): whether queued calls are taken (0: answered UNAVAILABLE).
loop_queue_set_open = lib._pgf_loop_queue_set_open
#: wait_finished(ms) -> 0 if answered calls are still unfinished then.
loop_queue_wait_finished = lib._pgf_loop_queue_wait_finished
