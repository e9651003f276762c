"""Host-side helpers for Python code that drives calls like a host does
(the grpcio engine, the testing kit): build a pgf_call, read its answer."""

from __future__ import annotations

import time
from typing import Any

from . import _runtime
from ._local_host import new_message
from ._native import ffi, lib
from .metadata import Metadata, MetadataValue, request_value_bytes
from .service import CallResult, _check
from .status import StatusCode


def new_call(path: str, payload: Any, metadata: Any = (), *, timeout: float | None = None,
             peer: str = "") -> tuple[Any, Any]:
    """A new pgf_call (OWNED: release with ``lib.pgf_call_unref``) and, for
    compatibility, None (the call owns its request).  ``payload`` None: no
    request is set (a request stream).  ValueError for a malformed path or
    request metadata key; TypeError for a key or value that is not str or
    bytes."""
    raw_path = path.encode("utf-8")
    call = lib.pgf_call_new(raw_path, len(raw_path))
    if call == ffi.NULL:
        raise ValueError(f"invalid method path {path!r}")
    try:
        # Owned by the call: a view the handler keeps stays valid.
        buf = None
        if payload is not None:
            _check(lib.pgf_call_set_request_message(call, new_message(payload)),
                   "cannot set the request")
        for key, value in metadata or ():
            if isinstance(key, str):
                key_b = key.encode("latin-1")
            elif isinstance(key, (bytes, bytearray, memoryview)):
                key_b = bytes(key)
            else:
                raise TypeError(f"metadata key must be str or bytes, not {type(key).__name__}")
            value_b = request_value_bytes(key, value)
            if lib.pgf_call_add_request_metadata(call, key_b, len(key_b), value_b,
                                                 len(value_b)) != lib.PGF_OK:
                raise ValueError(f"invalid request metadata key {key!r}")
        if timeout is not None:
            _check(lib.pgf_call_set_deadline(call, time.time_ns() + int(timeout * 1e9)),
                   "cannot set the deadline")
        if peer:
            raw_peer = peer.encode("utf-8", "replace")
            _check(lib.pgf_call_set_peer(call, raw_peer, len(raw_peer)), "cannot set the peer")
    except BaseException:
        lib.pgf_call_unref(call)
        raise
    return call, buf


def metadata_pairs(md: Any) -> list[tuple[str, MetadataValue]]:
    """The entries of a C metadata list."""
    return list(_runtime.read_metadata(md).pairs())


def read_result(call: Any, *, payload: bool = True) -> tuple[CallResult, bool]:
    """The answer of a finished call (the payload copied), and whether the
    handler asked for a compressed response."""
    size = ffi.new("size_t *")
    raw = lib.pgf_call_status_message(call, size)
    message = ffi.unpack(raw, size[0]).decode("utf-8", "replace")  # by length: may hold NULs
    data = ffi.new("const uint8_t **")
    lib.pgf_call_status_details(call, data, size)
    details = ffi.buffer(data[0], size[0])[:] if size[0] else None
    body = b""
    if payload:
        lib.pgf_call_response(call, data, size)
        body = ffi.buffer(data[0], size[0])[:] if size[0] else b""
    result = CallResult(
        code=StatusCode(lib.pgf_call_status(call)),
        message=message,
        payload=body,
        initial_metadata=Metadata._from_pairs(metadata_pairs(lib.pgf_call_initial_metadata(call))),
        trailing_metadata=Metadata._from_pairs(
            metadata_pairs(lib.pgf_call_trailing_metadata(call))),
        details=details,
    )
    return result, bool(lib.pgf_call_compress_response(call))
