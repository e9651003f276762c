"""Sync and async code bridged: awaitables driven from sync threads and
the event loop, and the few hook threads that run sync hooks of calls
whose handler runs on the loop (bounded by the queued-calls limit)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import threading
from collections.abc import Callable
from typing import Any

from .._binding import calls
from .._runtime import loop as _loop
from .._runtime import loop_calls as _loop_calls
from ._call import ServerCall

# Sync hooks of calls whose handler runs on the event loop run on these
# threads, never on the loop.  Jobs submitted and not done are counted; past
# the queued-calls limit, new intercepted calls are refused (RESOURCE_EXHAUSTED):
# the pool's queue holds at most that many jobs plus those of calls in flight.
_HOOK_THREADS = 4
_hook_pool = concurrent.futures.ThreadPoolExecutor(
    max_workers=_HOOK_THREADS, thread_name_prefix="pygrpc_ffi-hooks")
_hook_lock = threading.Lock()
_hook_jobs = 0  # submitted to _hook_pool, not done yet


def _wait(result: Any) -> None:
    """Runs an async hook's awaitable to completion."""
    if result is None or not inspect.isawaitable(result):
        return
    if _loop.is_loop_thread():
        _drive(result)
        return
    asyncio.run_coroutine_threadsafe(_as_coroutine(result), _loop.get_loop()).result()


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable


def _drive(awaitable: Any) -> Any:
    """The value of an awaitable that completes without suspending, driven
    on this thread without a loop (on the loop's own thread, which cannot
    wait for itself)."""
    coro = awaitable if inspect.iscoroutine(awaitable) else _as_coroutine(awaitable)
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("an awaitable suspended where pygrpc_ffi drives it without a loop "
                       "(for a call dispatched on the event loop's own thread, a grpc.aio "
                       "interceptor's intercept_service may await only its continuation)")


_UNSET = object()


def _adopt(context: contextvars.Context) -> None:
    """Sets, in the current context, every variable as ``context`` has it
    (what an interceptor set while it ran in a copy, on another thread)."""
    for var, value in context.items():
        if var.get(_UNSET) is not value:
            var.set(value)


async def _capturing(awaitable: Any) -> tuple[Any, contextvars.Context]:
    """The awaitable's value and the context it left (the task's copy)."""
    result = await awaitable
    return result, contextvars.copy_context()


def _await_on_loop(awaitable: Any) -> Any:
    """Awaits on the package's loop, from another thread, and returns the
    value, with the context variables the awaitable set adopted here.  On
    the loop thread itself (a call dispatched from an ``async def`` handler)
    waiting for the loop would deadlock: there the awaitable is driven
    without a loop, and may await only what completes at once."""
    if _loop.is_loop_thread():
        return _drive(awaitable)
    future = asyncio.run_coroutine_threadsafe(_capturing(awaitable), _loop.get_loop())
    result, context = future.result()
    _adopt(context)
    return result


def _call_capturing(fn: Callable[..., Any], *args: Any) -> tuple[Any, contextvars.Context]:
    return fn(*args), contextvars.copy_context()


def _hooks_busy() -> bool:
    """Whether the hook threads' backlog is at its limit (new calls wait)."""
    return _hook_jobs >= _HOOK_THREADS + _loop_calls._max_queued_calls


def _submit_hook_job(info: ServerCall, fn: Callable[..., Any], *args: Any,
                     owns_call: bool = False) -> concurrent.futures.Future[Any]:
    """Runs ``fn(*args)`` on a hook thread in a copy of this context.  The
    job holds a reference to the call (``owns_call``: the ServerCall's own,
    dropped by fn's caller, the after hooks) so that no hook ever reads a
    freed call, even one whose task was cancelled meanwhile."""
    global _hook_jobs
    call = info._call
    if call is not None and not owns_call:
        calls.ref(call)
    context = contextvars.copy_context()

    def job() -> Any:
        global _hook_jobs
        try:
            return context.run(fn, *args)
        finally:
            with _hook_lock:
                _hook_jobs -= 1
            if call is not None and not owns_call:
                calls.unref(call)

    with _hook_lock:
        _hook_jobs += 1
    try:
        return _hook_pool.submit(job)
    except BaseException:  # shut down: nothing will run the job
        with _hook_lock:
            _hook_jobs -= 1
        if call is not None and not owns_call:
            calls.unref(call)
        raise


async def _run_hook(hook: Callable[..., Any], is_async: bool, info: ServerCall,
                    *args: Any) -> None:
    """On the loop: an ``async def`` hook is awaited here; a sync one runs on
    a hook thread, awaited without blocking the loop (an awaitable it returns
    is then awaited here)."""
    if is_async:
        await hook(info, *args)
        return
    future = asyncio.wrap_future(_submit_hook_job(info, hook, info, *args))
    # A cancelled call does not stop its hook: it ends on its thread.
    result = await asyncio.shield(future)
    if inspect.isawaitable(result):
        await result


def _forget_parent_hooks() -> None:
    """In the child of a fork(): the parent's hook threads are not here."""
    global _hook_pool, _hook_lock, _hook_jobs
    _hook_pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=_HOOK_THREADS, thread_name_prefix="pygrpc_ffi-hooks")
    _hook_lock = threading.Lock()
    _hook_jobs = 0


_loop.on_fork_child(_forget_parent_hooks)
