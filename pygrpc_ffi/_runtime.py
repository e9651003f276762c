"""The Python end of the C ABI: trampolines that run handlers on calls.

C calls ``_pgf_py_handle`` with a handler's registration data and a call; the
handler's answer (or exception) is written back to the call and the call is
finished.  ``async def`` handlers run on the package's event-loop thread and
finish their call from there.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import types
from collections.abc import Callable
from typing import Any, TypeVar

from . import _loop
from ._native import ffi, lib
from .errors import GrpcError, client_message, status_for_exception
from .metadata import Metadata, MetadataLike, MetadataValue, encode_entry, is_binary_key, iter_pairs
from .request import _LAZY, GrpcRequest
from .response import GrpcResponse
from .status import StatusCode

_log = logging.getLogger("pygrpc_ffi")

NO_DEADLINE = 2**63 - 1
INTERNAL_MESSAGE = "Internal server error"
_BYTES_LIKE = (bytes, bytearray, memoryview)


class _Handles:
    """Keeps objects whose handles C holds, until C gives the handle back.

    Keyed by the handle itself: cffi pointers hash and compare by address, so
    the ``void *`` that C hands back finds its entry without a cast.
    """

    def __init__(self) -> None:
        self._items: dict[Any, Any] = {}

    def add(self, obj: object) -> Any:
        handle = ffi.new_handle(obj)
        self._items[handle] = handle
        return handle

    def pop(self, ptr: Any) -> Any:
        return ffi.from_handle(self._items.pop(ptr))

    def __len__(self) -> int:
        return len(self._items)


handles = _Handles()


class Binding:
    """A handler as registered: what C's handler data points at."""

    __slots__ = ("expose_exceptions", "fn", "name")

    def __init__(
        self, fn: Callable[[GrpcRequest], Any], name: str, expose_exceptions: bool
    ) -> None:
        self.fn = fn
        self.name = name
        self.expose_exceptions = expose_exceptions


class _AsyncCall:
    """An async handler's call in flight, which C may cancel at any time."""

    __slots__ = ("binding", "call", "cancelled", "future", "handle", "request")

    def __init__(self, binding: Binding, call: Any, request: GrpcRequest) -> None:
        self.binding = binding
        self.call = call
        self.request = request
        self.cancelled = False
        self.future: Any = None
        self.handle: Any = None

    def cancel(self) -> None:
        self.cancelled = True
        if self.future is not None:
            self.future.cancel()


# ------------------------------------------------------------------ request


_names: dict[bytes, str] = {}  # decoded service and method names


def _decode_name(name: Any) -> str:
    raw = ffi.string(lib.pgf_name_str(name))
    text = _names.get(raw)
    if text is None:
        text = raw.decode("utf-8", "replace")
        if len(_names) < 4096:  # bounded: clients choose method names
            _names[raw] = text
    return text


def read_metadata(md: Any) -> Metadata:
    """The entries of a C metadata list."""
    count = lib.pgf_metadata_count(md)
    pairs: list[tuple[str, MetadataValue]] = []
    if count:
        key_p = ffi.new("const char **")
        key_len = ffi.new("size_t *")
        value_p = ffi.new("const uint8_t **")
        value_len = ffi.new("size_t *")
        for i in range(count):
            lib.pgf_metadata_get(md, i, key_p, key_len, value_p, value_len)
            key = ffi.unpack(key_p[0], key_len[0]).decode("latin-1")
            raw = ffi.buffer(value_p[0], value_len[0])[:]
            pairs.append((key, raw if is_binary_key(key) else raw.decode("latin-1")))
    return Metadata._from_pairs(pairs)


class _CallReader:
    """Reads a request's fields from its call when they are first used."""

    @staticmethod
    def metadata(call: Any) -> Metadata:
        return read_metadata(lib.pgf_call_request_metadata(call))

    @staticmethod
    def service_name(call: Any) -> str:
        return _decode_name(lib.pgf_call_service(call))

    @staticmethod
    def method_name(call: Any) -> str:
        return _decode_name(lib.pgf_call_method(call))

    @staticmethod
    def deadline(call: Any) -> float | None:
        deadline = lib.pgf_call_deadline(call)
        return None if deadline == NO_DEADLINE else deadline / 1e9

    @staticmethod
    def peer(call: Any) -> str:
        peer = lib.pgf_call_peer(call, ffi.NULL)
        return ffi.string(peer).decode("utf-8", "replace") if peer[0] != b"\0" else ""


_reader = _CallReader()
_new_request = GrpcRequest.__new__


def make_request(call: Any) -> GrpcRequest:
    """A GrpcRequest viewing the call's payload without a copy.  Its other
    fields are read from the call when first used (see request._LAZY)."""
    request = _new_request(GrpcRequest)
    request._service_name = request._method_name = request._deadline = request._peer = _LAZY
    raw = lib._pgf_request_bytes(call)
    size = raw.len
    if size:
        request.payload = memoryview(ffi.buffer(raw.data, size)).toreadonly()
    else:
        request.payload = memoryview(b"")
    request._metadata = None
    request._call = call
    request._reader = _reader
    return request


def own_answer(result: Any, request: GrpcRequest) -> Any:
    """The handler's answer, with the request's own payload view (an echo)
    replaced by a copy: the view ends with the call, the answer outlives it."""
    view = request.payload
    if result is view:
        return view.tobytes()
    if type(result) is GrpcResponse and result.payload is view:
        result.payload = view.tobytes()
    return result


def release_request(request: GrpcRequest, binding: Binding, outlives: bool = True) -> None:
    """Ends the request's access to host memory, before the call finishes.
    ``outlives``: the request may be used after the call (unless the caller
    knows that nothing else holds it), so its lazy fields are read now."""
    if outlives:
        request._read_lazy_fields()
    request._reader = None
    request._call = None
    view = request.payload
    exporter = view.obj
    try:
        view.release()
    except BufferError:
        _log.error(
            "handler %s left a buffer exported from request.payload; copy it with bytes()",
            binding.name,
        )
        return
    # A view sliced from the payload survives the release: warn, it cannot be revoked.
    if type(exporter) is not bytes and sys.getrefcount(exporter) > 2:
        _log.error(
            "handler %s kept a view of request.payload past the call; copy it with bytes()",
            binding.name,
        )


# ----------------------------------------------------------------- response


class InvalidResponse(Exception):
    """A handler's answer that cannot be sent."""


def _payload_of(result: Any) -> Any:
    if isinstance(result, _BYTES_LIKE):
        return result
    serialize = getattr(result, "SerializeToString", None)
    if serialize is not None and callable(serialize):
        return serialize()
    raise InvalidResponse(
        f"returned {type(result).__name__}; expected GrpcResponse, bytes-like or a protobuf message"
    )


def _add_metadata(call: Any, metadata: MetadataLike, add: Callable[..., int], what: str) -> None:
    for key, value in iter_pairs(metadata):
        try:
            key_b, value_b = encode_entry(key, value)
        except (TypeError, ValueError) as exc:
            raise InvalidResponse(f"invalid {what} metadata: {exc}") from None
        if add(call, key_b, len(key_b), value_b, len(value_b)) != 0:
            raise InvalidResponse(f"invalid {what} metadata {key!r}: {value!r}")


_from_buffer = ffi.from_buffer
_release_buffer = lib._pgf_py_release_buffer


def set_response(call: Any, result: Any) -> None:
    """Writes a handler's return value into the call, or InvalidResponse.
    (A plain ``bytes`` answer takes the shorter way in :func:`finish_ok`.)"""
    compress = False
    if isinstance(result, GrpcResponse):
        payload = _payload_of(result.payload)
        _add_metadata(call, result.metadata, lib.pgf_call_add_initial_metadata, "initial")
        _add_metadata(call, result.trailers, lib.pgf_call_add_trailing_metadata, "trailing")
        compress = result.compress
    else:
        payload = _payload_of(result)
    try:
        buf = ffi.from_buffer(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidResponse(f"payload cannot be sent: {exc}") from None
    if compress:
        lib.pgf_call_set_compress_response(call, 1)
    if len(buf):
        # The host sends the handler's own bytes; they live until it releases them.
        lib.pgf_call_set_response(call, buf, len(buf), _release_buffer, handles.add(buf))


def finish_ok(call: Any, result: Any, binding: Binding) -> None:
    if type(result) is bytes:  # the common answer, in one crossing into C
        if result:
            buf = _from_buffer(result)
            lib._pgf_finish_ok(call, buf, len(result), _release_buffer, handles.add(buf))
        else:
            lib._pgf_finish_ok(call, ffi.NULL, 0, ffi.NULL, ffi.NULL)
        return
    try:
        set_response(call, result)
    except InvalidResponse as exc:
        _log.error("handler %s %s; the call fails with INTERNAL", binding.name, exc)
        lib.pgf_call_reset_response(call)
        _finish(call, StatusCode.INTERNAL, INTERNAL_MESSAGE)
        return
    except Exception:  # e.g. metadata that is not iterable, a failing SerializeToString
        _log.exception("handler %s returned a %s that cannot be sent; the call fails with "
                       "INTERNAL", binding.name, type(result).__name__)
        lib.pgf_call_reset_response(call)
        _finish(call, StatusCode.INTERNAL, INTERNAL_MESSAGE)
        return
    lib.pgf_call_finish(call, 0, ffi.NULL, 0)


def _finish(call: Any, code: int, message: str) -> None:
    raw = message.encode("utf-8", "replace")
    lib.pgf_call_finish(call, int(code), raw, len(raw))


def finish_error(call: Any, exc: BaseException, binding: Binding) -> None:
    """Finishes the call with the status an exception maps to."""
    code = status_for_exception(exc)
    lib.pgf_call_reset_response(call)
    if isinstance(exc, GrpcError):
        try:
            details = exc.details_bytes()
            _add_metadata(call, exc.trailers, lib.pgf_call_add_trailing_metadata, "trailing")
        except (InvalidResponse, TypeError) as bad:
            _log.error("handler %s raised %r with %s; the call fails with INTERNAL",
                       binding.name, exc, bad)
            lib.pgf_call_reset_response(call)
            _finish(call, StatusCode.INTERNAL, INTERNAL_MESSAGE)
            return
        if details:
            lib.pgf_call_set_status_details(call, details, len(details))
        _finish(call, code, exc.message)
        return
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        _log.error("handler %s raised %s; only its call fails (%s)", binding.name,
                   type(exc).__name__, code.name, exc_info=exc)
        _finish(call, code, f"handler interrupted by {type(exc).__name__}")
        return
    if code is StatusCode.INTERNAL:
        _log.error("handler %s raised an unexpected exception", binding.name, exc_info=exc)
        message = f"{type(exc).__name__}: {exc}" if binding.expose_exceptions else INTERNAL_MESSAGE
    else:
        _log.debug("handler %s raised %r, sent as %s", binding.name, exc, code.name)
        message = client_message(exc, code, binding.expose_exceptions)
    _finish(call, code, message)


# ------------------------------------------------------------ running calls


def run(binding: Binding, call: Any) -> None:
    """Runs a handler on a call; an awaitable result continues on the loop."""
    request = make_request(call)
    refs = sys.getrefcount(request)  # only this frame's: compared after the handler
    try:
        result = binding.fn(request)
    except BaseException as exc:
        release_request(request, binding)
        finish_error(call, exc, binding)
        return
    if type(result) is not bytes and (
        type(result) is types.CoroutineType or _is_awaitable(result)
    ):
        _start_async(binding, call, request, result)
        return
    # Any reference the handler kept (stored request, closure, thread, frame)
    # shows in the count: then the request outlives the call.
    outlives = sys.getrefcount(request) != refs
    result = own_answer(result, request)
    release_request(request, binding, outlives)
    finish_ok(call, result, binding)


def _is_awaitable(obj: Any) -> bool:
    return hasattr(obj, "__await__") and not isinstance(obj, (GrpcResponse, *_BYTES_LIKE))


def _start_async(binding: Binding, call: Any, request: GrpcRequest, awaitable: Any) -> None:
    lib.pgf_call_ref(call)
    pending = _AsyncCall(binding, call, request)
    pending.handle = handles.add(pending)
    lib.pgf_call_on_cancel(call, lib._pgf_py_cancel, pending.handle)
    try:
        pending.future = asyncio.run_coroutine_threadsafe(
            _drive(pending, awaitable), _loop.get_loop()
        )
    except BaseException as exc:
        if hasattr(awaitable, "close"):
            awaitable.close()
        _end_async(pending, exc, None)


async def _drive(pending: _AsyncCall, awaitable: Any) -> None:
    try:
        if pending.cancelled:
            if hasattr(awaitable, "close"):
                awaitable.close()
            raise asyncio.CancelledError()
        result = await awaitable
    except BaseException as exc:
        _end_async(pending, exc, None)
    else:
        _end_async(pending, None, result)


def _end_async(pending: _AsyncCall, exc: BaseException | None, result: Any) -> None:
    call, binding = pending.call, pending.binding
    try:
        if exc is None:
            result = own_answer(result, pending.request)
        release_request(pending.request, binding)
        if exc is not None:
            finish_error(call, exc, binding)
        else:
            finish_ok(call, result, binding)
    except BaseException:  # a call must never be left unfinished
        _log.exception("pygrpc_ffi failed to finish the call of handler %s", binding.name)
        if not lib.pgf_call_is_finished(call):
            lib.pgf_call_reset_response(call)
            _finish(call, StatusCode.INTERNAL, INTERNAL_MESSAGE)
    finally:
        # Once finished, C never runs the cancel callback again.
        handles.pop(pending.handle)
        lib.pgf_call_unref(call)


# -------------------------------------------------------------- trampolines

_Fn = TypeVar("_Fn", bound=Callable[..., None])


def _extern(fn: _Fn) -> _Fn:
    """Makes fn the body of the C-callable extern "Python" function of its name."""
    ffi.def_extern()(fn)
    return fn



_INTERNAL_RAW = INTERNAL_MESSAGE.encode()


def _handle_failed(exc_type: Any, exc_value: Any, tb: Any) -> int:
    """cffi's onerror for _pgf_py_handle: the trampoline itself failed (say,
    a RecursionError from handlers that nest calls without bound).  Returns
    0: the C caller (_pgf_handle in ffi_build.py) then finishes the call."""
    _log.error("pygrpc_ffi could not run a handler (%s); the call fails with INTERNAL",
               getattr(exc_type, "__name__", exc_type))
    return 0


def _pgf_py_handle(handler_data: Any, call: Any) -> int:
    binding = ffi.from_handle(handler_data)
    try:
        run(binding, call)
    except BaseException:
        try:
            _log.exception("pygrpc_ffi failed to run handler %s", getattr(binding, "name", "?"))
        finally:
            # C calls only, with a ready message: this part cannot recurse.
            if not lib.pgf_call_is_finished(call):
                lib.pgf_call_reset_response(call)  # nothing half-written reaches the client
                lib.pgf_call_finish(call, StatusCode.INTERNAL.value, _INTERNAL_RAW,
                                    len(_INTERNAL_RAW))
    return 1


ffi.def_extern(onerror=_handle_failed)(_pgf_py_handle)


@_extern
def _pgf_py_release_handler(handler_data: Any) -> None:
    handles.pop(handler_data)


@_extern
def _pgf_py_release_buffer(ctx: Any) -> None:
    handles.pop(ctx)


@_extern
def _pgf_py_cancel(call: Any, user_data: Any) -> None:
    ffi.from_handle(user_data).cancel()


@_extern
def _pgf_py_call_done(call: Any, user_data: Any) -> None:
    ffi.from_handle(user_data).done(call)


# ---------------------------------------------------------------- lifetime


def live_objects() -> dict[str, int]:
    """How many C objects are alive: names, handlers, calls, registries, and
    response buffers not yet released by their host."""
    return {
        "names": lib.pgf_live_count(lib.PGF_LIVE_NAMES),
        "handlers": lib.pgf_live_count(lib.PGF_LIVE_HANDLERS),
        "calls": lib.pgf_live_count(lib.PGF_LIVE_CALLS),
        "registries": lib.pgf_live_count(lib.PGF_LIVE_REGISTRIES),
        "buffers": lib.pgf_live_count(lib.PGF_LIVE_BUFFERS),
    }


_shutdown_hooks: list[Callable[[], None]] = []


def on_shutdown(hook: Callable[[], None]) -> None:
    _shutdown_hooks.append(hook)


def shutdown() -> None:
    """Stops the event-loop thread and releases every Python registration,
    while the interpreter can still run them (embedding hosts call this)."""
    _loop.stop()
    for hook in reversed(_shutdown_hooks):
        try:
            hook()
        except Exception:
            _log.exception("shutdown hook failed")


atexit.register(shutdown)
