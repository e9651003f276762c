"""Streams: the host's side (events, pushed requests, taken writes).  The
handlers' side reads and writes through the C builtins of
_runtime/c_builtins."""

from __future__ import annotations

from typing import Any

from .._native import ffi, lib
from .base import NULL, copy_bytes, ensure
from .trampolines import STREAM_EVENT


def set_stream(call: Any, handle: Any) -> None:
    """Makes the call a stream whose events go to the stream-event
    trampoline with ``handle`` (before dispatch)."""
    ensure(lib.pgf_call_set_stream(call, STREAM_EVENT, handle), "pgf_call_set_stream")


def set_stream_quietly(call: Any, handle: Any) -> None:
    """:func:`set_stream` for a call just made here: it fails only for a
    dispatched call, which this one is not."""
    lib.pgf_call_set_stream(call, STREAM_EVENT, handle)


def push_request_quietly(call: Any, msg: Any) -> None:
    """Hands over the next request message (OWNED by the call from now on).
    Fails (PGF_ESTATE) only if no read is asked any more (the call was
    cancelled or finished meanwhile): C has released the message then."""
    lib.pgf_call_push_request(call, msg)


def push_end_quietly(call: Any) -> None:
    """Ends the request stream; ignored as :func:`push_request_quietly`."""
    lib.pgf_call_push_request(call, NULL)


def write_done_quietly(call: Any, ok: bool) -> None:
    """Completes the taken write.  Fails (PGF_ESTATE) only if none was taken:
    nothing to complete then."""
    lib.pgf_call_write_done(call, 1 if ok else 0)


def take_write(call: Any) -> bytes | None:
    """The queued response message, copied and its bytes released; its write
    stays to be completed (:func:`write_done_quietly`).  None if no write is
    queued (PGF_ENOTFOUND)."""
    data = ffi.new("const uint8_t **")
    size = ffi.new("size_t *")
    release = ffi.new("pgf_release_fn *")
    ctx = ffi.new("void **")
    if lib.pgf_call_take_write(call, data, size, release, ctx, NULL) != lib.PGF_OK:
        return None
    message = copy_bytes(data[0], size[0])
    if release[0] != NULL:
        release[0](ctx[0])
    return message


def send_initial_metadata_quietly(call: Any) -> None:
    """Sends the initial metadata now.  Fails only for a finished call, whose
    metadata went with its status."""
    lib.pgf_call_send_initial_metadata(call)
