"""Interceptors: code that runs around every call of a :class:`GrpcService`.

Two styles, on both engines (the C++ host and the grpcio engine) and for the
four RPC kinds, for native handlers and grpcio servicers alike:

* grpcio's own ``grpc.ServerInterceptor`` and ``grpc.aio.ServerInterceptor``
  objects, unchanged: ``intercept_service(continuation, handler_call_details)``
  with ``handler_call_details.method`` ("/pkg.Service/Method") and
  ``.invocation_metadata``; returning None rejects the call with UNIMPLEMENTED
  "Method not found!" (as grpcio does); returning a wrapped
  ``RpcMethodHandler`` runs its behaviour with a grpcio-compatible
  ``ServicerContext``.  The first interceptor is the outermost, as in grpcio.
  A ``grpc.aio`` interceptor's ``intercept_service`` is a coroutine awaited
  on the package's event loop (where ``async def`` handlers run), as
  grpc.aio's server awaits it on its own: it may use the running loop and
  await anything (an async token check, ``asyncio.sleep``) before or after
  ``await continuation(...)``, and context variables it sets are seen by
  the handler.  The dispatching thread waits for it; a sync interceptor
  placed inside a ``grpc.aio`` one runs on a thread of the loop's executor,
  not on the loop.

* native :class:`Interceptor` objects, cheaper and simpler: ``before(call)``
  sees the request (service, method, metadata, peer, deadline) before the
  handler and may reject it by raising (a ``GrpcError`` for its status, any
  other exception mapped as a handler's is); ``after(call)`` sees the status,
  trailers and duration once the call is finished; ``on_request(call, msg)``
  and ``on_response(call, msg)`` see each message in and out (no copy: the
  request's payload is the zero-copy view).  Each hook may be ``async def``.
  Native interceptors run outside grpcio ones.

Where native hooks run (the rule: never blocking code on the package's event
loop, where every ``async def`` handler runs):

* ``async def`` hooks run on the event loop, awaited there (for a call of a
  sync handler, the dispatching thread waits for them); they must not block.
* sync hooks run on the thread that dispatched the call (a host's worker, or
  a thread of the package's own for ``async def`` handlers), except where
  the call is on the loop: ``on_request``/``on_response`` of an ``async
  def`` handler and ``after`` once its call is finished.  Those run on one
  of a few hook threads (``pygrpc_ffi-hooks``) and the call awaits them, so
  a sync hook may block (a slow log write, an exporter) and other calls go
  on.  The ``after`` hooks of such a call run in order on one hook thread
  (an ``async def`` one among them awaited on the loop from there), unless
  all of them are ``async def``: then they are awaited on the loop.
* hook jobs waiting for a thread are bounded by the queued-calls limit
  (``--max-queued-calls``): while that many wait, new calls of services with
  interceptors are refused at once with RESOURCE_EXHAUSTED, before any hook.
  A call dispatched from the loop thread itself (``GrpcService.acall`` from
  an ``async def`` handler, which runs a sync handler there too) runs its
  ``before`` hooks there.

The handler runs in a copy of the dispatching thread's ``contextvars``
context in which ``before`` hooks ran, so a context variable a hook sets
(an OpenTelemetry span, say) is seen by the handler, also by ``async def``
handlers and their tasks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import itertools
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from . import _loop, _loop_calls, _runtime, _streams
from ._answers import INTERNAL_MESSAGE, finish, finish_error
from ._binding import calls
from ._requests import decode_name, read_metadata
from ._servicer_methods import (
    METHOD_NOT_FOUND,
    HandlerCallDetails,
    flags,
    keep_request,
    method_handler,
    rejecter,
)
from .errors import GrpcError
from .metadata import Metadata
from .response import GrpcResponse
from .status import StatusCode

__all__ = ["Interceptor", "InterceptorChain", "ServerCall", "current_call",
           "is_grpc_interceptor"]

_log = logging.getLogger("pygrpc_ffi")

_KIND_REQUEST_STREAM = 1
_KIND_RESPONSE_STREAM = 2
_NO_DEADLINE = (1 << 63) - 1
_ids = itertools.count(1)
_CODES = tuple(StatusCode)
_tasks: set[asyncio.Future[Any]] = set()  # async after hooks running on the loop
# Sync hooks of calls whose handler runs on the event loop run on these
# threads, never on the loop.  Jobs submitted and not done are counted; past
# the queued-calls limit, new intercepted calls are refused (RESOURCE_EXHAUSTED):
# the pool's queue holds at most that many jobs plus those of calls in flight.
_HOOK_THREADS = 4
_hook_pool = concurrent.futures.ThreadPoolExecutor(
    max_workers=_HOOK_THREADS, thread_name_prefix="pygrpc_ffi-hooks")
_hook_lock = threading.Lock()
_hook_jobs = 0  # submitted to _hook_pool, not done yet
_pid = os.getpid()
_current_call: contextvars.ContextVar[ServerCall | None] = contextvars.ContextVar(
    "pygrpc_ffi_call", default=None)


def current_call() -> ServerCall | None:
    """The intercepted call whose handler (or hook) is running, or None."""
    return _current_call.get()


class _CallIdFilter(logging.Filter):
    """Adds the method and call id of the intercepted call being handled to
    the package's error lines (tracebacks of INTERNAL errors), so they can
    be matched with access-log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            info = _current_call.get()
            if info is not None and not getattr(record, "call_id", None):
                record.call_id = info.call_id
                record.method = info.full_method
                text = f" [{info.full_method} call_id={info.call_id}]".replace("%", "%%")
                record.msg = f"{record.msg}{text}"
        return True


_log.addFilter(_CallIdFilter())


class ServerCall:
    """One call as native interceptors see it.

    Before the handler: ``service``, ``method``, ``full_method``, ``kind``
    (PGF_KIND_*), ``metadata``, ``peer``, ``deadline`` (Unix seconds or
    None), ``call_id`` (unique in the process, also in access-log lines and
    in the log line of an INTERNAL traceback), ``state`` (a dict for the
    interceptors' own use).  Counted as messages pass: ``messages_in``,
    ``messages_out``, ``bytes_in``, ``bytes_out`` (payload bytes, when an
    interceptor asks for sizes or sees messages).  After the call:
    ``code``, ``message``, ``trailers``, ``duration`` (seconds)."""

    __slots__ = ("_call", "_done", "_id", "_message", "_metadata", "_state", "_trailers",
                 "bytes_in", "bytes_out", "code", "duration", "kind", "messages_in",
                 "messages_out", "method", "service", "start")

    def __init__(self, call: Any, kind: int) -> None:
        self._call: Any = call  # None once the after hooks ran
        self.service = decode_name(calls.service(call))
        self.method = decode_name(calls.method(call))
        self.kind = kind
        self._id = next(_ids)
        self.start = time.perf_counter()
        self._metadata: Metadata | None = None
        self._trailers: Metadata | None = None
        self._message: str | None = None
        self._done = [True]  # popped once: the outcome is read exactly once
        self._state: dict[str, Any] | None = None
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0
        self.code: StatusCode | None = None
        self.duration = 0.0

    @property
    def call_id(self) -> str:
        """Unique in the process (and across processes: it starts with the pid)."""
        return f"{_pid:x}-{self._id}"

    @property
    def state(self) -> dict[str, Any]:
        """A dict for the interceptors' own use, for the call's lifetime."""
        if self._state is None:
            self._state = {}
        return self._state

    @property
    def message(self) -> str:
        """The status message (after the call; read during the after hooks)."""
        if self._message is None:
            if self.code is None or self._call is None:
                return ""
            self._message = calls.status_message(self._call)
        return self._message

    @property
    def full_method(self) -> str:
        """``/package.Service/Method``."""
        return f"/{self.service}/{self.method}"

    @property
    def metadata(self) -> Metadata:
        """The request metadata (read from the call on first use)."""
        if self._metadata is None:
            if self._call is None:
                return Metadata()
            self._metadata = read_metadata(calls.request_metadata(self._call))
        return self._metadata

    @property
    def peer(self) -> str:
        """The client's address as the host gave it, e.g. ``ipv4:127.0.0.1:5123``."""
        if self._call is None:
            return ""
        return calls.peer(self._call)

    @property
    def deadline(self) -> float | None:
        """The call's deadline in Unix seconds, or None."""
        if self._call is None:
            return None
        ns = calls.deadline(self._call)
        return None if ns == _NO_DEADLINE else ns / 1e9

    @property
    def trailers(self) -> Metadata:
        """The trailing metadata sent with the status (after the call)."""
        if self._trailers is None:
            if self.code is None or self._call is None:
                return Metadata()
            self._trailers = read_metadata(calls.trailing_metadata(self._call))
        return self._trailers

    def _finished(self) -> bool:
        """Reads the outcome; False if it was already read (runs once)."""
        try:
            self._done.pop()  # atomic: a sync finish and an async one may race
        except IndexError:
            return False
        self.duration = time.perf_counter() - self.start
        self.code = _CODES[calls.status(self._call)]
        return True


class Interceptor:
    """Base class of native interceptors: override the hooks you need (each
    may be ``async def``).  Hooks that are not overridden cost nothing.
    ``needs_sizes = True`` asks for ``bytes_in``/``bytes_out`` counts."""

    needs_sizes = False

    def before(self, call: ServerCall) -> Any:
        """Before the handler runs; raise to reject the call with a status."""

    def after(self, call: ServerCall) -> Any:
        """After the call is finished: ``call.code``, ``.trailers``, ``.duration``."""

    def on_request(self, call: ServerCall, request: Any) -> Any:
        """Each request message (a GrpcRequest), before the handler gets it."""

    def on_response(self, call: ServerCall, response: Any) -> Any:
        """Each answer the handler gives (bytes-like, GrpcResponse or protobuf)."""


def is_grpc_interceptor(obj: Any) -> bool:
    """Whether ``obj`` is a grpcio-style server interceptor."""
    return callable(getattr(obj, "intercept_service", None))


def _overrides(obj: Any, name: str) -> bool:
    hook = getattr(obj, name, None)
    if hook is None:
        return False
    base = getattr(Interceptor, name)
    return getattr(hook, "__func__", None) is not base


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


def _runs_async(fn: Callable[..., Any], is_async: bool) -> bool:
    """Whether a call of ``fn`` runs on the event loop (an ``async def``
    unary handler's binding does not say so: its queue does)."""
    return is_async or _streams.is_async_handler(fn)


def _size(message: Any) -> int:
    payload = getattr(message, "payload", message)
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return len(payload)
    byte_size = getattr(payload, "ByteSize", None)
    return int(byte_size()) if callable(byte_size) else 0


class InterceptorChain:
    """The interceptors of one service, in order, shared by its handlers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.native: tuple[Any, ...] = ()
        self.grpc: tuple[Any, ...] = ()
        self._before: tuple[Callable[[ServerCall], Any], ...] = ()
        self._after: tuple[Callable[[ServerCall], Any], ...] = ()
        self._on_request: tuple[Callable[[ServerCall, Any], Any], ...] = ()
        self._on_response: tuple[Callable[[ServerCall, Any], Any], ...] = ()
        self._after_async = False  # every after hook is async def
        self._messages = False
        self._asynchronous = False
        self.active = False

    def add(self, interceptor: Any) -> None:
        """Appends an interceptor (grpcio-style or native).  TypeError for an
        object that is neither."""
        grpc_style = is_grpc_interceptor(interceptor)
        hooks = [name for name in ("before", "after", "on_request", "on_response")
                 if _overrides(interceptor, name)]
        if not grpc_style and not hooks and not isinstance(interceptor, Interceptor):
            raise TypeError(f"{type(interceptor).__name__} is not an interceptor: it has no "
                            "intercept_service (grpcio) nor before/after/on_request/on_response")
        with self._lock:
            if grpc_style:
                self.grpc += (interceptor,)
                # Native handlers look like grpc.aio methods only to a chain
                # of grpc.aio interceptors, else like grpcio sync methods.
                self._asynchronous = all(
                    inspect.iscoroutinefunction(i.intercept_service) for i in self.grpc)
            else:
                self.native += (interceptor,)
                for name in hooks:
                    attr = f"_{name}"
                    setattr(self, attr, (*getattr(self, attr), getattr(interceptor, name)))
                self._after_async = all(inspect.iscoroutinefunction(h) for h in self._after)
                if getattr(interceptor, "needs_sizes", False) or {
                        "on_request", "on_response"} & set(hooks):
                    self._messages = True
            self.active = True

    # ------------------------------------------------------------- calls

    def run(self, binding: Any, call: Any) -> None:
        """Runs a call through the interceptors and its handler (from the
        dispatch trampoline).  While the hook threads' backlog is full, the
        call is refused with RESOURCE_EXHAUSTED, before any hook runs."""
        if _hook_jobs and _hooks_busy():
            finish(call, StatusCode.RESOURCE_EXHAUSTED,
                   f"server overloaded: {_hook_jobs} interceptor hooks wait for a thread")
            return
        calls.ref(call)  # dropped once the after hooks ran
        info = ServerCall(call, binding.kind)
        contextvars.copy_context().run(self._start, info, binding, call)

    def _start(self, info: ServerCall, binding: Any, call: Any) -> None:
        _current_call.set(info)  # this call's context copy only
        named = _runtime.Binding(binding.fn, binding.name, binding.expose_exceptions,
                                 binding.kind, binding.is_async)
        try:
            for hook in self._before:
                result = hook(info)
                if result is not None:
                    _wait(result)
            fn, is_async = binding.fn, binding.is_async
            if self.grpc:
                resolved = self._resolve(binding, info, named)
                if resolved is None:
                    finish(call, StatusCode.UNIMPLEMENTED, METHOD_NOT_FOUND)
                    self._finished(info, _runs_async(binding.fn, binding.is_async))
                    return
                fn, is_async = resolved
            if self._messages:
                fn = self._count_messages(fn, binding.kind, is_async, info)
        except BaseException as exc:
            finish_error(call, exc, named)
            self._finished(info, _runs_async(binding.fn, binding.is_async))
            return
        runs_async = _runs_async(fn, is_async)
        named.fn, named.is_async = fn, is_async
        named.on_finish = lambda: self._finished(info, runs_async)
        try:
            _runtime.run(named, call)
        except BaseException:
            _log.exception("pygrpc_ffi failed to run handler %s", named.name)
            if not calls.is_finished(call):
                calls.reset_response_quietly(call)
                finish(call, StatusCode.INTERNAL, INTERNAL_MESSAGE)
        if calls.is_finished(call):
            # A sync handler; async ones call on_finish, and whichever
            # of the two comes first runs the after hooks.
            self._finished(info, runs_async)

    def _finished(self, info: ServerCall, is_async: bool) -> None:
        """Runs the after hooks once the call is finished, then drops the
        call.  For the call of an ``async def`` handler (or any call on the
        event loop) they never run on the finishing thread if any is sync:
        all run, in order, on a hook thread (an ``async def`` one awaited on
        the loop from there); if every one is ``async def``, they are awaited
        on the loop in a task."""
        if not info._finished():
            return
        if self._after and (is_async or _loop.is_loop_thread()):
            try:
                if self._after_async:
                    _loop.submit(self._start_aafter, info)
                else:
                    _submit_hook_job(info, self._after_hooks, info, owns_call=True)
                return
            except BaseException:  # no thread, no loop: run them here
                _log.exception("pygrpc_ffi cannot run the after hooks of %s off the loop",
                               info.full_method)
        self._after_hooks(info)

    def _after_hooks(self, info: ServerCall) -> None:
        try:
            for hook in self._after:
                try:
                    result = hook(info)
                    if inspect.isawaitable(result):
                        _wait(result)
                except Exception:
                    _log.exception("interceptor %r failed after %s", hook, info.full_method)
        finally:
            call, info._call = info._call, None
            calls.unref(call)

    def _start_aafter(self, info: ServerCall) -> None:
        """On the loop: awaits the ``async def`` after hooks in a task."""
        task = _loop.start_task(self._aafter(info))
        if not task.done():
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)

    async def _aafter(self, info: ServerCall) -> None:
        try:
            for hook in self._after:
                try:
                    await hook(info)
                except Exception:
                    _log.exception("interceptor %r failed after %s", hook, info.full_method)
        finally:
            call, info._call = info._call, None
            calls.unref(call)

    # ----------------------------------------------------- grpcio style

    def _resolve(self, binding: Any, info: ServerCall,
                 named: Any) -> tuple[Callable[[Any], Any], bool] | None:
        """Runs the grpcio interceptors' ``intercept_service``: None if they
        rejected the call, else the handler function to run and whether it
        is async."""
        original = _rpc_handler(binding, self._asynchronous)
        details = HandlerCallDetails(info.full_method, tuple(info.metadata.pairs()))
        chain = self.grpc

        # resolve runs on the dispatching thread (sync interceptors there);
        # a grpc.aio interceptor and those inside it are awaited on the loop
        # (aresolve), a sync one inside those on an executor thread.
        def resolve(index: int, hcd: Any) -> Any:
            if index == len(chain):
                return original
            interceptor = chain[index]
            if inspect.iscoroutinefunction(interceptor.intercept_service):
                return _await_on_loop(aresolve(index, hcd))
            return interceptor.intercept_service(lambda next_hcd: resolve(index + 1, next_hcd),
                                                 hcd)

        async def aresolve(index: int, hcd: Any) -> Any:
            if index == len(chain):
                return original
            interceptor = chain[index]
            if inspect.iscoroutinefunction(interceptor.intercept_service):
                async def acontinue(next_hcd: Any) -> Any:
                    return await aresolve(index + 1, next_hcd)

                return await interceptor.intercept_service(acontinue, hcd)
            # Sync code may block: not on the loop.
            handler, context = await asyncio.get_running_loop().run_in_executor(
                None, contextvars.copy_context().run, _call_capturing,
                interceptor.intercept_service, lambda next_hcd: resolve(index + 1, next_hcd),
                hcd)
            _adopt(context)
            return handler

        handler = resolve(0, details)
        if handler is None:
            return None
        if handler is original:
            return binding.fn, binding.is_async
        request_streaming, response_streaming = flags(handler)
        kind = (_KIND_REQUEST_STREAM if request_streaming else 0) | (
            _KIND_RESPONSE_STREAM if response_streaming else 0)
        if kind != binding.kind:
            if kind != 0:
                raise GrpcError(StatusCode.INTERNAL,
                                f"an interceptor changed {info.full_method}'s kind")
            return rejecter(handler, info.full_method, binding)
        fn = method_handler(handler, info.full_method,
                            expose_exceptions=binding.expose_exceptions)
        return fn, _streams.is_async_handler(fn)

    # ---------------------------------------------------------- messages

    def _count_messages(self, fn: Callable[[Any], Any], kind: int, is_async: bool,
                        info: ServerCall) -> Callable[[Any], Any]:
        """fn with every request and answer passed to the message hooks."""
        on_request, on_response = self._on_request, self._on_response
        # On the loop, sync hooks run on a hook thread (see _run_hook).
        aon_request = tuple((h, inspect.iscoroutinefunction(h)) for h in on_request)
        aon_response = tuple((h, inspect.iscoroutinefunction(h)) for h in on_response)

        def seen_in(message: Any) -> None:
            info.messages_in += 1
            info.bytes_in += _size(message)
            for hook in on_request:
                _wait(hook(info, message))

        def seen_out(message: Any) -> None:
            info.messages_out += 1
            info.bytes_out += _size(message)
            for hook in on_response:
                _wait(hook(info, message))

        async def aseen_in(message: Any) -> None:
            info.messages_in += 1
            info.bytes_in += _size(message)
            for hook, hook_is_async in aon_request:
                await _run_hook(hook, hook_is_async, info, message)

        async def aseen_out(message: Any) -> None:
            info.messages_out += 1
            info.bytes_out += _size(message)
            for hook, hook_is_async in aon_response:
                await _run_hook(hook, hook_is_async, info, message)

        def requests_in(requests: Iterator[Any]) -> Iterator[Any]:
            for request in requests:
                seen_in(request)
                yield request

        async def arequests_in(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for request in requests:
                await aseen_in(request)
                yield request

        def answers_out(answers: Any) -> Iterator[Any]:
            iterator = iter(answers)
            try:
                for answer in iterator:
                    seen_out(answer)
                    yield answer
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()

        async def aanswers_out(answers: Any) -> AsyncIterator[Any]:
            if inspect.isawaitable(answers):
                answers = await answers
            if not hasattr(answers, "__aiter__"):
                for answer in answers:
                    await aseen_out(answer)
                    yield answer
                return
            try:
                async for answer in answers:
                    await aseen_out(answer)
                    yield answer
            finally:
                aclose = getattr(answers, "aclose", None)
                if aclose is not None:
                    await aclose()

        def arg_in(arg: Any) -> Any:
            if kind & _KIND_REQUEST_STREAM:
                return arequests_in(arg) if is_async else requests_in(arg)
            seen_in(arg)
            return arg

        async def aarg_in(arg: Any) -> Any:
            """arg_in, on the loop."""
            if kind & _KIND_REQUEST_STREAM:
                return arequests_in(arg)
            await aseen_in(arg)
            return arg

        async def one_out(result: Any) -> Any:
            answer = await result
            await aseen_out(answer)
            return answer

        if kind & _KIND_RESPONSE_STREAM:
            if is_async:
                async def stream_async(arg: Any) -> AsyncIterator[Any]:
                    async for answer in aanswers_out(fn(await aarg_in(arg))):
                        yield answer

                return stream_async

            def stream_sync(arg: Any) -> Iterator[Any]:
                return answers_out(fn(arg_in(arg)))

            return stream_sync

        if is_async:
            async def unary_async(arg: Any) -> Any:
                return await one_out(fn(await aarg_in(arg)))

            return unary_async

        def unary(arg: Any) -> Any:
            result = fn(arg_in(arg))
            if inspect.isawaitable(result) and not isinstance(result, (bytes, bytearray)):
                return one_out(result)
            seen_out(result)
            return result

        return unary


def _rpc_handler(binding: Any, asynchronous: bool) -> Any:
    """The ``grpc.RpcMethodHandler`` grpcio interceptors continue to: the
    servicer method's own, or one that runs the native handler, with
    ``async def`` behaviours for grpc.aio interceptors (``asynchronous``)
    and plain ones for grpcio's sync interceptors."""
    cached = binding.rpc_handler
    if cached is not None and cached[0] == asynchronous:
        return cached[1]
    handler = getattr(binding.fn, "rpc_method_handler", None)
    if handler is None:
        handler = _native_rpc_handler(binding, asynchronous)
    binding.rpc_handler = (asynchronous, handler)
    return handler


def _answer(result: Any) -> Any:
    """A native unary answer as grpcio interceptors expect one: a message,
    not an iterable (bytes are wrapped in a GrpcResponse)."""
    return GrpcResponse(result) if isinstance(result, (bytes, bytearray, memoryview)) else result


def _on_loop(awaitable: Any) -> Any:
    """Waits, on a thread that is not the loop's, for an awaitable run on
    the package's loop."""
    return asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), _loop.get_loop()).result()


async def _next_or_end(answers: Any) -> tuple[bool, Any]:
    try:
        return True, await answers.__anext__()
    except StopAsyncIteration:
        return False, None


def _sync_answers(answers: Any) -> Iterator[Any]:
    """An async generator's answers, pulled from a sync thread."""
    try:
        while True:
            more, answer = _on_loop(_next_or_end(answers))
            if not more:
                return
            yield answer
    finally:
        aclose = getattr(answers, "aclose", None)
        if aclose is not None:
            _on_loop(aclose())


async def _async_requests(requests: Iterator[Any]) -> AsyncIterator[Any]:
    """A sync request iterator read from the loop without blocking it."""
    loop = asyncio.get_running_loop()
    end = object()
    while True:
        request = await loop.run_in_executor(None, next, requests, end)
        if request is end:
            return
        yield request


def _native_rpc_handler(binding: Any, asynchronous: bool) -> Any:
    import grpc

    fn, kind = binding.fn, binding.kind
    is_async = binding.is_async or _streams.is_async_handler(fn)
    options = {"request_deserializer": keep_request, "response_serializer": None}
    request_stream = bool(kind & _KIND_REQUEST_STREAM)

    def arg_for(arg: Any) -> Any:
        """A request iterator of the kind the native handler iterates."""
        if not request_stream:
            return arg
        if is_async and not hasattr(arg, "__aiter__"):
            return _async_requests(arg)
        return arg

    if not kind & _KIND_RESPONSE_STREAM:
        if asynchronous:
            async def one_async(arg: Any, context: Any) -> Any:
                result = fn(arg_for(arg))
                if inspect.isawaitable(result):
                    result = await result
                return _answer(result)

            behavior: Any = one_async
        else:
            def one(arg: Any, context: Any) -> Any:
                result = fn(arg_for(arg))
                if inspect.isawaitable(result) and not isinstance(result, bytes):
                    result = _on_loop(result)
                return _answer(result)

            behavior = one
        factory = (grpc.stream_unary_rpc_method_handler if request_stream
                   else grpc.unary_unary_rpc_method_handler)
        return factory(behavior, **options)
    if asynchronous:
        async def many_async(arg: Any, context: Any) -> AsyncIterator[Any]:
            result = fn(arg_for(arg))
            if inspect.isawaitable(result):
                result = await result
            if hasattr(result, "__aiter__"):
                async for answer in result:
                    yield answer
            else:
                for answer in result:
                    yield answer

        behavior = many_async
    else:
        def many(arg: Any, context: Any) -> Any:
            result = fn(arg_for(arg))
            if hasattr(result, "__aiter__"):
                return _sync_answers(result)
            return result

        behavior = many
    factory = (grpc.stream_stream_rpc_method_handler if request_stream
               else grpc.unary_stream_rpc_method_handler)
    return factory(behavior, **options)
