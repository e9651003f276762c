"""Host-side helpers for Python code that drives calls like a host does
(the grpcio engine, the testing kit): build a pgf_call, read its answer."""

from __future__ import annotations

import time
from typing import Any

from . import _runtime
from ._binding import calls
from ._binding.base import PgfError, builtin_errors
from ._runtime.requests import new_message
from .metadata import Metadata, MetadataValue, request_value_bytes
from .service import CallResult
from .status import StatusCode


def new_call(path: str, payload: Any, metadata: Any = (), *, timeout: float | None = None,
             peer: str = "") -> tuple[Any, Any]:
    """A new pgf_call (OWNED: release with ``calls.unref``) and, for
    compatibility, None (the call owns its request).  ``payload`` None: no
    request is set (a request stream).  ValueError for a malformed path or
    request metadata key; TypeError for a key or value that is not str or
    bytes."""
    raw_path = path.encode("utf-8")
    call = calls.new(raw_path)
    if call is None:
        raise ValueError(f"invalid method path {path!r}")
    try:
        # Owned by the call: a view the handler keeps stays valid.
        buf = None
        if payload is not None:
            with builtin_errors("cannot set the request"):
                calls.set_request_message(call, new_message(payload))
        for key, value in metadata or ():
            if isinstance(key, str):
                key_b = key.encode("latin-1")
            elif isinstance(key, (bytes, bytearray, memoryview)):
                key_b = bytes(key)
            else:
                raise TypeError(f"metadata key must be str or bytes, not {type(key).__name__}")
            value_b = request_value_bytes(key, value)
            try:
                calls.add_request_metadata(call, key_b, value_b)
            except PgfError:
                raise ValueError(f"invalid request metadata key {key!r}") from None
        if timeout is not None:
            with builtin_errors("cannot set the deadline"):
                calls.set_deadline(call, time.time_ns() + int(timeout * 1e9))
        if peer:
            raw_peer = peer.encode("utf-8", "replace")
            with builtin_errors("cannot set the peer"):
                calls.set_peer(call, raw_peer)
    except BaseException:
        calls.unref(call)
        raise
    return call, buf


def metadata_pairs(md: Any) -> list[tuple[str, MetadataValue]]:
    """The entries of a C metadata list."""
    return list(_runtime.read_metadata(md).pairs())


def read_result(call: Any, *, payload: bool = True) -> tuple[CallResult, bool]:
    """The answer of a finished call (the payload copied), and whether the
    handler asked for a compressed response."""
    result = CallResult(
        code=StatusCode(calls.status(call)),
        message=calls.status_message(call),
        payload=calls.response(call) if payload else b"",
        initial_metadata=Metadata._from_pairs(metadata_pairs(calls.initial_metadata(call))),
        trailing_metadata=Metadata._from_pairs(metadata_pairs(calls.trailing_metadata(call))),
        details=calls.status_details(call),
    )
    return result, bool(calls.compress_response(call))
