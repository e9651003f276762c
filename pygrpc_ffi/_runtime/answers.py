"""Handler answers written into calls: payloads without a copy, metadata,
status, and the status an exception maps to."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .._binding import calls
from .._binding.base import ESTATE, PgfError, from_buffer
from .._binding.metadata import key_owned
from .._binding.trampolines import RELEASE_BUFFER
from ..errors import GrpcError, client_message, status_for_exception
from ..metadata import MetadataLike, encode_entry, iter_pairs
from ..response import GrpcResponse
from ..status import StatusCode
from .c_builtins import add_text_metadata as _add_text_metadata
from .c_builtins import address_of
from .handles import handles

_log = logging.getLogger("pygrpc_ffi")

INTERNAL_MESSAGE = "Internal server error"
#: Answers up to this size are copied into the call (as _binding/unary.c does):
#: cheaper than a release that must take the GIL on a host thread later.
COPY_AT_MOST = 1024
_BYTES_LIKE = (bytes, bytearray, memoryview)
_from_buffer = from_buffer
_release_buffer = RELEASE_BUFFER
_finish_copy = calls.finish_copy_quietly
_finish_buffer = calls.finish_buffer_quietly
call_at = calls.pointer  # the call at an address


class InvalidResponse(Exception):
    """A handler's answer that cannot be sent."""


def payload_of(result: Any) -> Any:
    """The bytes-like payload of an answer (bytes-like or a protobuf message)."""
    if isinstance(result, _BYTES_LIKE):
        return result
    serialize = getattr(result, "SerializeToString", None)
    if serialize is not None and callable(serialize):
        return serialize()
    raise InvalidResponse(
        f"returned {type(result).__name__}; expected GrpcResponse, bytes-like or a protobuf message"
    )


def add_metadata(call: Any, metadata: MetadataLike, add: Callable[[Any, bytes, bytes], None],
                 what: str,
                 dropped: Callable[[str], None] | None = None) -> None:
    """Adds metadata in any form :func:`iter_pairs` reads to the call.  An
    entry that cannot be sent raises InvalidResponse, or, with ``dropped``,
    is reported to ``dropped(reason)`` and skipped (the others are sent).
    An entry whose key gRPC owns (``grpc-status``, ``te``, ...) is always
    dropped with a log line: the call still ends as the handler chose."""

    def bad(reason: str) -> None:
        if dropped is None:
            raise InvalidResponse(f"invalid {what} metadata: {reason}")
        dropped(reason)

    for key, value in iter_pairs(metadata, bad):
        try:
            key_b, value_b = encode_entry(key, value)
        except (TypeError, ValueError) as exc:
            bad(str(exc))
            continue
        try:
            add(call, key_b, value_b)
        except PgfError as exc:
            if exc.code == ESTATE and what == "initial":
                raise InvalidResponse(
                    "sent initial metadata after the first response message") from None
            if key_owned(key_b):
                _log.error("%s metadata %r dropped: gRPC sets that key itself; the call "
                           "keeps its status", what, key)
                continue
            if dropped is None:
                raise InvalidResponse(f"invalid {what} metadata {key!r}: {value!r}") from None
            dropped(f"{key!r}: {value!r} is not valid gRPC metadata")


def set_response(call: Any, result: Any) -> None:
    """Writes a handler's return value into the call, or InvalidResponse.
    (A plain ``bytes`` answer takes the shorter way in :func:`finish_ok`.)"""
    compress = False
    if isinstance(result, GrpcResponse):
        payload = payload_of(result.payload)
        _add_response_entries(call, result.metadata, False)
        _add_response_entries(call, result.trailers, True)
        compress = result.compress
    else:
        payload = payload_of(result)
    try:
        buf = _from_buffer(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidResponse(f"payload cannot be sent: {exc}") from None
    if compress:
        calls.compress_response_quietly(call)
    if len(buf):
        # The host sends the handler's own bytes; they live until it releases them.
        try:
            calls.set_response(call, buf, _release_buffer, handles.add(buf))
        except PgfError as exc:
            raise InvalidResponse(f"the response cannot be kept ({exc.code})") from None


def _add_response_entries(call: Any, metadata: Any, trailing: bool) -> None:
    """add_metadata of a response's metadata or trailers (the one place that
    writes them); a dict's plain text entries in one crossing into C."""
    if type(metadata) is dict:
        added = _add_text_metadata(address_of(call), metadata, trailing)
        if added == len(metadata):
            return
        metadata = list(metadata.items())[added:]
    if trailing:
        add_metadata(call, metadata, calls.add_trailing_metadata, "trailing")
    else:
        add_metadata(call, metadata, calls.add_initial_metadata, "initial")


def finish_ok(call: Any, result: Any, binding: Any) -> None:
    if type(result) is GrpcResponse and type(result.payload) is bytes and not result.compress:
        # Its metadata into the call, then its bytes as a bytes answer's.
        if not _add_response_metadata(call, result.metadata, result.trailers, binding):
            return
        result = result.payload
    if type(result) is bytes:  # the common answer, in one crossing into C
        size = len(result)
        if size <= COPY_AT_MOST:  # copied: no release comes back into Python
            _finish_copy(call, result, size)
        else:
            buf = _from_buffer(result)
            _finish_buffer(call, buf, size, _release_buffer, handles.add(buf))
        return
    try:
        set_response(call, result)
    except InvalidResponse as exc:
        _log.error("handler %s %s; the call fails with INTERNAL", binding.name, str(exc))
        calls.reset_response_quietly(call)
        finish(call, StatusCode.INTERNAL, INTERNAL_MESSAGE)
        return
    except Exception:  # e.g. metadata that is not iterable, a failing SerializeToString
        _log.exception("handler %s returned a %s that cannot be sent; the call fails with "
                       "INTERNAL", binding.name, type(result).__name__)
        calls.reset_response_quietly(call)
        finish(call, StatusCode.INTERNAL, INTERNAL_MESSAGE)
        return
    calls.finish_quietly(call, 0)


def response_payload(address: int, response: GrpcResponse, binding: Any) -> bytes | None:
    """For a :class:`GrpcResponse` whose payload is ``bytes``: adds its
    metadata to the call at ``address`` and returns the payload, for C to
    send and finish the call with once the GIL is released (as for a
    ``bytes`` answer).  Anything else is answered here, as :func:`finish_ok`
    does, and None returned."""
    payload = response.payload
    if type(payload) is not bytes or response.compress:
        finish_ok(call_at(address), response, binding)
        return None
    metadata, trailers = response.metadata, response.trailers
    if metadata and type(metadata) is dict:  # the common form, without a call object
        added = _add_text_metadata(address, metadata, False)
        metadata = list(metadata.items())[added:] if added < len(metadata) else None
    if not metadata and not trailers:
        return payload
    call = call_at(address)
    return payload if _add_response_metadata(call, metadata, trailers, binding) else None


def _add_response_metadata(call: Any, metadata: Any, trailers: Any, binding: Any) -> bool:
    """Adds a response's metadata and trailers to the call; False once the
    call is finished with INTERNAL instead, because they cannot be sent."""
    try:
        if metadata:
            _add_response_entries(call, metadata, False)
        if trailers:
            _add_response_entries(call, trailers, True)
        return True
    except InvalidResponse as exc:
        _log.error("handler %s %s; the call fails with INTERNAL", binding.name, str(exc))
    except Exception:  # e.g. metadata that is not iterable
        _log.exception("handler %s returned a GrpcResponse that cannot be sent; the call "
                       "fails with INTERNAL", binding.name)
    calls.reset_response_quietly(call)
    finish(call, StatusCode.INTERNAL, INTERNAL_MESSAGE)
    return False


def finish(call: Any, code: int, message: str) -> None:
    raw = message.encode("utf-8", "replace")
    calls.finish_quietly(call, int(code), raw)


def finish_error(call: Any, exc: BaseException, binding: Any) -> None:
    """Finishes the call with the status an exception maps to."""
    code = status_for_exception(exc)
    calls.reset_response_quietly(call)
    if isinstance(exc, GrpcError):
        def dropped(reason: str) -> None:
            _log.error("handler %s raised %r with a trailer that cannot be sent (%s); "
                       "sent without it", binding.name, exc, reason)

        try:
            details = exc.details_bytes()
            # A bad trailer never costs the call the status the handler chose.
            add_metadata(call, exc.trailers, calls.add_trailing_metadata, "trailing",
                         dropped)
        except (InvalidResponse, TypeError) as bad:
            _log.error("handler %s raised %r with %s; the call fails with INTERNAL",
                       binding.name, exc, bad)
            calls.reset_response_quietly(call)
            finish(call, StatusCode.INTERNAL, INTERNAL_MESSAGE)
            return
        if details and not _set_details(call, details):
            _log.error("handler %s raised %r with status details over the trailer budget "
                       "(%d bytes); the call fails with INTERNAL", binding.name, exc,
                       len(details))
            calls.reset_response_quietly(call)
            finish(call, StatusCode.INTERNAL, INTERNAL_MESSAGE)
            return
        finish(call, code, exc.message)
        return
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        _log.error("handler %s raised %s; only its call fails (%s)", binding.name,
                   type(exc).__name__, code.name, exc_info=exc)
        finish(call, code, f"handler interrupted by {type(exc).__name__}")
        return
    if code is StatusCode.INTERNAL:
        _log.error("handler %s raised an unexpected exception", binding.name, exc_info=exc)
        message = f"{type(exc).__name__}: {exc}" if binding.expose_exceptions else INTERNAL_MESSAGE
    else:
        _log.debug("handler %s raised %r, sent as %s", binding.name, exc, code.name)
        message = client_message(exc, code, binding.expose_exceptions)
    finish(call, code, message)


def _set_details(call: Any, details: bytes) -> bool:
    """Sets the status details; False if the call refuses them (over the
    trailer budget)."""
    try:
        calls.set_status_details(call, details)
    except PgfError:
        return False
    return True


class Responder:
    """The response side of a streaming call: each answer's payload, its
    initial metadata (before the first message only) and trailers."""

    __slots__ = ("call", "name")

    def __init__(self, call: Any, name: str) -> None:
        self.call = call
        self.name = name

    def message_payload(self, answer: Any) -> Any:
        """The bytes-like payload to write for one answer."""
        if isinstance(answer, GrpcResponse):
            add_metadata(self.call, answer.metadata, calls.add_initial_metadata, "initial")
            add_metadata(self.call, answer.trailers, calls.add_trailing_metadata, "trailing")
            if answer.compress:
                calls.compress_response_quietly(self.call)
            answer = answer.payload
        return payload_of(answer)

    def finish_stream(self) -> None:
        """Ends the response stream with OK (trailers follow)."""
        calls.finish_quietly(self.call, 0)
