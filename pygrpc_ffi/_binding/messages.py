"""Messages (``pgf_message``): request bytes with their owner."""

from __future__ import annotations

from functools import partial
from typing import Any

from .._native import ffi, lib
from .base import NULL
from .trampolines import RELEASE_BUFFER

#: unref(msg): drops a reference (cannot fail).
unref = lib.pgf_message_unref
_gc = ffi.gc
_buffer = ffi.buffer
_unref_with = lib._pgf_message_unref_with
#: data_of(msg) -> struct {data, len}: the bytes of a message.
data_of = lib._pgf_message_bytes


def new(buf: Any, ctx: Any) -> Any:
    """An OWNED message over ``buf`` (from_buffer) without a copy, released
    through the handle ``ctx``; or an empty one (``buf`` empty, ``ctx``
    None).  MemoryError if C cannot allocate it."""
    if ctx is None:
        msg = lib.pgf_message_new(NULL, 0, NULL, NULL)
    else:
        msg = lib.pgf_message_new(buf, len(buf), RELEASE_BUFFER, ctx)
    if msg == NULL:
        raise MemoryError("cannot allocate a message")
    return msg


def owning_view(msg: Any, data: Any, size: int) -> memoryview:
    """A read-only view of ``size`` bytes at ``data`` that owns the
    reference ``msg``: released once nothing uses the view any more."""
    # ffi.buffer keeps its pointer alive, and the pointer owns the message.
    owner = _gc(data, partial(_unref_with, msg))
    return memoryview(_buffer(owner, size)).toreadonly()
