"""Unary ``async def`` handlers, started on the event loop straight from C.

Their registrations use the queue of ``_binding/loop_queue.c`` as handler
function: a host's thread only queues the call (no worker thread, no GIL),
and the loop takes every waiting call in one crossing when the queue's pipe
becomes readable, builds each request and starts the handler's task.  Cancels
come through the same queue, after their call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import types
from typing import Any

from .._binding import calls, fastpath
from ..status import StatusCode
from . import loop as _loop
from . import runners
from .answers import finish, finish_error
from .c_builtins import take_calls
from .requests import call_at, request_at

_log = logging.getLogger("pygrpc_ffi")
_TAKE = 64  # take_calls returns fewer items only once the queue is empty
_Coroutine = types.CoroutineType
_running: dict[int, runners.AsyncCall] = {}  # started calls, by address
# Calls of services with interceptors take the interceptors' way, which may
# block in their hooks: off the loop, on a few threads; calls waiting for
# one of them are bounded as calls waiting for the loop are.
_INTERCEPT_THREADS = 4
_intercepting = concurrent.futures.ThreadPoolExecutor(
    max_workers=_INTERCEPT_THREADS, thread_name_prefix="pygrpc_ffi-intercept")
_intercept_lock = threading.Lock()
_intercepting_calls = 0  # submitted to _intercepting, not done yet
_max_queued_calls = 1000


def _forget_parent_calls() -> None:
    """In the child of a fork(): the parent's started calls and interceptor
    threads are not here (the C queue forgets its entries by itself)."""
    global _intercepting, _intercept_lock, _intercepting_calls
    _running.clear()
    _intercepting = concurrent.futures.ThreadPoolExecutor(
        max_workers=_INTERCEPT_THREADS, thread_name_prefix="pygrpc_ffi-intercept")
    _intercept_lock = threading.Lock()
    _intercepting_calls = 0


_loop.on_fork_child(_forget_parent_calls)


def set_max_queued_calls(limit: int) -> None:
    """At most ``limit`` async calls wait for the loop, and as many for an
    interceptor thread; beyond, calls end RESOURCE_EXHAUSTED at once."""
    global _max_queued_calls
    _max_queued_calls = limit
    fastpath.loop_queue_set_limit(limit)


def _limit_from_environment() -> None:
    """The C++ host passes its --max-queued-calls here, so that calls
    waiting for the loop are bounded as calls waiting for a worker are."""
    raw = os.environ.get("PYGRPC_FFI_MAX_QUEUED_CALLS", "")
    if raw.isdigit():
        set_max_queued_calls(int(raw))
    elif raw:
        _log.error("PYGRPC_FFI_MAX_QUEUED_CALLS=%r is not a count; keeping the default", raw)


def handler_function() -> Any:
    """The pgf_handler_fn that queues a call for the loop (register it with
    PGF_FLAG_NONBLOCKING); the loop is started now, so calls are taken."""
    _loop.get_loop()
    return fastpath.LOOP_QUEUE_HANDLE


def _open(loop: asyncio.AbstractEventLoop) -> None:
    fd = fastpath.loop_queue_fd()
    if fd < 0:
        _log.error("pygrpc_ffi cannot make the pipe of its call queue; async handlers "
                   "answer UNAVAILABLE")
        return
    loop.add_reader(fd, _drain)
    fastpath.loop_queue_set_open(1)


def _close() -> None:
    fastpath.loop_queue_set_open(0)  # queued calls are answered UNAVAILABLE
    # Answered calls are finished on the finisher thread; their done
    # callbacks may enter Python, which may be about to finalize.
    if not fastpath.loop_queue_wait_finished(5000):
        _log.error("pygrpc_ffi: answered async calls still unfinished after 5 s")


def _drain() -> None:
    while True:
        taken = take_calls()
        for address, binding, cancelled, payload in taken:
            if binding is None or payload is None:  # a cancel, after its call
                pending = _running.get(address)
                if pending is not None:
                    pending.cancel()
                continue
            try:
                _start(address, binding, cancelled, payload)
            except BaseException as exc:  # the call must still end
                _log.exception("pygrpc_ffi failed to start an async handler")
                _fail(address, binding, exc)
        if len(taken) < _TAKE:
            return


def _start(address: int, binding: runners.Binding, cancelled: bool,
           payload: memoryview) -> None:
    chain = binding.chain
    if chain is not None and chain.active:
        del payload
        _start_intercepted(binding, call_at(address))
        return
    request = request_at(address, payload)
    pending = runners.AsyncCall(binding, None, request, None, _running, address)
    _running[address] = pending
    pending.cancelled = cancelled
    try:
        result = binding.fn(request)
    except BaseException as exc:
        runners.end_async(pending, exc, None)
        return
    del request
    if type(result) is not _Coroutine and not runners.is_awaitable(result):
        runners.end_async(pending, None, result)  # registered as async, answered at once
        return
    runners.run_awaitable(pending, result)


def _fail(address: int, binding: runners.Binding, exc: BaseException) -> None:
    """Ends a taken call whose start failed, and drops its reference."""
    pending = _running.get(address)
    if pending is not None:
        runners.end_async(pending, exc, None)
        return
    call = call_at(address)
    try:
        if not calls.is_finished(call):
            calls.reset_response_quietly(call)
            finish_error(call, exc, binding)
    finally:
        calls.unref(call)


def _start_intercepted(binding: runners.Binding, call: Any) -> None:
    """Hands a taken call to an interceptor thread, or refuses it when too
    many already wait for one (blocked interceptors must not make the server
    hold calls without a limit)."""
    global _intercepting_calls
    with _intercept_lock:
        # Those beyond the threads' number wait for one.
        admitted = _intercepting_calls < _INTERCEPT_THREADS + _max_queued_calls
        if admitted:
            _intercepting_calls += 1
    if admitted:
        try:
            _intercepting.submit(_intercepted, binding, call)
        except BaseException:  # shut down: the caller ends the call
            _intercepted_done()
            raise
        return
    try:
        finish(call, StatusCode.RESOURCE_EXHAUSTED,
               f"server overloaded: {_max_queued_calls} calls already wait for an "
               "interceptor thread")
    finally:
        calls.unref(call)


def _intercepted_done() -> None:
    global _intercepting_calls
    with _intercept_lock:
        _intercepting_calls -= 1


def _intercepted(binding: runners.Binding, call: Any) -> None:
    """Runs a call through its service's interceptors (on a thread of
    _intercepting), then drops the reference the queue gave."""
    try:
        binding.chain.run(binding, call)
    except BaseException:
        _log.exception("pygrpc_ffi failed to run handler %s", binding.name)
        if not calls.is_finished(call):
            calls.reset_response_quietly(call)
            finish_error(call, RuntimeError("interceptor chain failed"), binding)
    finally:
        _intercepted_done()
        calls.unref(call)


_limit_from_environment()
_loop.on_start(_open)
_loop.on_stop(_close)
