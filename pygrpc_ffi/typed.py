"""Typed handlers: protobuf messages in and out instead of bytes.

``GrpcService.register_method(service, method, fn, request_type=Req,
response_type=Resp)`` (and ``register_handler`` and the ``method``
decorator, with the same keywords) wrap ``fn`` so that:

- the request is parsed with ``Req.FromString`` straight from the host's
  zero-copy payload view (upb makes the one copy protobuf needs, in C); a
  request that does not parse ends the call with INVALID_ARGUMENT
  "request is not a valid <full name of Req>", and ``fn`` is not called;
- ``fn(message)`` -- or ``fn(message, context)`` if ``fn`` takes two
  positional parameters -- returns a ``Resp`` (serialized for you), or a
  :class:`~pygrpc_ffi.GrpcResponse` whose payload is one, or bytes as an
  escape hatch; a message of another type ends the call with INTERNAL and a
  log line;
- ``context`` is a :class:`~pygrpc_ffi.context.ServicerContext` (an
  :class:`~pygrpc_ffi.context.AioServicerContext` for ``async def``), so
  typed handlers can read metadata and the deadline, set trailers, abort
  with rich status details, and so on, exactly as grpcio servicers do;
- errors follow pygrpc_ffi's rules: raise :class:`~pygrpc_ffi.GrpcError` (or
  a mapped exception), or use ``context.abort``.

With only ``request_type``, ``fn`` may return anything a plain handler may;
with only ``response_type``, ``fn`` receives the :class:`~pygrpc_ffi.GrpcRequest`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._runtime import INTERNAL_MESSAGE
from ._servicer_methods import arun, is_coroutine_function, run
from .context import AioServicerContext, ServicerContext
from .errors import InvalidArgument
from .request import GrpcRequest
from .response import GrpcResponse

__all__ = ["takes_context", "typed_handler"]

_BYTES_LIKE = (bytes, bytearray, memoryview)


def takes_context(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts a second positional argument (the context)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    positional = 0
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY,
                              inspect.Parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


def _invalid_request_message(request_type: Any) -> str:
    name = getattr(getattr(request_type, "DESCRIPTOR", None), "full_name",
                   getattr(request_type, "__name__", "the request type"))
    return f"request is not a valid {name}"


def _parser(request_type: Any) -> Callable[[GrpcRequest], Any]:
    if request_type is None:
        return lambda request: request
    from_string = request_type.FromString
    message = _invalid_request_message(request_type)

    def parse(request: GrpcRequest) -> Any:
        try:
            return from_string(request.payload_view)
        except Exception:
            raise InvalidArgument(message) from None

    return parse


def _serializer(response_type: Any) -> Callable[[Any], Any] | None:
    if response_type is None:
        return None
    name = getattr(getattr(response_type, "DESCRIPTOR", None), "full_name",
                   getattr(response_type, "__name__", "?"))

    def serialize(response: Any) -> Any:
        if isinstance(response, _BYTES_LIKE):
            return response
        if not isinstance(response, response_type):
            raise TypeError(f"returned {type(response).__name__}; expected {name}")
        return response.SerializeToString()

    return serialize


def _check_result(result: Any, serialize: Callable[[Any], Any] | None) -> Any:
    if serialize is None:
        return result
    if isinstance(result, GrpcResponse):
        if isinstance(result.payload, _BYTES_LIKE):
            return result
        return GrpcResponse(serialize(result.payload), result.metadata, result.trailers,
                            compress=result.compress)
    return serialize(result)


def typed_handler(fn: Callable[..., Any], request_type: Any = None, response_type: Any = None,
                  *, expose_exceptions: bool = False) -> Callable[[GrpcRequest], Any]:
    """``fn`` as a plain pygrpc_ffi handler; see the module docstring."""
    parse = _parser(request_type)
    serialize = _serializer(response_type)
    is_async = is_coroutine_function(fn)
    error = INTERNAL_MESSAGE

    if takes_context(fn):
        if is_async:
            # async def: the call goes straight to the loop (_binding/loop_queue.c).
            async def handle_async_context(request: GrpcRequest) -> Any:
                message = parse(request)
                context = AioServicerContext(request, expose_exceptions=expose_exceptions)
                return await arun(context, fn, message, serialize, error)

            return handle_async_context

        def handle_context(request: GrpcRequest) -> Any:
            message = parse(request)
            context = ServicerContext(request, expose_exceptions=expose_exceptions)
            return run(context, fn, message, serialize, error)

        return handle_context

    if request_type is None or response_type is None:
        if is_async:
            async def handle_async_partly(request: GrpcRequest) -> Any:
                return _check_result(await fn(parse(request)), serialize)

            return handle_async_partly

        def handle_partly(request: GrpcRequest) -> Any:
            return _check_result(fn(parse(request)), serialize)

        return handle_partly
    # Both types: the per-call path, with parse and serialize inline.
    from_string = request_type.FromString
    invalid = _invalid_request_message(request_type)
    if is_async:
        async def handle_async(request: GrpcRequest) -> Any:
            try:
                message = from_string(request.payload_view)
            except Exception:
                raise InvalidArgument(invalid) from None
            result = await fn(message)
            if type(result) is response_type:
                return result.SerializeToString()
            return _check_result(result, serialize)

        return handle_async

    def handle(request: GrpcRequest) -> Any:
        try:
            message = from_string(request.payload_view)
        except Exception:
            raise InvalidArgument(invalid) from None
        result = fn(message)
        if type(result) is response_type:
            return result.SerializeToString()
        return _check_result(result, serialize)

    return handle


def typed_stream_handler(fn: Callable[..., Any], request_type: Any, response_type: Any,
                         kind: int) -> Callable[[Any], Any]:
    """``fn`` of a streaming method as a plain streaming handler: each
    request message parsed (an unparsable one ends the call with
    INVALID_ARGUMENT), each answer checked and serialized."""
    parse = _parser(request_type)
    serialize = _serializer(response_type)
    request_stream, response_stream = bool(kind & 1), bool(kind & 2)
    is_async = is_coroutine_function(fn) or inspect.isasyncgenfunction(fn)

    if not is_async:
        def handle(arg: Any) -> Any:
            messages = (parse(r) for r in arg) if request_stream else parse(arg)
            result = fn(messages)
            if response_stream:
                return (_check_result(item, serialize) for item in result)
            return _check_result(result, serialize)

        return handle

    async def parsed(requests: Any) -> Any:
        async for request in requests:
            yield parse(request)

    async def answers(result: Any) -> Any:
        if inspect.isawaitable(result):
            result = await result
        if hasattr(result, "__aiter__"):
            async for item in result:
                yield _check_result(item, serialize)
        else:
            for item in result:
                yield _check_result(item, serialize)

    async def unary_answer(result: Any) -> Any:
        return _check_result(await result, serialize)

    def handle_async(arg: Any) -> Any:
        result = fn(parsed(arg) if request_stream else parse(arg))
        return answers(result) if response_stream else unary_answer(result)

    return handle_async
