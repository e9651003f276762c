"""grpcio interceptors' side: recognising them, and the
``grpc.RpcMethodHandler`` they continue to (the servicer method's own, or
one that runs a native handler)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .._runtime import loop as _loop
from .._runtime import streams as _streams
from .._servicer_methods import keep_request
from ..response import GrpcResponse
from ._call import _KIND_REQUEST_STREAM, _KIND_RESPONSE_STREAM
from ._hooks import _as_coroutine


def is_grpc_interceptor(obj: Any) -> bool:
    """Whether ``obj`` is a grpcio-style server interceptor."""
    return callable(getattr(obj, "intercept_service", None))


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
