"""GrpcService: a registry of handlers in C, and calls through the C path."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from . import _runtime
from ._binding import calls, fastpath, streams
from ._binding import registry as c_registry
from ._binding.base import (
    EEXIST,
    ENOTFOUND,
    FLAG_NONBLOCKING,
    KIND_CLIENT_STREAMING,
    KIND_SERVER_STREAMING,
    KIND_UNARY,
    NULL,
    PgfError,
)
from ._binding.trampolines import RELEASE_HANDLER
from ._host.calls import CallResult as CallResult  # its public path
from ._host.calls import new_call, read_result
from ._host.local_stream import LocalStream
from ._runtime import loop as _loop
from ._runtime import loop_calls as _loop_calls
from ._runtime.requests import decode_name_bytes
from ._runtime.streams import is_async_handler
from .errors import Unimplemented
from .interceptors import InterceptorChain
from .metadata import MetadataLike, iter_pairs
from .request import GrpcRequest
from .response import GrpcResponse
from .status import StatusCode
from .typed import typed_handler, typed_stream_handler

F = TypeVar("F", bound=Callable[..., Any])


def _handler_callable(handler: Any) -> tuple[Callable[[GrpcRequest], Any], str]:
    method = getattr(handler, "handle_request", None)
    if method is not None and callable(method):
        return method, f"{type(handler).__qualname__}.handle_request"
    if callable(handler):
        return handler, getattr(handler, "__qualname__", repr(handler))
    raise TypeError(
        # "implement GrpcHandler protocol" is the text Spikard's tests match.
        "Handler must implement GrpcHandler protocol (a handle_request(request) method) "
        f"or be callable, not {type(handler).__name__}"
    )


class HandlerNotFound(Unimplemented, ValueError):
    """:meth:`GrpcService.handle_request` for a method nothing is registered
    for: a ValueError, as in Spikard, and an UNIMPLEMENTED GrpcError."""


def _supports(handler: Any, name: str) -> bool:
    probe = getattr(handler, name, None)
    return bool(probe()) if callable(probe) else False


def _kind(request_streaming: bool, response_streaming: bool) -> int:
    """The PGF_KIND_* of a method, from grpcio's two flags."""
    return (KIND_CLIENT_STREAMING if request_streaming else 0) | (
        KIND_SERVER_STREAMING if response_streaming else 0)


def _encode(name: str, what: str) -> bytes:
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"invalid {what} name {name!r}")
    return name.encode("utf-8")


class _Waiter:
    """Completion of one call dispatched from Python.  The caller keeps its own
    reference to the call until it returns, so it can always cancel or read it."""

    __slots__ = ("call", "event", "finished_at", "future", "handle", "keep", "loop",
                 "stream_handle")

    def __init__(self, call: Any, keep: Any) -> None:
        self.call = call
        self.keep = keep  # the request bytes, valid until the call is finished
        self.event = threading.Event()
        self.handle: Any = None
        self.stream_handle: Any = None  # the call's LocalStream, if it streams
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[CallResult] | None = None
        self.finished_at = 0.0  # time.monotonic() when the call finished

    def done(self, call: Any) -> None:
        self.finished_at = time.monotonic()
        _runtime.handles.pop(self.handle)
        self.handle = None  # a handle keeps its object: no cycle
        if self.stream_handle is not None:
            # Finished: the handler asks its host for nothing more.
            _runtime.handles.pop(self.stream_handle)
            self.stream_handle = None
        # Never leave a buffer export in a reference cycle: the GC cannot clear it.
        self.keep = None
        if self.future is not None and self.loop is not None:
            result = read_result(call)
            try:
                self.loop.call_soon_threadsafe(_resolve, self.future, result)
            except RuntimeError:  # the caller's loop is closed
                pass
            return
        self.event.set()


def _cancel_late(call: Any) -> bool:
    """Cancels a call that missed its deadline; False if it finished first (its
    own answer stands).  The caller must hold a reference to the call."""
    calls.cancel(call)
    return bool(calls.is_cancelled(call))


DEADLINE_EXCEEDED = CallResult(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")


def _start(registry: Any, call: Any, waiter: _Waiter) -> None:
    """pgf_dispatch_async with the waiter as its completion; raises (and
    forgets the waiter) if the dispatch did not start."""
    try:
        c_registry.dispatch_async(registry, call, waiter.handle)
    except PgfError as exc:
        _runtime.handles.pop(waiter.handle)
        waiter.keep = None
        raise exc.as_builtin("cannot dispatch the call") from None


def _dispatch_on_thread(service: GrpcService, registry: Any, call: Any,
                        waiter: _Waiter) -> None:
    """Dispatches a call (reference owned) into a registry the caller
    acquired (released here), and wakes its waiter if it did not start."""
    try:
        if not _dispatched(registry, call, waiter.handle):
            calls.finish_quietly(call, int(StatusCode.INTERNAL), b"dispatch failed")
            waiter.done(call)
    finally:
        service._release()
        calls.unref(call)


def _dispatched(registry: Any, call: Any, handle: Any) -> bool:
    """pgf_dispatch_async with ``handle``'s done; False if no handler took
    the call (it is left unfinished then)."""
    try:
        c_registry.dispatch_async(registry, call, handle)
    except PgfError:
        return False
    return True


def _resolve(future: asyncio.Future[CallResult], result: CallResult) -> None:
    if not future.done():
        future.set_result(result)


class GrpcService:
    """Handlers by service name or by method, kept in a C registry.

    Hosts dispatch calls into the registry of :func:`default_service`; other
    services are for tests and for embedding several registries.  With
    ``expose_exceptions=True``, INTERNAL errors carry the exception's text to
    the client; by default they carry a generic message.

    ``interceptors``: grpcio ``ServerInterceptor`` / ``grpc.aio.ServerInterceptor``
    objects and native :class:`~pygrpc_ffi.interceptors.Interceptor` objects
    that run around every call of every handler of the service, on any host
    (see :mod:`pygrpc_ffi.interceptors`); more with :meth:`add_interceptor`.
    """

    def __init__(self, *, expose_exceptions: bool = False, interceptors: Any = (),
                 _registry: Any = None) -> None:
        if _registry is None:
            registry = c_registry.new()
            self._finalizer: weakref.finalize[Any, Any] | None = weakref.finalize(
                self, c_registry.free, registry
            )
        else:
            registry = _registry
            self._finalizer = None
        self._registry = registry
        self.expose_exceptions = expose_exceptions
        self._lock = threading.Lock()
        # Calls using the registry right now; close() leaves the freeing to
        # the last of them, so no lookup ever reads a freed registry.
        self._users = 0
        self._closed = False
        self._services: dict[str, Any] = {}
        self._methods: dict[tuple[str, str], Any] = {}
        # Unary untyped handlers as handle_request calls them: (service, method or None).
        self._direct: dict[tuple[str, str | None], Callable[[GrpcRequest], Any]] = {}
        self._chain = InterceptorChain()
        for interceptor in interceptors:
            self.add_interceptor(interceptor)

    def add_interceptor(self, interceptor: Any) -> None:
        """Appends an interceptor (innermost so far) for every call of the
        service, also of handlers registered before.  TypeError if it is
        neither a grpcio interceptor nor a native one."""
        self._chain.add(interceptor)

    @property
    def interceptors(self) -> tuple[Any, ...]:
        """The native interceptors, then the grpcio ones, in order."""
        return self._chain.native + self._chain.grpc

    # ------------------------------------------------------------ registry

    def _typed(self, fn: Callable[..., Any], request_type: Any, response_type: Any,
               kind: int = 0) -> Callable[[Any], Any]:
        if request_type is None and response_type is None:
            return fn
        if kind:
            return typed_stream_handler(fn, request_type, response_type, kind)
        return typed_handler(fn, request_type, response_type,
                             expose_exceptions=self.expose_exceptions)

    def _binding(self, fn: Callable[[Any], Any], name: str, kind: int = 0,
                 is_async: bool = False) -> Any:
        binding = _runtime.Binding(fn, name, self.expose_exceptions, kind, is_async,
                                   self._chain)
        return _runtime.handles.add(binding)

    def _register(self, svc: bytes, method: bytes | None, kind: int, fn: Callable[..., Any],
                  name: str, is_async: bool) -> None:
        """Registers a handler in C; PgfError (PGF_EEXIST if taken)."""
        if kind == KIND_UNARY and is_async:
            # Queued for the event loop by C, on the host's thread.
            handle = self._binding(fn, name)
            data = _runtime.unary_handler_data(handle, _runtime.handles.get(handle))
            c_registry.register(self._registry, svc, method, KIND_UNARY | FLAG_NONBLOCKING,
                                _loop_calls.handler_function(), data, fastpath.UNARY_RELEASE)
            return
        if kind == KIND_UNARY:
            handle = self._binding(fn, name)
            data = _runtime.unary_handler_data(handle, _runtime.handles.get(handle))
            if method is not None:
                c_registry.register_method(self._registry, svc, method, fastpath.UNARY_HANDLE,
                                           data, fastpath.UNARY_RELEASE)
                return
            c_registry.register_service(self._registry, svc, fastpath.UNARY_HANDLE, data,
                                        fastpath.UNARY_RELEASE)
            return
        c_registry.register(self._registry, svc, method, kind, fastpath.PY_HANDLE,
                            self._binding(fn, name, kind, is_async), RELEASE_HANDLER)

    def register_handler(self, service_name: str, handler: Any, *,
                         request_type: Any = None, response_type: Any = None,
                         request_streaming: bool | None = None,
                         response_streaming: bool | None = None) -> None:
        """Routes every method of ``service_name`` to ``handler``.

        ValueError if the service is already registered; TypeError if the
        handler has no ``handle_request`` and is not callable.  With
        ``request_type``/``response_type`` (protobuf message classes) the
        handler is typed: see :mod:`pygrpc_ffi.typed`.  A handler whose
        ``supports_streaming_requests()`` / ``supports_streaming_responses()``
        return True (or the keywords of the same meaning) serves every method
        as that kind of stream, see :meth:`register_method`.
        """
        fn, name = _handler_callable(handler)
        if request_streaming is None:
            request_streaming = _supports(handler, "supports_streaming_requests")
        if response_streaming is None:
            response_streaming = _supports(handler, "supports_streaming_responses")
        kind = _kind(request_streaming, response_streaming)
        is_async = is_async_handler(fn)
        direct = fn if kind == KIND_UNARY and request_type is response_type is None \
            else None
        fn = self._typed(fn, request_type, response_type, kind)
        raw = _encode(service_name, "service")
        with self._lock:
            try:
                self._register(raw, None, kind, fn, name, is_async)
            except PgfError as exc:
                if exc.code == EEXIST:
                    raise ValueError(f"service {service_name!r} is already registered") from None
                raise exc.as_builtin(f"cannot register {service_name!r}") from None
            self._services[service_name] = handler
            if direct is not None:
                self._direct[(service_name, None)] = direct

    def register_method(self, service_name: str, method_name: str,
                        handler: Callable[..., Any], *,
                        request_type: Any = None, response_type: Any = None,
                        request_streaming: bool = False,
                        response_streaming: bool = False) -> None:
        """Routes ``/service_name/method_name`` to ``handler``, ahead of any
        handler registered for the whole service.  With ``request_type``/
        ``response_type`` (protobuf message classes) the handler is typed:
        it gets the parsed message, see :mod:`pygrpc_ffi.typed`.

        ``request_streaming``: the handler gets an iterator of requests (an
        async iterator if it is ``async def``) instead of one request.
        ``response_streaming``: it returns an iterable of answers, typically
        by being a generator (an async generator if ``async def``).  As
        grpcio's ``RpcMethodHandler`` names them."""
        fn, name = _handler_callable(handler)
        kind = _kind(request_streaming, response_streaming)
        is_async = is_async_handler(fn)
        direct = fn if kind == KIND_UNARY and request_type is response_type is None \
            else None
        fn = self._typed(fn, request_type, response_type, kind)
        svc = _encode(service_name, "service")
        method = _encode(method_name, "method")
        with self._lock:
            try:
                self._register(svc, method, kind, fn, name, is_async)
            except PgfError as exc:
                if exc.code == EEXIST:
                    raise ValueError(
                        f"method {service_name}/{method_name} is already registered") from None
                raise exc.as_builtin(f"cannot register {service_name}/{method_name}") from None
            self._methods[(service_name, method_name)] = handler
            if direct is not None:
                self._direct[(service_name, method_name)] = direct

    def method(self, service_name: str, method_name: str | None = None, *,
               request_type: Any = None, response_type: Any = None,
               request_streaming: bool = False,
               response_streaming: bool = False) -> Callable[[F], F]:
        """Decorator form of :meth:`register_method`; the method name defaults
        to the function's name."""

        def decorate(fn: F) -> F:
            self.register_method(service_name, method_name or fn.__name__, fn,
                                 request_type=request_type, response_type=response_type,
                                 request_streaming=request_streaming,
                                 response_streaming=response_streaming)
            return fn

        return decorate

    def unregister_handler(self, service_name: str) -> None:
        """Removes a service registration; calls in flight finish normally.
        KeyError if it is not registered."""
        raw = _encode(service_name, "service")
        with self._lock:
            try:
                c_registry.unregister_service(self._registry, raw)
            except PgfError as exc:
                if exc.code == ENOTFOUND:
                    raise KeyError(service_name) from None
                raise exc.as_builtin(f"cannot unregister {service_name!r}") from None
            self._services.pop(service_name, None)
            self._direct.pop((service_name, None), None)

    def unregister_method(self, service_name: str, method_name: str) -> None:
        """Removes a method registration.  KeyError if it is not registered."""
        svc = _encode(service_name, "service")
        method = _encode(method_name, "method")
        with self._lock:
            try:
                c_registry.unregister_method(self._registry, svc, method)
            except PgfError as exc:
                if exc.code == ENOTFOUND:
                    raise KeyError(f"{service_name}/{method_name}") from None
                raise exc.as_builtin(f"cannot unregister {service_name}/{method_name}") from None
            self._methods.pop((service_name, method_name), None)
            self._direct.pop((service_name, method_name), None)

    def get_handler(self, service_name: str) -> Any | None:
        """The handler registered for the whole service, or None."""
        return self._services.get(service_name)

    def get_method_handler(self, service_name: str, method_name: str) -> Any | None:
        """The handler registered for one method, or None."""
        return self._methods.get((service_name, method_name))

    def has_service(self, service_name: str) -> bool:
        """Whether any handler is registered for the service or its methods."""
        try:
            raw = _encode(service_name, "service")
        except ValueError:
            return False
        try:
            registry = self._acquire()
        except RuntimeError:  # closed
            return False
        try:
            return c_registry.has_service(registry, raw)
        finally:
            self._release()

    def has_method(self, service_name: str, method_name: str) -> bool:
        """Whether a call to ``/service_name/method_name`` finds a handler."""
        try:
            svc = _encode(service_name, "service")
            method = _encode(method_name, "method")
        except ValueError:
            return False
        try:
            registry = self._acquire()
        except RuntimeError:  # closed
            return False
        try:
            return c_registry.has_method(registry, svc, method)
        finally:
            self._release()

    def list_services(self) -> list[str]:
        """Registered service names, sorted."""
        try:
            registry = self._acquire()
        except RuntimeError:  # closed
            return []
        try:
            return [decode_name_bytes(raw)
                    for raw in c_registry.service_names(registry)]
        finally:
            self._release()

    def clear(self) -> None:
        """Unregisters every handler registered through this object."""
        with self._lock:
            services, methods = list(self._services), list(self._methods)
        for name in services:
            try:
                self.unregister_handler(name)
            except KeyError:
                pass
        for svc, method in methods:
            try:
                self.unregister_method(svc, method)
            except KeyError:
                pass

    def close(self) -> None:
        """Unregisters everything and frees the registry (not the default one).

        A call racing close either runs on the live registry (which is freed
        when the last such call is done) or raises RuntimeError."""
        self.clear()
        if self._finalizer is None:
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # Never hand the registry to C again (the shim rejects NULL).
            self._registry = NULL
            free = self._users == 0
        if free:
            self._finalizer()

    def _acquire(self) -> Any:
        """The registry, kept alive until the matching :meth:`_release`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the service is closed")
            self._users += 1
            return self._registry

    def _dispatch_wait(self, call: Any) -> bool:
        """``pgf_dispatch`` into this service's registry, which a racing
        :meth:`close` cannot free meanwhile (for hosts written in Python: the
        grpcio engine, the testing kit).  False, the call left undispatched,
        once the service is closed or if no handler took it."""
        with self._lock:
            if self._closed:
                return False
            self._users += 1
            registry = self._registry
        try:
            c_registry.dispatch(registry, call)
        except PgfError:
            return False
        finally:
            self._release()
        return True

    def _dispatch_async(self, call: Any, handle: Any) -> bool:
        """``pgf_dispatch_async`` into this service's registry (held while the
        dispatch reads it), the done trampoline getting ``handle``.  False,
        the call left unfinished, once the service is closed or if no handler
        took it."""
        try:
            registry = self._acquire()
        except RuntimeError:
            return False
        try:
            return _dispatched(registry, call, handle)
        finally:
            self._release()

    def _method_kind(self, service_name: str, method_name: str) -> int:
        """The PGF_KIND_* a call to the method is served as; negative if no
        handler would take it (or the service is closed)."""
        try:
            svc, method = _encode(service_name, "service"), _encode(method_name, "method")
            registry = self._acquire()
        except (RuntimeError, ValueError):
            return ENOTFOUND
        try:
            return c_registry.method_kind(registry, svc, method)
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            free = self._closed and self._users == 0
        if free and self._finalizer is not None:
            self._finalizer()

    # --------------------------------------------------------------- calls

    def _new_call(self, service_name: str, method_name: str, payload: Any,
                  metadata: MetadataLike, timeout: float | None) -> tuple[Any, Any]:
        """A new call; ``payload`` None: no request set (a request stream)."""
        return new_call(f"/{service_name}/{method_name}", payload, iter_pairs(metadata),
                        timeout=timeout, peer="local", lowercase_keys=True)

    def call(self, service_name: str, method_name: str, payload: Any = b"",
             metadata: MetadataLike = (), timeout: float | None = None) -> CallResult:
        """Calls a method through the C dispatch, as a host would, and waits.

        With ``timeout``, the handler sees the deadline, and a call that is not
        finished in time is cancelled and reported as DEADLINE_EXCEEDED.
        From an ``async def`` handler, use :meth:`acall`: waiting here would
        block the event loop that async handlers need (RuntimeError).
        """
        if _loop.is_loop_thread():
            raise RuntimeError("GrpcService.call() would block the event loop of async "
                               "handlers; use 'await service.acall(...)' there")
        call, keep = self._new_call(service_name, method_name, payload, metadata, timeout)
        try:
            registry = self._acquire()
        except BaseException:
            calls.unref(call)
            raise
        if timeout is None:
            try:
                try:
                    c_registry.dispatch(registry, call)
                except PgfError as exc:
                    raise exc.as_builtin("cannot dispatch the call") from None
                return read_result(call)
            finally:
                calls.unref(call)
                self._release()
        waiter = _Waiter(call, keep)
        waiter.handle = _runtime.handles.add(waiter)
        deadline = time.monotonic() + timeout
        try:
            try:
                # The registry is read until the handler started (or, for a
                # sync handler, returned: it runs on this thread), not while
                # the call waits.
                _start(registry, call, waiter)
            finally:
                self._release()
            if not waiter.event.wait(max(deadline - time.monotonic(), 0.0)):
                if _cancel_late(call):
                    return DEADLINE_EXCEEDED
                waiter.event.wait()
            # A client's deadline passes whether or not the handler blocks it.
            if waiter.finished_at > deadline:
                return DEADLINE_EXCEEDED
            return read_result(call)
        finally:
            # The dispatch holds its own reference until the call is finished.
            calls.unref(call)

    def call_stream(self, service_name: str, method_name: str, requests: Any = (),
                    metadata: MetadataLike = (), timeout: float | None = None) -> CallResult:
        """Calls a method of any kind through the C dispatch, as a host would,
        and waits: ``requests`` is the request stream (an iterable of
        bytes-like or protobuf messages, read as the handler asks for them);
        the result's ``messages`` is the response stream.  A method that
        takes one request gets UNIMPLEMENTED unless ``requests`` holds exactly
        one, as from the hosts."""
        if _loop.is_loop_thread():
            raise RuntimeError("GrpcService.call_stream() would block the event loop of async "
                               "handlers")
        svc, method = _encode(service_name, "service"), _encode(method_name, "method")
        registry = self._acquire()
        try:
            kind = c_registry.method_kind(registry, svc, method)
            stream = LocalStream(())
            payload: Any = None
            if kind >= 0 and not kind & KIND_CLIENT_STREAMING:
                items = list(requests)
                if len(items) != 1:
                    self._release()
                    return CallResult(StatusCode.UNIMPLEMENTED,
                                      f'"/{service_name}/{method_name}" requires exactly one '
                                      "request message.")
                payload = items[0]
            else:
                stream = LocalStream(requests)
            call, keep = self._new_call(service_name, method_name, payload, metadata, timeout)
        except BaseException:
            self._release()
            raise
        dispatched = False
        try:
            waiter = _Waiter(call, keep)
            if kind >= 0 and kind != KIND_UNARY:
                waiter.stream_handle = _runtime.handles.add(stream)
                try:
                    streams.set_stream(call, waiter.stream_handle)
                except PgfError as exc:
                    _runtime.handles.pop(waiter.stream_handle)
                    waiter.stream_handle = None
                    raise exc.as_builtin("cannot make a stream") from None
            waiter.handle = _runtime.handles.add(waiter)
            # A sync handler runs on the dispatching thread: not this one, so
            # that the deadline holds whatever the handler does.
            threading.Thread(target=_dispatch_on_thread,
                             args=(self, registry, calls.ref(call), waiter),
                             name="pygrpc_ffi-call", daemon=True).start()
            dispatched = True
            if not waiter.event.wait(None if timeout is None else max(timeout, 0.0)) \
                    and _cancel_late(call):
                return CallResult(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded",
                                  messages=tuple(stream.responses))
            stream.take_write(call)  # a message queued just before the finish
            result = read_result(call)
            messages = tuple(stream.responses)
            if not kind & KIND_SERVER_STREAMING and result.ok:
                messages = (result.payload,)
            return dataclasses.replace(result, messages=messages)
        finally:
            if not dispatched:
                self._release()
            stream.close()
            calls.unref(call)

    async def acall(self, service_name: str, method_name: str, payload: Any = b"",
                    metadata: MetadataLike = (), timeout: float | None = None) -> CallResult:
        """Like :meth:`call`, without blocking the running event loop."""
        loop = asyncio.get_running_loop()
        call, keep = self._new_call(service_name, method_name, payload, metadata, timeout)
        try:
            registry = self._acquire()
        except BaseException:
            calls.unref(call)
            raise
        waiter = _Waiter(call, keep)
        waiter.loop = loop
        future: asyncio.Future[CallResult] = loop.create_future()
        waiter.future = future
        waiter.handle = _runtime.handles.add(waiter)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            try:
                _start(registry, call, waiter)
            finally:
                self._release()
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            result = await asyncio.wait_for(asyncio.shield(future), remaining)
        except asyncio.TimeoutError:
            if _cancel_late(call):
                return DEADLINE_EXCEEDED
            result = await future
        except asyncio.CancelledError:  # the caller went away: so does its call
            calls.cancel(call)
            raise
        finally:
            calls.unref(call)
        # A sync handler ran on this thread: its lateness shows only now.
        if deadline is not None and waiter.finished_at > deadline:
            return DEADLINE_EXCEEDED
        return result

    async def handle_request(self, request: GrpcRequest) -> GrpcResponse:
        """Answers a GrpcRequest from Python, as Spikard's router did.

        A unary handler registered through this object is called directly
        (a sync one on a worker thread): its own exception propagates, with
        its traceback, and its answer comes back as a GrpcResponse.  Anything
        else registered for the method (streaming or typed handlers, handlers
        registered in C or by another GrpcService on this registry) is
        dispatched through the C path, where a non-OK status raises GrpcError.
        Nothing registered: :class:`HandlerNotFound`, a ValueError ("No
        handler registered ...") that is also an UNIMPLEMENTED GrpcError.
        Hosts and :meth:`call` always see the mapped status."""
        service_name, method_name = request.service_name, request.method_name
        with self._lock:
            direct = self._direct.get((service_name, method_name))
            if direct is None and (service_name, method_name) not in self._methods:
                direct = self._direct.get((service_name, None))
        if direct is None:
            if not self.has_method(service_name, method_name):
                raise HandlerNotFound(
                    f"No handler registered for service {service_name!r}, "
                    f"method {method_name!r}")
            result = await self.acall(service_name, method_name, request.payload_view,
                                      request.metadata, request.time_remaining())
            return result.to_response()
        if is_async_handler(direct):
            answer = await direct(request)
        else:
            answer = await asyncio.to_thread(direct, request)
            if asyncio.iscoroutine(answer):
                answer = await answer
        return _as_response(answer)


def _as_response(answer: Any) -> GrpcResponse:
    """A handler's answer as handle_request returns it."""
    if isinstance(answer, GrpcResponse):
        return answer
    if isinstance(answer, (bytes, bytearray, memoryview)):
        return GrpcResponse(bytes(answer))
    serialize = getattr(answer, "SerializeToString", None)
    if callable(serialize):
        return GrpcResponse(serialize())
    raise TypeError(f"handler returned {type(answer).__name__}: expected GrpcResponse, "
                    "bytes-like or a protobuf message")


_default: GrpcService | None = None
_default_lock = threading.Lock()


def default_service() -> GrpcService:
    """The process-wide service that embedding hosts dispatch to."""
    global _default
    with _default_lock:
        if _default is None:
            _default = GrpcService(_registry=c_registry.default())
            _runtime.on_shutdown(_default.clear)
        return _default
