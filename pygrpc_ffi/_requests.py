"""Requests as handlers see them, read from a call without copying payloads.

A request payload is a read-only ``memoryview`` of the host's bytes.  The
view (and every slice, ``.obj`` or buffer export made from it) holds a
reference to the C message that owns those bytes, so they stay valid until
the last Python object using them is collected: no view can reach freed
memory, and a handler that drops its views keeps memory flat.  Bytes a host
only lent (``pgf_call_set_request``) are copied instead, since they end with
the call.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ._native import ffi, lib
from .metadata import Metadata, MetadataValue, is_binary_key
from .request import _LAZY, GrpcRequest

NO_DEADLINE = 2**63 - 1

_names: dict[bytes, str] = {}  # decoded service and method names
_gc = ffi.gc
_buffer = ffi.buffer
_unref_with = lib._pgf_message_unref_with
_message_bytes = lib._pgf_message_bytes


def decode_name(name: Any) -> str:
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


def view_of_message(msg: Any, data: Any, size: int) -> memoryview:
    """A read-only view of a message's bytes that owns the reference ``msg``:
    the message is released when the view and everything exported from it
    are gone."""
    if not size:
        lib.pgf_message_unref(msg)
        return memoryview(b"")
    # ffi.buffer keeps its pointer alive, and the pointer owns the message.
    owner = _gc(data, partial(_unref_with, msg))
    return memoryview(_buffer(owner, size)).toreadonly()


class _CallReader:
    """Reads a request's fields from its call when they are first used; the
    call is a pointer, or an address (the unary fast path, pysrc/unary.c,
    and the loop queue pass it so)."""

    @staticmethod
    def metadata(call: Any) -> Metadata:
        return read_metadata(lib.pgf_call_request_metadata(call_at(call)))

    @staticmethod
    def service_name(call: Any) -> str:
        return decode_name(lib.pgf_call_service(call_at(call)))

    @staticmethod
    def method_name(call: Any) -> str:
        return decode_name(lib.pgf_call_method(call_at(call)))

    @staticmethod
    def deadline(call: Any) -> float | None:
        deadline = lib.pgf_call_deadline(call_at(call))
        return None if deadline == NO_DEADLINE else deadline / 1e9

    @staticmethod
    def peer(call: Any) -> str:
        peer = lib.pgf_call_peer(call_at(call), ffi.NULL)
        return ffi.string(peer).decode("utf-8", "replace") if peer[0] != b"\0" else ""


def call_at(call: Any) -> Any:
    """The ``pgf_call *`` of a call given as a pointer or as an address."""
    return _cast("pgf_call *", call) if type(call) is int else call


def call_of(request: GrpcRequest) -> Any:
    """The ``pgf_call *`` a request reads its fields from, or None once it
    was released from its call."""
    return call_at(request._call) if request._call is not None else None


_cast = ffi.cast
_reader = _CallReader()
_new_request = GrpcRequest.__new__


def request_at(address: int, payload: memoryview) -> GrpcRequest:
    """A GrpcRequest of the call at ``address`` with its payload view made
    in C (pysrc/unary.c); fields read from the call when first used."""
    request = _new_request(GrpcRequest)
    request._service_name = request._method_name = request._deadline = request._peer = _LAZY
    request.payload = payload
    request._metadata = None
    request._call = address
    request._reader = _reader
    request._stream = None
    return request


def make_request(call: Any) -> GrpcRequest:
    """A GrpcRequest viewing the call's payload without a copy.  Its other
    fields are read from the call when first used (see request._LAZY)."""
    request = _new_request(GrpcRequest)
    request._service_name = request._method_name = request._deadline = request._peer = _LAZY
    raw = lib._pgf_request_of(call)
    size = raw.len
    if raw.msg != ffi.NULL:
        request.payload = view_of_message(raw.msg, raw.data, size)
    elif size:
        request.payload = memoryview(ffi.buffer(raw.data, size)[:])  # lent: copied
    else:
        request.payload = memoryview(b"")
    request._metadata = None
    request._call = call
    request._reader = _reader
    request._stream = None
    return request


def release_request(request: GrpcRequest, outlives: bool = True) -> None:
    """Ends the request's access to its call, before the call finishes.
    ``outlives``: the request may be used after the call (unless the caller
    knows that nothing else holds it), so its lazy fields are read now.  The
    payload needs nothing: it owns its bytes."""
    if outlives:
        request._read_lazy_fields()
    request._reader = None
    request._call = None


class CallInfo:
    """What every message of a streaming call shares: read once per call."""

    __slots__ = ("deadline", "metadata", "method_name", "peer", "service_name", "stream")

    def __init__(self, service_name: str, method_name: str, metadata: Metadata,
                 deadline: float | None, peer: str, stream: Any) -> None:
        self.service_name = service_name
        self.method_name = method_name
        self.metadata = metadata
        self.deadline = deadline
        self.peer = peer
        self.stream = stream


def read_call_info(call: Any, stream: Any) -> CallInfo:
    """The fields of a call that its streamed requests share; ``stream``
    answers their ``is_active()``."""
    return CallInfo(_reader.service_name(call), _reader.method_name(call),
                    _reader.metadata(call), _reader.deadline(call), _reader.peer(call), stream)


def view_request(info: CallInfo, payload: memoryview) -> GrpcRequest:
    """A GrpcRequest for one streamed message whose view C made."""
    request = _new_request(GrpcRequest)
    request.payload = payload
    request._service_name = info.service_name
    request._method_name = info.method_name
    request._deadline = info.deadline
    request._peer = info.peer
    request._metadata = info.metadata
    request._call = request._reader = None
    request._stream = info.stream
    return request


def message_request(info: CallInfo, msg: Any) -> GrpcRequest:
    """A GrpcRequest for one streamed message (reference ``msg`` owned)."""
    request = _new_request(GrpcRequest)
    raw = _message_bytes(msg)
    request.payload = view_of_message(msg, raw.data, raw.len)
    request._service_name = info.service_name
    request._method_name = info.method_name
    request._deadline = info.deadline
    request._peer = info.peer
    request._metadata = info.metadata
    request._call = None
    request._reader = None
    request._stream = info.stream
    return request
