"""Calls made from Python as a host makes them (GrpcService's in-process
calls, the testing kit, the grpcio engine): a pgf_call built from a path, a
request and metadata, and the answer of a finished call read back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .._binding import calls
from .._binding.base import PgfError
from .._runtime.requests import new_message, read_metadata
from ..errors import GrpcError
from ..metadata import Metadata, request_value_bytes
from ..response import GrpcResponse
from ..status import StatusCode


@dataclass(frozen=True)
class CallResult:
    """The outcome of a call made with :meth:`GrpcService.call`."""

    code: StatusCode
    message: str = ""
    payload: bytes = b""
    initial_metadata: Metadata = field(default_factory=Metadata)
    trailing_metadata: Metadata = field(default_factory=Metadata)
    details: bytes | None = None

    messages: tuple[bytes, ...] = ()
    """Every response message, in order (for unary answers: the payload)."""

    @property
    def ok(self) -> bool:
        return self.code is StatusCode.OK

    def to_response(self) -> GrpcResponse:
        """The result as a GrpcResponse; a non-OK status raises GrpcError."""
        if not self.ok:
            raise GrpcError(self.code, self.message, details=self.details,
                            trailers=self.trailing_metadata.pairs())
        return GrpcResponse(self.payload, self.initial_metadata, self.trailing_metadata)


def _key_bytes(key: Any, lowercase: bool) -> bytes:
    if lowercase:  # keys as gRPC clients send them
        if not isinstance(key, str):
            raise TypeError(f"metadata key must be str, not {type(key).__name__}")
        return key.lower().encode("ascii")
    if isinstance(key, str):
        return key.encode("latin-1")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"metadata key must be str or bytes, not {type(key).__name__}")


def new_call(path: str, payload: Any, metadata: Any = (), *, timeout: float | None = None,
             peer: str = "", lowercase_keys: bool = False) -> tuple[Any, Any]:
    """A new pgf_call (OWNED: release with ``calls.unref``) and, for
    compatibility, None (the call owns its request).  ``payload`` None: no
    request is set (a request stream).  ``metadata``: (key, value) pairs.
    ValueError for a malformed path; TypeError for a key or value that is
    not str or bytes.  Keys are sent as given (str or bytes; a key the shim
    refuses: ValueError), or, with ``lowercase_keys`` (GrpcService's calls),
    lowercased str keys (a key the shim refuses: the error of its status)."""
    call = calls.new(path.encode("utf-8"))
    if call is None:
        raise ValueError(f"invalid method path {path!r}")
    what = "cannot set the request"  # for an error of the shim's
    try:
        if payload is not None:
            # Owned by the call: a view the handler keeps stays valid.
            calls.set_request_message(call, new_message(payload))
        for key, value in metadata or ():
            key_b = _key_bytes(key, lowercase_keys)
            value_b = request_value_bytes(key, value)
            try:
                calls.add_request_metadata(call, key_b, value_b)
            except PgfError as exc:
                if lowercase_keys:
                    raise exc.as_builtin(f"invalid request metadata {key!r}") from None
                raise ValueError(f"invalid request metadata key {key!r}") from None
        if timeout is not None:
            what = "cannot set the deadline"
            calls.set_deadline(call, time.time_ns() + int(timeout * 1e9))
        if peer:
            what = "cannot set the peer"
            calls.set_peer(call, peer.encode("utf-8", "replace"))
    except BaseException as exc:
        calls.unref(call)
        if isinstance(exc, PgfError):
            raise exc.as_builtin(what) from None
        raise
    return call, None


def read_result(call: Any, *, payload: bool = True) -> CallResult:
    """The answer of a finished call (the payload copied, unless not asked)."""
    code, message, body, details = calls.answer(call, payload)
    return CallResult(
        code=StatusCode(code),
        message=message,
        payload=body,
        initial_metadata=read_metadata(calls.initial_metadata(call)),
        trailing_metadata=read_metadata(calls.trailing_metadata(call)),
        details=details,
    )
