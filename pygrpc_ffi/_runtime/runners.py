"""Handlers run on calls: a registration's :class:`Binding`, sync handlers
run where C dispatched the call, ``async def`` ones driven on the package's
event-loop thread, which finishes their call.  The unary fast path
(_binding/unary.c) calls :func:`run_unary`; the trampoline of every other
registration calls :func:`run`.  Streaming handlers run in :mod:`.streams`;
requests are read in :mod:`.requests`, answers written in :mod:`.answers`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import types
from collections.abc import Callable
from typing import Any

from .._binding import calls, fastpath
from ..request import _LAZY, GrpcRequest
from ..response import GrpcResponse
from ..status import StatusCode
from . import loop as _loop
from . import streams as _streams
from .answers import (
    INTERNAL_MESSAGE,
    finish,
    finish_error,
    finish_ok,
    response_payload,
)
from .c_builtins import finish_taken as _finish_taken
from .handles import handles
from .requests import (
    _new_request,
    _reader,
    call_at,
    decode_name,
    make_request,
    release_request,
)

__all__ = ["Binding", "run", "run_unary", "unary_handler_data"]

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
    Returns a plain ``bytes`` answer (or a GrpcResponse's bytes payload, its
    metadata added) for C to send and finish with; anything else is answered
    here (or on the loop, for an awaitable), and None returned."""
    try:
        chain = binding.chain
        if chain is not None and chain.active:
            chain.run(binding, call_at(address))
            return None
        # request_at(address, payload), inlined: this is the per-call path.
        request = _new_request(GrpcRequest)
        request._service_name = request._method_name = request._deadline = _LAZY
        request._peer = _LAZY
        request.payload_view = payload
        request._metadata = request._stream = request._payload = None
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
        if type(result) is bytes or type(result) is GrpcResponse:
            if _getrefcount(request) != refs:
                release_request(request)  # kept by the handler: it outlives the call
            else:
                request._reader = request._call = None
            if isinstance(result, GrpcResponse):
                return response_payload(address, result, binding)
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
            if exc is None and type(result) is GrpcResponse and binding.on_finish is None:
                # Its metadata into the call; its bytes then go as a bytes answer's.
                payload = response_payload(pending.address, result, binding)
                if payload is None:
                    return  # answered there (or failed); the reference goes below
                result = payload
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



_INTERNAL_RAW = INTERNAL_MESSAGE.encode()


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


