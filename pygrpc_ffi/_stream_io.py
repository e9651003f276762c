"""Blocking reads and writes of sync streaming handlers, one C builtin call
per message (``pysrc/stream_io.c``): the GIL is released while the host
delivers, and no cffi object is made per message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._native import ffi, lib

_builtins: dict[str, Any] = {}
if lib._pgf_stream_io_install(ffi.cast("void *", id(_builtins))) != lib.PGF_OK:
    raise MemoryError("pygrpc_ffi cannot set up its stream functions")

#: read_message(call address) -> memoryview of the next request message
#: (owning it), or the int code that ended the read (PGF_EOF, ...).
read_message: Callable[[int], memoryview | int] = _builtins["read_message"]
#: write_message(call address, payload) -> the pgf_call_write_wait code,
#: once the host completed the write (it borrows the payload until then).
write_message: Callable[[int, Any], int] = _builtins["write_message"]


def address_of(call: Any) -> int:
    """The address of a ``pgf_call *``, as the functions above take it."""
    return int(ffi.cast("uintptr_t", call))
