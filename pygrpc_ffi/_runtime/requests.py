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

from typing import Any

from .._binding import calls, messages
from .._binding import metadata as c_metadata
from .._binding.base import NULL, copy_bytes, from_buffer
from ..metadata import Metadata, MetadataValue, is_binary_key
from ..request import _LAZY, Auth, GrpcRequest
from .handles import handles

NO_DEADLINE = 2**63 - 1

_names: dict[bytes, str] = {}  # decoded service and method names
_owning_view = messages.owning_view
_message_bytes = messages.data_of


def decode_name(name: Any) -> str:
    """The text of a C name."""
    return decode_name_bytes(c_metadata.name_bytes(name))


def decode_name_bytes(raw: bytes) -> str:
    """The text of a service or method name's bytes."""
    text = _names.get(raw)
    if text is None:
        text = raw.decode("utf-8", "replace")
        if len(_names) < 4096:  # bounded: clients choose method names
            _names[raw] = text
    return text


def read_metadata(md: Any) -> Metadata:
    """The entries of a C metadata list."""
    pairs: list[tuple[str, MetadataValue]] = [
        (key, raw if is_binary_key(key) else raw.decode("latin-1"))
        for key, raw in c_metadata.entries(md)]
    return Metadata._from_pairs(pairs)


def view_of_message(msg: Any, data: Any, size: int) -> memoryview:
    """A read-only view of a message's bytes that owns the reference ``msg``:
    the message is released when the view and everything exported from it
    are gone."""
    if not size:
        messages.unref(msg)
        return memoryview(b"")
    return _owning_view(msg, data, size)


class _CallReader:
    """Reads a request's fields from its call when they are first used; the
    call is a pointer, or an address (the unary fast path, _binding/unary.c,
    and the loop queue pass it so)."""

    @staticmethod
    def metadata(call: Any) -> Metadata:
        return read_metadata(calls.request_metadata(call_at(call)))

    @staticmethod
    def service_name(call: Any) -> str:
        return decode_name(calls.service(call_at(call)))

    @staticmethod
    def method_name(call: Any) -> str:
        return decode_name(calls.method(call_at(call)))

    @staticmethod
    def deadline(call: Any) -> float | None:
        deadline = calls.deadline(call_at(call))
        return None if deadline == NO_DEADLINE else deadline / 1e9

    @staticmethod
    def peer(call: Any) -> str:
        return calls.peer(call_at(call), whole=False)

    @staticmethod
    def auth(call: Any) -> Auth:
        properties, key = calls.auth(call_at(call))
        context: dict[str, list[bytes]] = {}
        for name, value in properties:
            context.setdefault(name, []).append(value)
        return context, key


#: call_at(call) -> the ``pgf_call *`` of a call given as a pointer or as an
#: address.
call_at = calls.pointer


def call_of(request: GrpcRequest) -> Any:
    """The ``pgf_call *`` a request reads its fields from, or None once it
    was released from its call."""
    return call_at(request._call) if request._call is not None else None


_reader = _CallReader()
_new_request = GrpcRequest.__new__


def request_at(address: int, payload: memoryview) -> GrpcRequest:
    """A GrpcRequest of the call at ``address`` with its payload view made
    in C (_binding/unary.c); fields read from the call when first used."""
    request = _new_request(GrpcRequest)
    request._service_name = request._method_name = request._deadline = request._peer = _LAZY
    request._payload = None
    request.payload_view = payload
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
    raw = calls.request_of(call)
    size = raw.len
    if raw.msg != NULL:
        request._payload = None
        request.payload_view = view_of_message(raw.msg, raw.data, size)
    elif size:
        request.payload = copy_bytes(raw.data, size)  # lent: copied, so payload is that copy
    else:
        request.payload = b""
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

    __slots__ = ("auth", "deadline", "metadata", "method_name", "peer", "service_name",
                 "stream")

    def __init__(self, service_name: str, method_name: str, metadata: Metadata,
                 deadline: float | None, peer: str, stream: Any, auth: Auth) -> None:
        self.auth = auth
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
                    _reader.metadata(call), _reader.deadline(call), _reader.peer(call), stream,
                    _reader.auth(call))


def view_request(info: CallInfo, payload: memoryview) -> GrpcRequest:
    """A GrpcRequest for one streamed message whose view C made."""
    request = _new_request(GrpcRequest)
    request._payload = None
    request.payload_view = payload
    request._service_name = info.service_name
    request._method_name = info.method_name
    request._deadline = info.deadline
    request._peer = info.peer
    request._metadata = info.metadata
    request._auth = info.auth
    request._call = request._reader = None
    request._stream = info.stream
    return request


def message_request(info: CallInfo, msg: Any) -> GrpcRequest:
    """A GrpcRequest for one streamed message (reference ``msg`` owned)."""
    raw = _message_bytes(msg)
    return view_request(info, view_of_message(msg, raw.data, raw.len))


def new_message(payload: Any) -> Any:
    """An OWNED pgf_message over a Python bytes-like object, without a copy;
    the object lives until the message is released."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        serialize = getattr(payload, "SerializeToString", None)
        if serialize is None:
            raise TypeError(f"a request message must be bytes-like, not {type(payload).__name__}")
        payload = serialize()
    buf = from_buffer(payload)
    return messages.new(buf, handles.add(buf) if len(buf) else None)
