"""A ``grpc.ServicerContext`` for handlers that run through the C ABI.

:class:`ServicerContext` is what a grpcio servicer method (``def``) receives
when it runs through pygrpc_ffi (see :mod:`pygrpc_ffi.servicer`), and what a
typed handler that takes a second argument receives
(``register_method(..., request_type=..., response_type=...)``).
:class:`AioServicerContext` is the ``grpc.aio`` flavour, for ``async def``
methods: ``abort``, ``abort_with_status`` and ``send_initial_metadata`` are
coroutines there.  Both subclass grpcio's abstract context classes when grpcio
is installed, so ``isinstance(context, grpc.ServicerContext)`` holds.

The status of a call follows grpcio's rules, including the odd ones that
servicers rely on:

- ``abort(code, details)`` raises; the call ends with ``code`` and
  ``details`` even if the method catches the exception and returns.
  ``abort`` with ``OK`` ends the call with UNKNOWN (and, as in grpcio, empty
  details).
- ``set_code(NOT_FOUND)`` followed by a normal return sends NOT_FOUND (the
  response is dropped); ``set_code`` followed by a raise sends that code;
  ``set_details`` chooses the message in both cases.  ``details()`` returns
  what was set (bytes in the sync context, as grpcio's does; str in the aio
  one); ``code()`` returns what was set, or None.
- ``set_trailing_metadata`` replaces the trailers; they are sent with errors
  too.  A ``grpc-status-details-bin`` trailer (``abort_with_status(
  rpc_status.to_status(status))``) becomes the call's status details, which
  every host sends as ``grpc-status-details-bin``.
- ``add_callback`` runs the callback when the call ends: when the method
  returns or raises, or at once on the cancelling thread when the host
  cancels the call (so a method blocked on an event can be woken).  It
  returns False once the call has ended, like grpcio.
- ``is_active()`` is False once the host cancelled the call, or after it.
  ``time_remaining()`` is None without a deadline in the aio context and, as
  in grpcio, a huge number in the sync one.

Where grpcio differs, on purpose:

- An exception that the method does not turn into a status (no ``abort``,
  no ``set_code``) is mapped like any pygrpc_ffi handler exception
  (:func:`pygrpc_ffi.status_for_exception`: ValueError → INVALID_ARGUMENT,
  ..., anything else INTERNAL with the generic message "Internal server
  error", the traceback going to the server log).  grpcio sends UNKNOWN with
  "Exception calling application: <exception text>" (grpc.aio: "Unexpected
  <class>: <text>"), which leaks internals to clients.  A service created
  with ``GrpcService(expose_exceptions=True)`` sends the exception text.
- ``set_code`` with a plain int means that status number; grpcio sends
  UNKNOWN for anything that is not a ``grpc.StatusCode``.
- Details set on a call that succeeds (OK) are not sent: the C ABI carries a
  message only with an error status.
- Initial metadata of a unary-response call that fails is not sent
  (trailers are); the answer travels as one unit through the C ABI.  In a
  response stream it is sent as in grpcio: at once by
  ``send_initial_metadata``, else with the first message.
- Streams: a sync request iterator raises :class:`RequestsCancelled` (a
  ``grpc.RpcError``) when the call is cancelled or its deadline passes, as
  grpcio's does; an exception raised while iterating responses is mapped
  like any other (grpcio: UNKNOWN "Exception iterating responses: ...").
  ``context.read()`` / ``context.write()`` are for the aio context of a
  method with a request / response stream (RuntimeError elsewhere).
- ``set_compression`` asks the host to compress the response with its
  default algorithm, whichever algorithm is named;
  ``disable_next_message_compression`` turns that off.
- ``auth_context()``, ``peer_identities()`` and ``peer_identity_key()``
  are what the host passed through the C ABI (since ABI 4): on both engines
  grpcio's properties (``transport_security_type``, and with a client
  certificate ``x509_common_name``, ``x509_subject_alternative_name``,
  ``x509_pem_cert``, ...); ``{}`` and None in-process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

from . import _runtime
from ._binding import calls, streams
from ._runtime.answers import add_metadata
from ._runtime.requests import call_of
from ._runtime.streams import StreamCancelled
from .errors import GrpcError, client_message, status_for_exception
from .metadata import MetadataValue, is_binary_key, iter_pairs
from .request import GrpcRequest
from .response import GrpcResponse
from .status import StatusCode

try:
    import grpc
    import grpc.aio

    _SyncBase: Any = grpc.ServicerContext
    _AioBase: Any = grpc.aio.ServicerContext
except ImportError:  # pragma: no cover - grpcio is an optional dependency
    grpc = None
    _SyncBase = _AioBase = object

__all__ = ["AioServicerContext", "Metadatum", "RequestsCancelled", "ServicerContext"]

_log = logging.getLogger("pygrpc_ffi")

#: The trailer that carries a serialized ``google.rpc.Status``.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
#: Message of a response that cannot be serialized (grpcio's words).
SERIALIZE_FAILED = "Failed to serialize response!"
#: Message of a request that cannot be deserialized (grpcio's words).
DESERIALIZE_FAILED = "Exception deserializing request!"
# What grpcio's sync context reports as time remaining without a deadline.
_NO_DEADLINE_SECONDS = float(2**63 - 1)


class Metadatum(NamedTuple):
    """One metadata entry, as grpcio's ``invocation_metadata()`` gives it."""

    key: str
    value: MetadataValue


def _status_of(code: Any) -> StatusCode:
    """Our StatusCode for a grpc.StatusCode, a StatusCode or an int."""
    try:
        return StatusCode(code)
    except (ValueError, TypeError):
        return StatusCode.UNKNOWN


def _user_code(code: Any) -> Any:
    """What ``code()`` reports for a status we chose ourselves."""
    return code.to_grpc() if grpc is not None else code


def _exception_message(exc: BaseException, code: StatusCode, expose: bool) -> str:
    return client_message(exc, code, expose)


def _dropped_entry(reason: str) -> None:
    _log.error("metadata entry dropped: %s", reason)


def _normalize_pairs(metadata: Any) -> list[tuple[str, MetadataValue]]:
    """(key, value) pairs from what grpcio accepts as metadata (a mapping or
    pairs, read by :func:`~pygrpc_ffi.metadata.iter_pairs`; an entry that is
    not a pair is dropped with a log line): str or bytes values in either
    kind of key are converted to what the key needs."""
    pairs: list[tuple[str, MetadataValue]] = []
    for key, value in iter_pairs(metadata, _dropped_entry):
        if isinstance(key, bytes):
            key = key.decode("ascii", "replace")
        if isinstance(key, str) and is_binary_key(key):
            if isinstance(value, str):
                value = value.encode("utf-8")
        elif isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("latin-1")
        pairs.append((key, value))
    return pairs


# ------------------------------------------------------------- cancellation


class RequestsCancelled(StreamCancelled, grpc.RpcError if grpc is not None else Exception):  # type: ignore[misc]
    """Raised by a sync method's request iterator when the call is cancelled
    (or its deadline passes) while the method reads: a ``grpc.RpcError``, as
    grpcio's request iterator raises, and a :class:`~pygrpc_ffi.Cancelled`."""


if grpc is not None:
    _AbortError: type[Exception] = grpc.aio.AbortError
else:  # pragma: no cover
    class _AbortError(Exception):  # type: ignore[no-redef]
        """Raised by ``abort`` (grpc.aio's AbortError when grpcio is there)."""


class _CancelHook:
    """What C's cancel callback points at while a sync method runs.

    C runs the callback at most once; when it does, the hook releases its own
    handle.  When it cannot run any more, :meth:`_ContextBase._end` releases
    it instead (see ``_detach_cancel_hook``).
    """

    __slots__ = ("context", "handle")

    def __init__(self, context: _ContextBase) -> None:
        self.context = context
        self.handle: Any = None

    def cancel(self) -> None:
        try:
            self.context._run_callbacks()
        finally:
            _runtime.handles.pop(self.handle)
            self.handle = None  # a handle keeps its object: no cycle


class _Probe:
    """A cancel callback that only tells its own thread whether it ran."""

    def __init__(self) -> None:
        self.local = threading.local()

    def cancel(self) -> None:
        if getattr(self.local, "probing", False):
            self.local.hit = True


_PROBE = _Probe()
_PROBE_HANDLE = _runtime.handles.add(_PROBE)  # lives as long as the process


# ------------------------------------------------------------------ contexts


class _ContextBase:
    """State and methods shared by the sync and the aio context."""

    _aio = False

    def __init__(self, request: GrpcRequest, *, expose_exceptions: bool = False,
                 stream: Any = None, parse: Callable[[GrpcRequest], Any] | None = None,
                 serialize: Callable[[Any], Any] | None = None,
                 request_streaming: bool = False,
                 response_streaming: bool = False) -> None:
        self._request = request
        # A streaming call (see _streams.current_stream): metadata goes to the
        # call at once, messages are read and written through it.
        self._stream = stream
        self._call: Any = stream.call if stream is not None else call_of(request)
        self._parse = parse
        self._serialize = serialize
        self._request_streaming = request_streaming
        self._response_streaming = response_streaming
        self._messages_sent = 0
        self._expose = expose_exceptions
        self._code: Any = None
        self._status: StatusCode | None = None
        self._details: str | None = None
        self._aborted = False
        self._compress = False
        self._initial: list[tuple[str, MetadataValue]] | None = None
        self._trailing: Any = None
        self._invocation: tuple[Metadatum, ...] | None = None
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], Any]] | None = []
        self._hook: _CancelHook | None = None
        self._ended = False

    # ------------------------------------------------------- call and client

    @property
    def request(self) -> GrpcRequest:
        """The underlying :class:`~pygrpc_ffi.GrpcRequest` (a pygrpc_ffi
        extension: method name, raw payload view, deadline)."""
        return self._request

    def invocation_metadata(self) -> tuple[Metadatum, ...]:
        """The client's metadata: (key, value) tuples in the order received;
        values of ``-bin`` keys are bytes."""
        if self._invocation is None:
            self._invocation = tuple(Metadatum(k, v) for k, v in self._request.metadata.pairs())
        return self._invocation

    def peer(self) -> str:
        """The client's address as the host reports it (gRPC hosts:
        ``ipv4:127.0.0.1:5123``)."""
        return self._request.peer

    def peer_identities(self) -> Iterable[bytes] | None:
        """The caller's identities (the client certificate's SANs, else its
        common name), or None if it is not authenticated."""
        return self._request.peer_identities

    def peer_identity_key(self) -> str | None:
        """The auth property holding the identities, or None."""
        return self._request.peer_identity_key

    def auth_context(self) -> Mapping[str, Iterable[bytes]]:
        """The auth properties, as grpcio gives them (see GrpcRequest.auth_context)."""
        return {name: list(values) for name, values in self._request.auth_context.items()}

    def _cancelled(self) -> bool:
        call = self._call
        return call is not None and not self._ended and bool(calls.is_cancelled(call))

    def is_active(self) -> bool:
        """False once the host cancelled the call, or once it ended."""
        if self._ended:
            return False
        return not self._cancelled()

    def cancel(self) -> None:
        """Cancels the call: the client gets CANCELLED and callbacks run."""
        if not self._ended and self._call is not None:
            calls.cancel(self._call)

    # --------------------------------------------------------------- answer

    def set_compression(self, compression: Any) -> None:
        """Asks the host to compress the response (its default algorithm);
        ``grpc.Compression.NoCompression`` (or None) asks it not to."""
        self._compress = compression is not None and int(compression) != 0

    def disable_next_message_compression(self) -> None:
        """Sends the response uncompressed."""
        self._compress = False

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        """Replaces the trailing metadata sent with the status."""
        self._trailing = (None if trailing_metadata is None
                          else tuple(_normalize_pairs(trailing_metadata)))

    def trailing_metadata(self) -> Any:
        """The trailing metadata set so far, or None."""
        return self._trailing

    def set_code(self, code: Any) -> None:
        """The status the call ends with (a ``grpc.StatusCode``, a
        :class:`~pygrpc_ffi.StatusCode` or its number)."""
        self._code = code
        self._status = _status_of(code)

    def code(self) -> Any:
        """The code set with :meth:`set_code` or ``abort``, or None."""
        return self._code

    def set_details(self, details: str) -> None:
        """The status message the call ends with."""
        self._details = details if isinstance(details, str) else str(details)

    def _send_initial(self, initial_metadata: Any) -> None:
        if self._initial is not None or self._messages_sent:
            raise ValueError("Initial metadata no longer allowed!")
        self._initial = _normalize_pairs(initial_metadata)
        if self._stream is not None and not self._ended:
            # A stream sends it now, ahead of any message, as grpcio does.
            add_metadata(self._call, self._initial, calls.add_initial_metadata, "initial")
            streams.send_initial_metadata_quietly(self._call)

    def _set_abort(self, code: Any, details: str, trailing_metadata: Any = None) -> None:
        status = _status_of(code)
        if status is StatusCode.OK:
            _log.error("abort() called with StatusCode.OK; returning UNKNOWN")
            status, details = StatusCode.UNKNOWN, ""
            code = _user_code(status)
        if trailing_metadata is not None:
            self.set_trailing_metadata(trailing_metadata)
        self._code = code
        self._status = status
        self._details = details if isinstance(details, str) else str(details)
        self._aborted = True

    # ------------------------------------------------------------ callbacks

    def add_callback(self, callback: Callable[[], Any]) -> bool:
        """Runs ``callback()`` when the call ends (or is cancelled).  False,
        and the callback is dropped, if the call has already ended."""
        with self._lock:
            if self._callbacks is None:
                return False
            self._callbacks.append(callback)
            attach = not self._aio and self._hook is None and self._call is not None
            if attach:
                self._hook = _CancelHook(self)
        if attach:
            self._attach_cancel_hook()
        return True

    def _attach_cancel_hook(self) -> None:
        hook = self._hook
        assert hook is not None
        hook.handle = _runtime.handles.add(hook)
        # If the call is already cancelled, C runs the hook right here.
        if not calls.set_cancel_hook(self._call, hook.handle):
            _runtime.handles.pop(hook.handle)  # finished: C will never run it
            hook.handle = None  # a handle keeps its object: no cycle
            self._hook = None

    def _detach_cancel_hook(self) -> None:
        """Stops C from running the hook, and releases it unless C has run it
        or is about to (then the hook releases itself)."""
        hook, self._hook = self._hook, None
        if hook is None:
            return
        # Replace the hook by the probe: C runs the probe here, on this thread,
        # if and only if the call was already cancelled -- in which case C took
        # the hook (it runs exactly once).  Otherwise C never runs the hook.
        local = _PROBE.local
        local.probing, local.hit = True, False
        try:
            hooked = calls.set_cancel_hook(self._call, _PROBE_HANDLE)
        finally:
            local.probing = False
        if hooked and not local.hit:
            _runtime.handles.pop(hook.handle)
            hook.handle = None  # a handle keeps its object: no cycle

    def _run_callbacks(self) -> None:
        with self._lock:
            callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            try:
                self._invoke(callback)
            except Exception:
                _log.exception("callback %r of a pygrpc_ffi call failed", callback)

    def _invoke(self, callback: Callable[..., Any]) -> None:
        callback()

    def _end(self) -> None:
        """The method is done: callbacks run, the context goes inactive."""
        if not self._aio:
            self._detach_cancel_hook()
        self._run_callbacks()
        self._ended = True

    # -------------------------------------------------------------- outcome

    def _split_trailers(self) -> tuple[list[tuple[str, MetadataValue]], bytes | None]:
        trailers = _normalize_pairs(self._trailing)
        details: bytes | None = None
        kept: list[tuple[str, MetadataValue]] = []
        for key, value in trailers:
            if key == STATUS_DETAILS_KEY:
                details = value if isinstance(value, bytes) else value.encode("latin-1")
            else:
                kept.append((key, value))
        return kept, details

    def _error(self, code: StatusCode, message: str,
               extra: Sequence[tuple[str, MetadataValue]] = (),
               details: bytes | None = None) -> GrpcError:
        trailers, set_details = self._split_trailers()
        if code is StatusCode.OK:
            code = StatusCode.UNKNOWN
        return GrpcError(code, message, details=details or set_details,
                         trailers=[*trailers, *extra])

    def _failure(self, exc: BaseException) -> GrpcError:
        """The error the call ends with when the method raised ``exc``."""
        if self._aborted and self._status is not None:
            return self._error(self._status, self._details or "")
        if isinstance(exc, GrpcError):
            return self._error(exc.code, exc.message, exc.trailers, exc.details_bytes())
        mapped = status_for_exception(exc)
        if self._status is not None:
            _log.debug("method raised %r after set_code(%s)", exc, self._status.name)
            code = self._status
        else:
            code = mapped
            if code is StatusCode.INTERNAL:
                _log.error("servicer method raised an unexpected exception", exc_info=exc)
        message = (self._details if self._details is not None
                   else _exception_message(exc, mapped, self._expose))
        return self._error(code, message)

    def _success(self, response: Any, serialize: Callable[[Any], Any] | None,
                 serialize_error: str = SERIALIZE_FAILED) -> GrpcResponse:
        """The answer when the method returned ``response``; raises the
        GrpcError the call ends with instead, if it must fail."""
        status = self._status
        if self._aborted or (status is not None and status is not StatusCode.OK):
            raise self._error(status or StatusCode.UNKNOWN, self._details or "")
        if self._cancelled():
            raise self._error(StatusCode.CANCELLED, "Cancelled")
        # A stream's initial metadata is already in the call.
        initial = list(self._initial or ()) if self._stream is None else []
        trailers, details = self._split_trailers()
        if details is not None:
            _log.debug("status details dropped: the call succeeded")
        compress = self._compress
        if isinstance(response, GrpcResponse):
            initial += _normalize_pairs(response.metadata)
            trailers += _normalize_pairs(response.trailers)
            compress = compress or response.compress
            response = response.payload
        if response is None:
            _log.error("the method returned None instead of a response")
            raise self._error(StatusCode.INTERNAL, serialize_error)
        if serialize is not None and not isinstance(response, (bytes, bytearray, memoryview)):
            try:
                response = serialize(response)
            except Exception as exc:
                _log.error("cannot serialize the response %s: %s",
                           type(response).__name__, exc)
                raise self._error(StatusCode.INTERNAL, serialize_error) from None
        return GrpcResponse(response, initial or None, trailers or None, compress=compress)

    # -------------------------------------------------------------- streams

    def _parsed(self, request: GrpcRequest) -> Any:
        """One request message of a stream, deserialized; a message that
        cannot be ends the call with INTERNAL, as in grpcio."""
        parse = self._parse
        if parse is None:
            return request
        try:
            return parse(request)
        except Exception as exc:
            _log.error("%s: cannot deserialize a request message: %s",
                       request.full_method, str(exc))
            self._set_abort(StatusCode.INTERNAL, DESERIALIZE_FAILED)
            raise GrpcError(StatusCode.INTERNAL, DESERIALIZE_FAILED) from None

    def _message(self, response: Any) -> Any:
        """One response message of a stream, serialized; raises the GrpcError
        the call ends with if it cannot be."""
        if response is None:
            _log.error("the method produced None instead of a response message")
            raise self._error(StatusCode.INTERNAL, SERIALIZE_FAILED)
        serialize = self._serialize
        if serialize is not None and not isinstance(response, (bytes, bytearray, memoryview)):
            try:
                response = serialize(response)
            except Exception as exc:
                _log.error("cannot serialize the response %s: %s", type(response).__name__, exc)
                raise self._error(StatusCode.INTERNAL, SERIALIZE_FAILED) from None
        self._messages_sent += 1
        if self._compress:
            return GrpcResponse(response, compress=True)
        return response

    def _end_stream(self) -> None:
        """The response stream ended without an exception: raises the
        GrpcError the call ends with if it must fail (``set_code``, abort,
        cancellation), else puts the trailers into the call."""
        status = self._status
        if self._aborted or (status is not None and status is not StatusCode.OK):
            raise self._error(status or StatusCode.UNKNOWN, self._details or "")
        if self._cancelled():
            raise self._error(StatusCode.CANCELLED, "Cancelled")
        trailers, details = self._split_trailers()
        if details is not None:
            _log.debug("status details dropped: the call succeeded")
        add_metadata(self._call, trailers, calls.add_trailing_metadata, "trailing")


class ServicerContext(_ContextBase, _SyncBase):  # type: ignore[misc]
    """The context of a sync (``def``) method; see the module docstring."""

    def time_remaining(self) -> float:
        """Seconds until the deadline (never negative); without a deadline,
        a huge number, as grpcio gives."""
        remaining = self._request.time_remaining()
        if remaining is None:
            return _NO_DEADLINE_SECONDS - time.time()
        return remaining

    def details(self) -> bytes | None:
        """The details set so far, UTF-8 encoded (as grpcio's), or None."""
        return None if self._details is None else self._details.encode("utf-8")

    def send_initial_metadata(self, initial_metadata: Any) -> None:
        """Initial metadata, sent before the response.  Once only: a second
        call raises ValueError, as in grpcio."""
        self._send_initial(initial_metadata)

    def abort(self, code: Any, details: str) -> NoReturn:
        """Ends the call with ``code`` and ``details``: always raises."""
        self._set_abort(code, details)
        raise Exception()

    def abort_with_status(self, status: Any) -> NoReturn:
        """Ends the call with a ``grpc.Status`` (code, details and trailing
        metadata, e.g. from ``rpc_status.to_status``): always raises."""
        self._set_abort(status.code, status.details, status.trailing_metadata)
        raise Exception()


class AioServicerContext(_ContextBase, _AioBase):  # type: ignore[misc]
    """The context of an ``async def`` method (grpc.aio flavour)."""

    _aio = True
    _was_cancelled = False

    def time_remaining(self) -> float | None:
        """Seconds until the deadline (never negative), or None."""
        return self._request.time_remaining()

    def details(self) -> str | None:
        """The details set so far, or None."""
        return self._details

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        """Initial metadata, sent before the response (once)."""
        self._send_initial(initial_metadata)

    async def abort(self, code: Any, details: str = "",
                    trailing_metadata: Any = ()) -> NoReturn:
        """Ends the call with ``code``, ``details`` and (if given) trailing
        metadata: always raises."""
        if details == "" and self._details:
            details = self._details
        self._set_abort(code, details, trailing_metadata or None)
        raise _AbortError("Locally aborted.")

    async def abort_with_status(self, status: Any) -> NoReturn:
        """Ends the call with a ``grpc.Status``: always raises."""
        await self.abort(status.code, status.details, status.trailing_metadata)

    async def read(self) -> Any:
        """The next request message of a request-streaming method, or
        ``grpc.aio.EOF`` once the client has sent its last one."""
        if self._stream is None or not self._request_streaming:
            raise RuntimeError("read() is only for methods with a request stream")
        request = await self._stream.aread()
        if request is None:
            return grpc.aio.EOF if grpc is not None else None
        return self._parsed(request)

    async def write(self, message: Any) -> None:
        """Sends one response message of a response-streaming method; returns
        once the host has taken it (the client's pace)."""
        if self._stream is None or not self._response_streaming:
            raise RuntimeError("write() is only for methods with a response stream")
        await self._stream.awrite(self._message(message))

    def add_done_callback(self, callback: Callable[[Any], Any]) -> None:
        """Runs ``callback(context)`` when the call ends."""
        self.add_callback(lambda: callback(self))

    def cancelled(self) -> bool:
        """Whether the call was cancelled."""
        return self._was_cancelled if self._ended else self._cancelled()

    def done(self) -> bool:
        """Whether the method has finished (returned, raised or aborted)."""
        return self._ended

    def _end(self) -> None:
        self._was_cancelled = self._cancelled()
        super()._end()

