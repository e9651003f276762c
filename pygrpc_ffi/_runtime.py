"""The Python end of the C ABI: trampolines that run handlers on calls.

C calls ``_pgf_py_handle`` with a handler's registration data and a call; the
handler's answer (or exception) is written back to the call and the call is
finished.  ``async def`` handlers run on the package's event-loop thread and
finish their call from there.  Streaming handlers run in :mod:`._streams`;
requests are read in :mod:`._requests`, answers written in :mod:`._answers`.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import types
from collections.abc import Callable
from typing import Any

from . import _loop, _streams
from ._answers import (
    INTERNAL_MESSAGE,
    InvalidResponse,
    finish,
    finish_error,
    finish_ok,
)
from ._binding import base, calls, fastpath
from ._binding.base import from_handle
from ._binding.trampolines import define
from ._builtins import finish_taken as _finish_taken
from ._handles import handles
from ._requests import (
    _new_request,
    _reader,
    call_at,
    decode_name,
    make_request,
    read_metadata,
    release_request,
)
from .request import _LAZY, GrpcRequest
from .response import GrpcResponse
from .status import StatusCode

__all__ = ["INTERNAL_MESSAGE", "Binding", "InvalidResponse", "handles", "live_objects",
           "make_request", "on_shutdown", "read_metadata", "run", "shutdown"]

_log = logging.getLogger("pygrpc_ffi")
_decode_name = decode_name  # the name other modules knew it by
_finish = finish
_BYTES_LIKE = (bytes, bytearray, memoryview)


class Binding:
    """A handler as registered: what C's handler data points at.  ``kind``
    is the method's PGF_KIND_*; ``is_async`` says whether a streaming handler
    runs on the event loop (unary ones are told by what they return).
    ``chain`` is the service's InterceptorChain (None: none); ``on_finish``
    runs once an async handler's call is finished (interceptors' after
    hooks); ``rpc_handler`` caches the RpcMethodHandler grpcio interceptors
    see."""

    __slots__ = ("chain", "expose_exceptions", "fn", "is_async", "kind", "name", "on_finish",
                 "rpc_handler")

    def __init__(
        self, fn: Callable[[Any], Any], name: str, expose_exceptions: bool,
        kind: int = 0, is_async: bool = False, chain: Any = None,
    ) -> None:
        self.chain = chain
        self.on_finish: Callable[[], None] | None = None
        self.rpc_handler: Any = None
        self.fn = fn
        self.name = name
        self.expose_exceptions = expose_exceptions
        self.kind = kind
        self.is_async = is_async


class AsyncCall:
    """An async handler's call in flight, which C may cancel at any time."""

    __slots__ = ("address", "awaitable", "binding", "call", "cancelled", "handle", "request",
                 "started", "task", "tracked_in")

    def __init__(self, binding: Binding, call: Any, request: GrpcRequest, awaitable: Any,
                 tracked_in: dict[int, AsyncCall] | None = None, address: int = 0) -> None:
        self.binding = binding
        # Calls taken from the loop queue (_binding/loop_queue.c) come as an
        # address, ``call`` None until a pointer is needed, and are tracked
        # by address in ``tracked_in`` for the cancels that come by address.
        self.tracked_in = tracked_in
        self.address = address
        self.call = call
        self.request: GrpcRequest | None = request
        self.awaitable = awaitable  # until the loop starts it
        self.cancelled = False
        self.started = False  # _drive began
        self.task: asyncio.Task[None] | None = None
        self.handle: Any = None

    def cancel(self) -> None:
        """From any thread (C's cancel callback)."""
        self.cancelled = True  # seen by a task not started yet
        if _loop.is_loop_thread():
            self.cancel_started()
            return
        task = self.task
        if task is not None:
            try:
                task.get_loop().call_soon_threadsafe(self.cancel_started)
            except RuntimeError:  # the loop is closed: its tasks were cancelled
                pass

    def cancel_started(self) -> None:
        """On the loop: cancels the task once _drive began (before that, a
        CancelledError thrown into it would skip its body; it checks
        ``cancelled`` as it begins instead)."""
        if self.cancelled and self.started and self.task is not None:
            self.task.cancel()


# ------------------------------------------------------------ running calls


def run(binding: Binding, call: Any) -> None:
    """Runs a handler on a call; an awaitable result continues on the loop."""
    if binding.kind:
        _streams.run(binding, call)
        return
    request = make_request(call)
    refs = sys.getrefcount(request)  # only this frame's: compared after the handler
    try:
        result = binding.fn(request)
    except BaseException as exc:
        release_request(request)
        finish_error(call, exc, binding)
        return
    if type(result) is not bytes and (
        type(result) is types.CoroutineType or is_awaitable(result)
    ):
        _start_async(binding, call, request, result)
        return
    # Any reference the handler kept (stored request, closure, thread, frame)
    # shows in the count: then the request outlives the call.
    outlives = sys.getrefcount(request) != refs
    release_request(request, outlives)
    finish_ok(call, result, binding)


def run_unary(binding: Binding, address: int, payload: memoryview) -> bytes | None:
    """Runs a unary handler for _binding/unary.c, which made the payload view.
    Returns a plain ``bytes`` answer for C to send and finish with; anything
    else is answered here (or on the loop, for an awaitable), and None
    returned."""
    try:
        chain = binding.chain
        if chain is not None and chain.active:
            chain.run(binding, call_at(address))
            return None
        # request_at(address, payload), inlined: this is the per-call path.
        request = _new_request(GrpcRequest)
        request._service_name = request._method_name = request._deadline = _LAZY
        request._peer = _LAZY
        request.payload = payload
        request._metadata = request._stream = None
        request._call = address
        request._reader = _reader
        refs = _getrefcount(request)  # only this frame's: compared after the handler
        try:
            result = binding.fn(request)
        except BaseException as exc:
            call = call_at(address)
            release_request(request)
            finish_error(call, exc, binding)
            return None
        if type(result) is bytes:
            if _getrefcount(request) != refs:
                release_request(request)  # kept by the handler: it outlives the call
            else:
                request._reader = request._call = None
            return result
        call = call_at(address)
        if type(result) is types.CoroutineType or is_awaitable(result):
            request._call = call
            _start_async(binding, call, request, result)
            return None
        outlives = _getrefcount(request) != refs  # not in release_request's arguments
        release_request(request, outlives)
        finish_ok(call, result, binding)
    except BaseException:
        _log.exception("pygrpc_ffi failed to run handler %s", getattr(binding, "name", "?"))
        call = call_at(address)
        if not calls.is_finished(call):
            calls.reset_response_quietly(call)
            calls.finish_quietly(call, StatusCode.INTERNAL.value, _INTERNAL_RAW)
    return None


_getrefcount = sys.getrefcount
_UNSHARED = 2  # getrefcount of an object held by one local variable only


def is_awaitable(obj: Any) -> bool:
    if type(obj) is types.CoroutineType:
        return True
    return hasattr(obj, "__await__") and not isinstance(obj, (GrpcResponse, *_BYTES_LIKE))


def _start_async(binding: Binding, call: Any, request: GrpcRequest, awaitable: Any) -> None:
    calls.ref(call)
    pending = AsyncCall(binding, call, request, awaitable)
    pending.handle = handles.add(pending)
    # Not finished yet (the handler only returned an awaitable): the hook is set.
    calls.set_cancel_hook(call, pending.handle)
    try:
        _loop.submit(begin_async, pending)
    except BaseException as exc:
        pending.awaitable = None
        if hasattr(awaitable, "close"):
            awaitable.close()
        end_async(pending, exc, None)


def begin_async(pending: AsyncCall) -> None:
    """On the loop: runs the handler's awaitable as a task."""
    awaitable, pending.awaitable = pending.awaitable, None
    run_awaitable(pending, awaitable)


def run_awaitable(pending: AsyncCall, awaitable: Any) -> None:
    """On the loop: runs ``awaitable``, the handler's, as the call's task."""
    task = _loop.start_task(_drive(pending, awaitable))
    if not task.done():
        pending.task = task
        if pending.cancelled:
            pending.cancel_started()  # a cancel while an eager first step ran


async def _drive(pending: AsyncCall, awaitable: Any) -> None:
    pending.started = True
    try:
        if pending.cancelled:
            if hasattr(awaitable, "close"):
                awaitable.close()
            raise asyncio.CancelledError()
        result = await awaitable
    except BaseException as exc:
        end_async(pending, exc, None)
    else:
        end_async(pending, None, result)


def end_async(pending: AsyncCall, exc: BaseException | None, result: Any) -> None:
    call, binding = pending.call, pending.binding
    request, pending.request = pending.request, None
    dropped = False  # the call's reference, given back by finish_taken
    try:
        # Held here only (the handler's frame is gone): nothing reads it
        # after the call, so its lazy fields need not be read now.
        if request is not None:
            outlives = _getrefcount(request) > _UNSHARED  # as a statement of its own
            release_request(request, outlives)
            del request
        if call is None:  # taken from the loop queue
            if exc is None and type(result) is bytes and binding.on_finish is None:
                _untrack(pending)
                dropped = True
                _finish_taken(pending.address, result)  # finished, reference dropped
                return
            call = pending.call = call_at(pending.address)
        if exc is not None:
            finish_error(call, exc, binding)
        else:
            finish_ok(call, result, binding)
    except BaseException:  # a call must never be left unfinished
        _log.exception("pygrpc_ffi failed to finish the call of handler %s", binding.name)
        if not dropped:
            call = call if call is not None else call_at(pending.address)
            if not calls.is_finished(call):
                calls.reset_response_quietly(call)
                _finish(call, StatusCode.INTERNAL, INTERNAL_MESSAGE)
    finally:
        # Once finished, C never runs the cancel callback again.
        if pending.handle is not None:
            handles.pop(pending.handle)
            pending.handle = None  # a handle keeps its object: no cycle
        if not dropped:
            _untrack(pending)
            calls.unref(call if call is not None else call_at(pending.address))
            if binding.on_finish is not None:
                binding.on_finish()


def _untrack(pending: AsyncCall) -> None:
    if pending.tracked_in is not None:
        del pending.tracked_in[pending.address]
        pending.tracked_in = None


# -------------------------------------------------------------- trampolines

_extern = define  # the body of the extern "Python" function of its name


_INTERNAL_RAW = INTERNAL_MESSAGE.encode()


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


@_extern
def _pgf_py_read_done(call: Any, result: int, msg: Any, user_data: Any) -> None:
    _streams.complete_read(result, msg, user_data)


@_extern
def _pgf_py_write_done(call: Any, result: int, user_data: Any) -> None:
    _streams.complete_write(result, user_data)


def unary_handler_data(handle: Any, binding: Binding) -> Any:
    """Handler data for registering a unary Binding (whose cffi handle is
    ``handle``) with the fast path's handler function, ``fastpath.UNARY_HANDLE``;
    release it with ``fastpath.UNARY_RELEASE``.  MemoryError if C cannot
    allocate it (the handle is given back then)."""
    data = fastpath.unary_binding(handle, binding)
    if data is None:
        handles.pop(handle)
        raise MemoryError("cannot register the handler")
    return data


fastpath.setup_unary(run_unary)


# ---------------------------------------------------------------- lifetime


def live_objects() -> dict[str, int]:
    """How many C objects are alive: names, handlers, calls, registries,
    response buffers not yet released by their host, and request messages."""
    return {
        name: base.live_count(name.upper())
        for name in ("names", "handlers", "calls", "registries", "buffers", "messages")
    }


_shutdown_hooks: list[Callable[[], None]] = []


def on_shutdown(hook: Callable[[], None]) -> None:
    _shutdown_hooks.append(hook)


def shutdown() -> None:
    """Stops the event-loop thread and releases every Python registration,
    while the interpreter can still run them (embedding hosts call this)."""
    _loop.stop()
    for hook in reversed(_shutdown_hooks):
        try:
            hook()
        except Exception:
            _log.exception("shutdown hook failed")


atexit.register(shutdown)
