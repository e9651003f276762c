"""Testing kit: call a service's handlers through the C path, as a host would.

::

    from pygrpc_ffi.testing import CallError, TestClient

    client = TestClient(service)
    reply = client.unary("/grpc.testing.TestService/UnaryCall", request)
    reply = client.unary(stub.UnaryCall, request, metadata=[("k", "v")], timeout=1)
    stub = TestServiceStub(client.channel)          # generated stubs work too
    reply = stub.UnaryCall(request)

    try:
        client.unary(path, request)
    except CallError as err:
        err.code(), err.details(), err.trailing_metadata(), err.status

Every call is a real ``pgf_call`` dispatched into the service's C registry
(``pgf_dispatch``), so handlers see what they see under a host: the
zero-copy payload view, metadata, deadline, and cancellation when the
timeout passes.  A call that ends with a non-OK status
raises :class:`CallError`, which quacks like grpcio's client error
(``code()``, ``details()``, ``trailing_metadata()`` with the status details
as ``grpc-status-details-bin``), so ``grpc_status.rpc_status.from_call(err)``
works on it.  Hypothesis strategies for metadata, payloads, deadlines and
messages are in :mod:`pygrpc_ffi.testing.strategies`.

Streaming calls of every kind go through the same C path
(:meth:`TestClient.stream`, or the stub's streaming methods on
:attr:`TestClient.channel`): the request iterator is read as the handler
asks for messages, each response message arrives as the handler writes it,
and ``cancel()`` or the timeout cancels the call under the handler::

    replies = stub.StreamingOutputCall(request)     # a StreamingCall
    first = next(replies)
    replies.cancel()                                # the handler sees it
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .._binding import calls
from .._binding.base import NULL
from .._host.calls import new_call, read_result
from ..metadata import Metadata, MetadataLike, MetadataValue, iter_pairs
from ..service import CallResult, GrpcService, default_service
from ..status import StatusCode
from ._streaming import LOCALLY_CANCELLED, StreamingCall, messages_of

try:
    import grpc

    _ErrorBase: Any = grpc.RpcError
except ImportError:  # pragma: no cover - grpcio is optional
    grpc = None
    _ErrorBase = Exception

__all__ = ["LOCALLY_CANCELLED", "CallError", "StreamingCall", "TestChannel", "TestClient"]

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def _grpc_code(code: StatusCode) -> Any:
    return code.to_grpc() if grpc is not None else code


class CallError(_ErrorBase):  # type: ignore[misc]
    """A call that ended with a non-OK status.

    ``status_code`` (a :class:`~pygrpc_ffi.StatusCode`), ``message``,
    ``trailers`` and ``status_details`` (the serialized
    ``google.rpc.Status``, or None) hold the outcome; the grpcio-style
    methods ``code()`` (a ``grpc.StatusCode``), ``details()``,
    ``initial_metadata()`` and ``trailing_metadata()`` give it as a grpcio
    client would see it.
    """

    def __init__(self, result: CallResult) -> None:
        super().__init__(f"{result.code.name}: {result.message}" if result.message
                         else result.code.name)
        self.result = result
        self.status_code = result.code
        self.message = result.message
        self.trailers = result.trailing_metadata
        self.status_details = result.details

    def code(self) -> Any:
        """The status, as a ``grpc.StatusCode`` (if grpcio is installed)."""
        return _grpc_code(self.status_code)

    def details(self) -> str:
        """The status message."""
        return self.message

    def initial_metadata(self) -> tuple[tuple[str, MetadataValue], ...]:
        """The initial metadata the handler sent (none when a call fails)."""
        return self.result.initial_metadata.pairs()

    def trailing_metadata(self) -> tuple[tuple[str, MetadataValue], ...]:
        """The trailers, with the status details as ``grpc-status-details-bin``."""
        pairs = self.trailers.pairs()
        if self.status_details is not None:
            pairs = (*pairs, (STATUS_DETAILS_KEY, self.status_details))
        return pairs

    @property
    def status(self) -> Any:
        """The ``google.rpc.Status`` sent as status details, or None."""
        if self.status_details is None:
            return None
        from google.rpc import status_pb2

        return status_pb2.Status.FromString(self.status_details)


class _CallInfo:
    """What ``with_call`` returns beside the response (grpc.Call-like)."""

    def __init__(self, result: CallResult) -> None:
        self.result = result

    def code(self) -> Any:
        return _grpc_code(self.result.code)

    def details(self) -> str:
        return self.result.message

    def initial_metadata(self) -> tuple[tuple[str, MetadataValue], ...]:
        return self.result.initial_metadata.pairs()

    def trailing_metadata(self) -> tuple[tuple[str, MetadataValue], ...]:
        return self.result.trailing_metadata.pairs()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None


def _split_path(path: str) -> tuple[str, str]:
    parts = path.strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"method path must be /package.Service/Method, not {path!r}")
    return parts[0], parts[1]


def _message_class(descriptor: Any) -> Any:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


def _response_parser_for_path(path: str) -> Callable[[bytes], Any]:
    """The response type's parser, from the default descriptor pool."""
    from google.protobuf import descriptor_pool

    service_name, method_name = _split_path(path)
    try:
        service = descriptor_pool.Default().FindServiceByName(service_name)
        method = service.methods_by_name[method_name]
    except KeyError:
        raise LookupError(
            f"{path}: no such method in the default descriptor pool (import its _pb2 module, "
            "or pass response_type=)") from None
    return _message_class(method.output_type).FromString  # type: ignore[no-any-return]


class _UnaryUnary:
    """A unary method of a :class:`TestChannel` (grpc.UnaryUnaryMultiCallable-like)."""

    def __init__(self, client: TestClient, method: str,
                 request_serializer: Callable[[Any], bytes] | None,
                 response_deserializer: Callable[[bytes], Any] | None) -> None:
        self.client = client
        self.method = method
        self.request_serializer = request_serializer
        self.response_deserializer = response_deserializer

    def with_call(self, request: Any, timeout: float | None = None,
                  metadata: MetadataLike = None, **_options: Any) -> tuple[Any, _CallInfo]:
        payload = self.request_serializer(request) if self.request_serializer else request
        result = self.client.call_raw(self.method, payload, metadata=metadata, timeout=timeout)
        if not result.ok:
            raise CallError(result)
        response = (self.response_deserializer(result.payload) if self.response_deserializer
                    else result.payload)
        return response, _CallInfo(result)

    def __call__(self, request: Any, timeout: float | None = None,
                 metadata: MetadataLike = None, **options: Any) -> Any:
        return self.with_call(request, timeout, metadata, **options)[0]


def _serialized(requests: Iterable[Any], serialize: Callable[[Any], bytes] | None
                ) -> Iterator[Any]:
    for request in requests:
        yield serialize(request) if serialize is not None else request


class _StreamMethod:
    """A streaming method of a :class:`TestChannel` (grpcio's
    UnaryStream/StreamUnary/StreamStream multicallables): each call is a
    :class:`StreamingCall` through the C path."""

    def __init__(self, client: TestClient, method: str, request_streaming: bool,
                 response_streaming: bool, request_serializer: Callable[[Any], bytes] | None,
                 response_deserializer: Callable[[bytes], Any] | None) -> None:
        self.client = client
        self.method = method
        self.request_streaming = request_streaming
        self.response_streaming = response_streaming
        self.request_serializer = request_serializer
        self.response_deserializer = response_deserializer

    def _start(self, request: Any, timeout: float | None,
               metadata: MetadataLike) -> StreamingCall:
        requests = request if self.request_streaming else (request,)
        return self.client.stream(self.method, _serialized(requests, self.request_serializer),
                                  metadata=metadata, timeout=timeout,
                                  response_type=_Raw(self.response_deserializer))

    def with_call(self, request: Any, timeout: float | None = None,
                  metadata: MetadataLike = None, **_options: Any) -> tuple[Any, Any]:
        """For a unary response: the response and the call; CallError if
        the status is not OK."""
        call = self._start(request, timeout, metadata)
        responses = list(call)
        if len(responses) != 1:
            raise CallError(CallResult(StatusCode.INTERNAL,
                                       f"{len(responses)} response messages for a unary answer"))
        return responses[0], call

    def __call__(self, request: Any, timeout: float | None = None,
                 metadata: MetadataLike = None, **options: Any) -> Any:
        if self.response_streaming:
            return self._start(request, timeout, metadata)
        return self.with_call(request, timeout, metadata, **options)[0]

    def future(self, request: Any, timeout: float | None = None,
               metadata: MetadataLike = None, **_options: Any) -> _Future:
        """For a unary response: the call as a grpc.Future-like object."""
        return _Future(self._start(request, timeout, metadata))


class _Future:
    """A unary-response call in flight (grpc.Future and grpc.Call-like)."""

    def __init__(self, call: StreamingCall) -> None:
        self.call = call

    def cancel(self) -> bool:
        return self.call.cancel()

    def cancelled(self) -> bool:
        return self.call.cancelled()

    def running(self) -> bool:
        return self.call.is_active()

    def done(self) -> bool:
        return not self.call.is_active()

    def result(self, timeout: float | None = None) -> Any:
        """The response; CallError if the status is not OK."""
        self.call.result(timeout)
        responses = list(self.call)
        return responses[0] if responses else None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        outcome = self.call.result(timeout)
        return None if outcome.ok else CallError(outcome)

    def code(self) -> Any:
        return self.call.code()

    def details(self) -> str:
        return self.call.details()

    def initial_metadata(self) -> tuple[tuple[str, MetadataValue], ...]:
        return self.call.initial_metadata()

    def trailing_metadata(self) -> tuple[tuple[str, MetadataValue], ...]:
        return self.call.trailing_metadata()


class _Raw:
    """A response type given by its parser (None: bytes)."""

    def __init__(self, parse: Callable[[bytes], Any] | None) -> None:
        self.FromString = parse if parse is not None else bytes


class TestChannel:
    """A grpc.Channel look-alike for generated stubs: every method, of every
    kind, calls the service through the C path."""

    __test__ = False  # not a pytest test class

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def unary_unary(self, method: str, request_serializer: Any = None,
                    response_deserializer: Any = None, **_options: Any) -> _UnaryUnary:
        return _UnaryUnary(self.client, method, request_serializer, response_deserializer)

    def unary_stream(self, method: str, request_serializer: Any = None,
                     response_deserializer: Any = None, **_options: Any) -> _StreamMethod:
        return _StreamMethod(self.client, method, False, True, request_serializer,
                             response_deserializer)

    def stream_unary(self, method: str, request_serializer: Any = None,
                     response_deserializer: Any = None, **_options: Any) -> _StreamMethod:
        return _StreamMethod(self.client, method, True, False, request_serializer,
                             response_deserializer)

    def stream_stream(self, method: str, request_serializer: Any = None,
                      response_deserializer: Any = None, **_options: Any) -> _StreamMethod:
        return _StreamMethod(self.client, method, True, True, request_serializer,
                             response_deserializer)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        pass

    def unsubscribe(self, callback: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> TestChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class TestClient:
    """Calls a GrpcService's handlers through the C path, every RPC kind.

    ``timeout`` (per call, or ``default_timeout``): the handler sees the
    deadline, and a call still running when it passes is cancelled and
    reported as DEADLINE_EXCEEDED (see :meth:`call_raw`).  ``peer`` is what
    handlers see as the client's address.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, service: GrpcService | None = None, *,
                 default_timeout: float | None = None, peer: str = "local") -> None:
        self.service = service if service is not None else default_service()
        self.default_timeout = default_timeout
        self.peer = peer
        self.channel = TestChannel(self)

    def _timeout(self, timeout: float | None) -> float | None:
        return self.default_timeout if timeout is None else timeout

    def _dispatch(self, call: Any) -> None:
        if not self.service._dispatch_wait(call):
            raise RuntimeError("the service is closed")

    def _kind(self, service_name: str, method_name: str) -> int:
        """The method's PGF_KIND_*, or a negative number if nothing serves it."""
        return self.service._method_kind(service_name, method_name)

    def _check_open(self) -> None:
        if self.service._registry == NULL:
            raise RuntimeError("the service is closed")

    def call_raw(self, path: str, payload: Any = b"", *, metadata: MetadataLike = None,
                 timeout: float | None = None) -> CallResult:
        """Calls ``path`` with raw bytes; the :class:`~pygrpc_ffi.CallResult`,
        whatever the status.  A streaming method gets ``payload`` as its one
        request message (see :meth:`call_stream_raw`).

        Without a timeout the handler runs on this thread.  With one, it runs
        on a thread of its own, as under a host: when the timeout passes the
        call is cancelled (``pgf_call_cancel``: ``is_active()`` turns False,
        callbacks run, async handlers are cancelled) and DEADLINE_EXCEEDED is
        returned at once, while the handler finishes in the background.
        """
        service_name, method_name = _split_path(path)
        self._check_open()
        if self._kind(service_name, method_name) > 0:  # a stream of one request
            return self.call_stream_raw(path, [payload], metadata=metadata, timeout=timeout)
        timeout = self._timeout(timeout)
        call, buf = new_call(path, payload, iter_pairs(metadata), timeout=timeout,
                             peer=self.peer)
        if timeout is None:
            try:
                self._dispatch(call)
                return read_result(call)
            finally:
                calls.unref(call)
                del buf  # the request buffer lived as long as the dispatch
        finished = threading.Event()

        def run(request_buffer: Any) -> None:
            try:  # the request buffer lives as long as the dispatch
                self.service._dispatch_wait(call)
            finally:
                finished.set()
                calls.unref(call)  # the worker's reference

        calls.ref(call)
        threading.Thread(target=run, args=(buf,), name="pygrpc_ffi-testclient",
                         daemon=True).start()
        try:
            if finished.wait(max(timeout, 0.0)):
                return read_result(call)
            calls.cancel(call)
            return CallResult(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        finally:
            calls.unref(call)

    async def acall_raw(self, path: str, payload: Any = b"", *,
                        metadata: MetadataLike = None,
                        timeout: float | None = None) -> CallResult:
        """:meth:`call_raw` without blocking the running event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, functools.partial(self.call_raw, path, payload, metadata=metadata,
                                    timeout=timeout))

    def unary_raw(self, path: str, payload: Any = b"", *, metadata: MetadataLike = None,
                  timeout: float | None = None) -> bytes:
        """Calls ``path`` with raw bytes; the response bytes, or CallError."""
        result = self.call_raw(path, payload, metadata=metadata, timeout=timeout)
        if not result.ok:
            raise CallError(result)
        return result.payload

    def _resolve(self, method: Any, response_type: Any) -> tuple[str, Callable[[bytes], Any]]:
        path: str
        parser: Callable[[bytes], Any] | None = None
        if isinstance(method, str):
            path = method if method.startswith("/") else f"/{method}"
        elif isinstance(method, (_UnaryUnary, _StreamMethod)):
            path, parser = method.method, method.response_deserializer
        elif hasattr(method, "containing_service") and hasattr(method, "output_type"):
            path = f"/{method.containing_service.full_name}/{method.name}"
            parser = _message_class(method.output_type).FromString
        elif hasattr(method, "_method"):  # a grpcio channel's multicallable
            raw = method._method
            path = raw.decode() if isinstance(raw, bytes) else str(raw)
            parser = getattr(method, "_response_deserializer", None)
        else:
            raise TypeError("method must be a path, a stub method or a MethodDescriptor, "
                            f"not {type(method).__name__}")
        if response_type is bytes:
            parser = bytes
        elif response_type is not None:
            parser = response_type.FromString
        if parser is None:
            parser = _response_parser_for_path(path)
        return path, parser

    def unary_with_call(self, method: Any, request: Any, *, metadata: MetadataLike = None,
                        timeout: float | None = None,
                        response_type: Any = None) -> tuple[Any, CallResult]:
        """Like :meth:`unary`, also returning the :class:`~pygrpc_ffi.CallResult`
        (initial and trailing metadata)."""
        path, parse = self._resolve(method, response_type)
        payload = request if isinstance(request, (bytes, bytearray, memoryview)) \
            else request.SerializeToString()
        result = self.call_raw(path, payload, metadata=metadata, timeout=timeout)
        if not result.ok:
            raise CallError(result)
        return parse(result.payload), result

    def unary(self, method: Any, request: Any, *, metadata: MetadataLike = None,
              timeout: float | None = None, response_type: Any = None) -> Any:
        """Calls a unary method and returns the parsed response; CallError if
        the status is not OK.

        ``method`` is a path (``"/pkg.Service/Method"``; the response type is
        looked up in the default descriptor pool unless ``response_type`` is
        given), a stub method (of a stub on :attr:`channel` or on a grpcio
        channel), or a protobuf ``MethodDescriptor``.
        """
        return self.unary_with_call(method, request, metadata=metadata, timeout=timeout,
                                    response_type=response_type)[0]

    def stream(self, method: Any, requests: Iterable[Any] = (), *,
               metadata: MetadataLike = None, timeout: float | None = None,
               response_type: Any = None) -> StreamingCall:
        """Starts a call of any kind and returns it at once: iterate the
        :class:`StreamingCall` for the parsed response messages (CallError at
        the end if the status is not OK), ``cancel()`` it, or ask its
        ``result()``.

        ``requests`` is the request stream (protobuf messages or bytes), read
        on a thread of its own as the handler asks for messages, so it may
        block (ping-pong); a method that takes one request gets exactly one,
        or the call ends with UNIMPLEMENTED as from the hosts.  ``method``
        and ``response_type`` as in :meth:`unary` (``response_type=bytes``
        gives the raw messages).
        """
        self._check_open()
        path, parse = self._resolve(method, response_type)
        _split_path(path)
        return StreamingCall(self.service, path, requests, metadata=metadata,
                             timeout=self._timeout(timeout), peer=self.peer,
                             deserialize=parse, error=CallError)

    def call_stream_raw(self, path: str, requests: Iterable[Any] = (), *,
                        metadata: MetadataLike = None,
                        timeout: float | None = None) -> CallResult:
        """Calls a method of any kind with raw request messages and waits:
        the :class:`~pygrpc_ffi.CallResult` whatever the status, its
        ``messages`` the response messages received."""
        call = self.stream(path, requests, metadata=metadata, timeout=timeout,
                           response_type=bytes)
        received = messages_of(call)
        return dataclasses.replace(call.result(), messages=tuple(received))

    async def aunary(self, method: Any, request: Any, *, metadata: MetadataLike = None,
                     timeout: float | None = None, response_type: Any = None) -> Any:
        """:meth:`unary` without blocking the running event loop."""
        path, parse = self._resolve(method, response_type)
        payload = request if isinstance(request, (bytes, bytearray, memoryview)) \
            else request.SerializeToString()
        result = await self.acall_raw(path, payload, metadata=metadata, timeout=timeout)
        if not result.ok:
            raise CallError(result)
        return parse(result.payload)


def metadata_pairs(metadata: MetadataLike) -> tuple[tuple[str, MetadataValue], ...]:
    """Every (key, value) of any metadata form, as a tuple."""
    return Metadata(metadata).pairs()
