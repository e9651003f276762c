"""The bodies of the extern "Python" functions C calls (declared in
_binding/build.py): a handler's call to run, handler data and buffers to
release, cancels, completed dispatches, stream events and reads and writes."""

from __future__ import annotations

import logging
from typing import Any

from .._binding import calls
from .._binding.base import NULL as _NULL
from .._binding.base import from_handle
from .._binding.trampolines import define
from ..status import StatusCode
from .handles import handles
from .runners import _INTERNAL_RAW, run

_log = logging.getLogger("pygrpc_ffi")


_extern = define  # the body of the extern "Python" function of its name



def _handle_failed(exc_type: Any, exc_value: Any, tb: Any) -> int:
    """cffi's onerror for _pgf_py_handle: the trampoline itself failed (say,
    a RecursionError from handlers that nest calls without bound).  Returns
    0: the C caller (_pgf_handle in _binding/build.py) then finishes the call."""
    _log.error("pygrpc_ffi could not run a handler (%s); the call fails with INTERNAL",
               getattr(exc_type, "__name__", exc_type))
    return 0


def _pgf_py_handle(handler_data: Any, call: Any) -> int:
    binding = from_handle(handler_data)
    try:
        chain = binding.chain
        if chain is not None and chain.active:
            chain.run(binding, call)
        else:
            run(binding, call)
    except BaseException:
        try:
            _log.exception("pygrpc_ffi failed to run handler %s", getattr(binding, "name", "?"))
        finally:
            # C calls only, with a ready message: this part cannot recurse.
            if not calls.is_finished(call):
                calls.reset_response_quietly(call)  # nothing half-written reaches the client
                calls.finish_quietly(call, StatusCode.INTERNAL.value, _INTERNAL_RAW)
    return 1


define(_pgf_py_handle, onerror=_handle_failed)


@_extern
def _pgf_py_enter_thread() -> None:
    """Entered once per foreign thread by _binding/unary.c (see there)."""


@_extern
def _pgf_py_release_handler(handler_data: Any) -> None:
    handles.pop(handler_data)


@_extern
def _pgf_py_release_buffer(ctx: Any) -> None:
    handles.pop(ctx)


@_extern
def _pgf_py_cancel(call: Any, user_data: Any) -> None:
    from_handle(user_data).cancel()


@_extern
def _pgf_py_call_done(call: Any, user_data: Any) -> None:
    from_handle(user_data).done(call)


@_extern
def _pgf_py_stream_event(call: Any, event: int, user_data: Any) -> None:
    from_handle(user_data).event(call, event)


# A read or write whose user_data is a handle of an object with
# complete(result, msg): for code that drives a stream through cffi (the
# runtime's own reads and writes use the C builtins of c_builtins).
@_extern
def _pgf_py_read_done(call: Any, result: int, msg: Any, user_data: Any) -> None:
    handles.pop(user_data).complete(result, msg)


@_extern
def _pgf_py_write_done(call: Any, result: int, user_data: Any) -> None:
    handles.pop(user_data).complete(result, _NULL)

