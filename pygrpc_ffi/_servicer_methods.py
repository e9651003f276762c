"""The code that runs grpcio servicer methods on pygrpc_ffi calls: a
``grpc.RpcMethodHandler`` of any kind as a pygrpc_ffi handler, its request
parsed (a protobuf parser reads the zero-copy view) and its
:class:`~pygrpc_ffi.context.ServicerContext` made.  Used by
:mod:`pygrpc_ffi.servicer` (registering servicers) and by the interceptors
(a handler a grpcio interceptor returns)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from ._runtime.streams import StreamCancelled, current_stream
from .context import (
    DESERIALIZE_FAILED,
    SERIALIZE_FAILED,
    AioServicerContext,
    RequestsCancelled,
    ServicerContext,
    _ContextBase,
)
from .errors import GrpcError
from .request import GrpcRequest
from .response import GrpcResponse
from .status import StatusCode

_log = logging.getLogger("pygrpc_ffi")

METHOD_NOT_FOUND = "Method not found!"


def keep_request(request: Any) -> Any:
    """The request deserializer of native handlers seen through grpcio
    interceptors: the behaviour gets the GrpcRequest itself."""
    return request


def is_coroutine_function(fn: Any) -> bool:
    """Whether calling ``fn`` gives a coroutine (functions, bound methods,
    partials and objects with an ``async def __call__``)."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004
    return call is not None and not inspect.isroutine(fn) and inspect.iscoroutinefunction(call)


def is_protobuf_parser(fn: Any) -> bool:
    """Whether ``fn`` is a protobuf message class's ``FromString``, which
    takes a buffer (a memoryview) as well as bytes."""
    owner = getattr(fn, "__self__", None)
    if not isinstance(owner, type) or getattr(fn, "__name__", None) != "FromString":
        return False
    try:
        from google.protobuf.message import Message
    except ImportError:  # pragma: no cover
        return False
    return issubclass(owner, Message)


def payload_reader(deserializer: Callable[[Any], Any] | None) -> Callable[[GrpcRequest], Any]:
    """How to get a method's argument from a request: a protobuf parser reads
    the zero-copy view; any other deserializer, or none, gets bytes."""
    if deserializer is None:
        return lambda request: request.payload
    if deserializer is keep_request:  # a native handler seen through an interceptor
        return lambda request: request
    if is_protobuf_parser(deserializer):
        return lambda request: deserializer(request.payload_view)
    return lambda request: deserializer(request.payload)


def flags(handler: Any) -> tuple[bool, bool]:
    """grpcio's (request_streaming, response_streaming) of a method handler."""
    return (bool(getattr(handler, "request_streaming", False)),
            bool(getattr(handler, "response_streaming", False)))


_BEHAVIORS = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}


def stream_request(stream: Any) -> GrpcRequest:
    """A GrpcRequest (no payload) with what a request stream's context
    reports: method, metadata, deadline, peer."""
    info = stream.info
    request = GrpcRequest(info.service_name, info.method_name, b"", info.metadata,
                          deadline=info.deadline, peer=info.peer)
    request._stream = stream
    return request


def method_handler(handler: Any, path: str = "", *,
                   expose_exceptions: bool = False) -> Callable[[Any], Any]:
    """A pygrpc_ffi handler running a ``grpc.RpcMethodHandler`` of any kind
    (as built by ``grpc.unary_unary_rpc_method_handler`` and its siblings).
    Register it with the handler's ``request_streaming`` and
    ``response_streaming`` flags (see :class:`ServicerTarget`)."""
    request_streaming, response_streaming = flags(handler)
    kind = _BEHAVIORS[(request_streaming, response_streaming)]
    behavior = getattr(handler, kind, None)
    if behavior is None:
        def missing(arg: Any) -> Any:
            raise GrpcError(StatusCode.UNIMPLEMENTED, METHOD_NOT_FOUND)

        return missing
    read = payload_reader(getattr(handler, "request_deserializer", None))
    serialize = getattr(handler, "response_serializer", None)
    is_async = is_coroutine_function(behavior) or inspect.isasyncgenfunction(behavior)

    def parse(request: GrpcRequest) -> Any:
        try:
            return read(request)
        except Exception as exc:
            _log.error("%s: cannot deserialize the request: %s", path, str(exc))
            raise GrpcError(StatusCode.INTERNAL, DESERIALIZE_FAILED) from None

    if not request_streaming and not response_streaming:
        if is_async:
            # async def: the call goes straight to the loop (_binding/loop_queue.c).
            async def handle_async(request: GrpcRequest) -> Any:
                message = parse(request)
                context = AioServicerContext(request, expose_exceptions=expose_exceptions)
                return await arun(context, behavior, message, serialize)

            return handle_async

        def handle(request: GrpcRequest) -> Any:
            message = parse(request)
            context = ServicerContext(request, expose_exceptions=expose_exceptions)
            return run(context, behavior, message, serialize)

        return handle

    def context_of(arg: Any, cls: type[Any]) -> Any:
        stream = current_stream()
        if stream is None:
            raise RuntimeError(f"{path}: a streaming method runs on a streaming call only")
        request = stream_request(stream) if request_streaming else arg
        return cls(request, expose_exceptions=expose_exceptions, stream=stream, parse=read,
                   serialize=serialize, request_streaming=request_streaming,
                   response_streaming=response_streaming)

    if is_async:
        # async def: _runtime.streams runs it on the package's loop, in the call's task.
        async def handle_stream_async(arg: Any) -> Any:
            message = None if request_streaming else parse(arg)
            context = context_of(arg, AioServicerContext)
            if request_streaming:
                message = aparsed_requests(context, arg)
            if response_streaming:
                return arun_stream(context, behavior, message)
            return await arun(context, behavior, message, serialize)

        return handle_stream_async

    def handle_stream(arg: Any) -> Any:
        message = None if request_streaming else parse(arg)
        context = context_of(arg, ServicerContext)
        if request_streaming:
            message = parsed_requests(context, arg)
        if response_streaming:
            return run_stream(context, behavior, message)
        return run(context, behavior, message, serialize)

    return handle_stream


class HandlerCallDetails:
    """What a ``grpc.GenericRpcHandler.service`` receives."""

    __slots__ = ("invocation_metadata", "method")

    def __init__(self, method: str, invocation_metadata: tuple[tuple[str, Any], ...]) -> None:
        self.method = method
        self.invocation_metadata = invocation_metadata


def rejecter(handler: Any, path: str, binding: Any) -> tuple[Callable[[Any], Any], bool]:
    """A unary-unary handler an interceptor returned for a streaming method
    (what auth interceptors do to abort any call): its behaviour runs with
    no request, to set the status; an answer it gives is not sent."""
    behavior = handler.unary_unary
    expose = binding.expose_exceptions

    def request_of(arg: Any) -> Any:
        stream = current_stream()
        if isinstance(arg, GrpcRequest) or stream is None:
            return arg
        return stream_request(stream)

    def refused(path: str) -> GrpcError:
        return GrpcError(StatusCode.INTERNAL,
                         f"{path}: an interceptor answered a stream with a unary handler")

    if is_coroutine_function(behavior):
        async def reject_async(arg: Any) -> Any:
            context = AioServicerContext(request_of(arg), expose_exceptions=expose)
            await arun(context, behavior, None, None)
            raise refused(path)

        return reject_async, True

    def reject(arg: Any) -> Any:
        context = ServicerContext(request_of(arg), expose_exceptions=expose)
        run(context, behavior, None, None)
        raise refused(path)

    return reject, False


# ------------------------------------------------ running a method: the
# context computes the outcome from what the method did with it.


def run(context: _ContextBase, behavior: Callable[[Any, Any], Any], message: Any,
        serialize: Callable[[Any], Any] | None,
        serialize_error: str = SERIALIZE_FAILED) -> GrpcResponse:
    """Runs a sync method to its answer."""
    try:
        try:
            response = behavior(message, context)
        except Exception as exc:
            raise context._failure(exc) from exc
        return context._success(response, serialize, serialize_error)
    finally:
        context._end()


async def arun(context: _ContextBase, behavior: Callable[[Any, Any], Any], message: Any,
               serialize: Callable[[Any], Any] | None,
               serialize_error: str = SERIALIZE_FAILED) -> GrpcResponse:
    """Runs an async method to its answer."""
    try:
        try:
            response = await behavior(message, context)
        except (Exception, asyncio.CancelledError) as exc:
            raise context._failure(exc) from exc
        return context._success(response, serialize, serialize_error)
    finally:
        context._end()


def parsed_requests(context: _ContextBase, requests: Iterable[GrpcRequest]) -> Iterator[Any]:
    """The request iterator of a sync method: each message deserialized,
    read when asked for; RequestsCancelled if the call is cancelled."""
    try:
        for request in requests:
            yield context._parsed(request)
    except StreamCancelled:
        raise RequestsCancelled() from None


async def aparsed_requests(context: _ContextBase,
                           requests: AsyncIterator[GrpcRequest]) -> AsyncIterator[Any]:
    """The request iterator of an async method."""
    async for request in requests:
        yield context._parsed(request)


def run_stream(context: _ContextBase, behavior: Callable[[Any, Any], Any],
               arg: Any) -> Iterator[Any]:
    """Runs a sync response-streaming method: yields each message to
    write; the end of the stream carries the context's status."""
    try:
        try:
            responses = iter(behavior(arg, context))
        except Exception as exc:
            raise context._failure(exc) from exc
        try:
            while True:
                try:
                    response = next(responses)
                except StopIteration:
                    break
                except Exception as exc:
                    raise context._failure(exc) from exc
                yield context._message(response)
        finally:
            close = getattr(responses, "close", None)
            if close is not None:
                close()  # the method's own finally blocks run now
        context._end_stream()
    finally:
        context._end()


async def arun_stream(context: _ContextBase, behavior: Callable[[Any, Any], Any],
                      arg: Any) -> AsyncIterator[Any]:
    """Runs an async response-streaming method: an async generator, an
    ``async def`` that writes with ``context.write()``, or one that
    returns an iterable."""
    try:
        try:
            result = behavior(arg, context)
        except Exception as exc:
            raise context._failure(exc) from exc
        if hasattr(result, "__aiter__"):
            responses = result.__aiter__()
            try:
                while True:
                    try:
                        response = await responses.__anext__()
                    except StopAsyncIteration:
                        break
                    except (Exception, asyncio.CancelledError) as exc:
                        raise context._failure(exc) from exc
                    yield context._message(response)
            finally:
                aclose = getattr(responses, "aclose", None)
                if aclose is not None:
                    await aclose()
        else:
            try:
                if inspect.isawaitable(result):
                    result = await result  # it wrote with context.write()
                items = list(result) if result is not None else []
            except (Exception, asyncio.CancelledError) as exc:
                raise context._failure(exc) from exc
            for response in items:
                yield context._message(response)
        context._end_stream()
    finally:
        context._end()
