"""The chain of a service's interceptors, run around each of its calls."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .. import _runtime
from .._binding import calls
from .._runtime import loop as _loop
from .._runtime import streams as _streams
from .._runtime.answers import INTERNAL_MESSAGE, finish, finish_error
from .._servicer_methods import (
    METHOD_NOT_FOUND,
    HandlerCallDetails,
    flags,
    method_handler,
    rejecter,
)
from ..errors import GrpcError
from ..status import StatusCode
from . import _hooks
from ._call import (
    _KIND_REQUEST_STREAM,
    _KIND_RESPONSE_STREAM,
    Interceptor,
    ServerCall,
    _current_call,
)
from ._grpcio import _rpc_handler, is_grpc_interceptor
from ._hooks import (
    _adopt,
    _await_on_loop,
    _call_capturing,
    _hooks_busy,
    _run_hook,
    _submit_hook_job,
    _wait,
)

_log = logging.getLogger("pygrpc_ffi")


_tasks: set[asyncio.Future[Any]] = set()  # async after hooks running on the loop


def _overrides(obj: Any, name: str) -> bool:
    hook = getattr(obj, name, None)
    if hook is None:
        return False
    base = getattr(Interceptor, name)
    return getattr(hook, "__func__", None) is not base


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
        if _hooks._hook_jobs and _hooks_busy():
            finish(call, StatusCode.RESOURCE_EXHAUSTED,
                   f"server overloaded: {_hooks._hook_jobs} interceptor hooks wait for a thread")
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
