"""The ``extern "Python"`` functions C calls (declared in build.py): their
bodies are defined here by the layers above, and the C function pointers
that name them are handed to C from here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .._native import ffi, lib

_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def define(fn: _Fn, onerror: Callable[..., Any] | None = None) -> _Fn:
    """Makes ``fn`` the body of the extern "Python" function of its name
    (``onerror`` as cffi's: what the trampoline returns if ``fn`` raises)."""
    if onerror is None:
        ffi.def_extern()(fn)
    else:
        ffi.def_extern(onerror=onerror)(fn)
    return fn


# The trampolines as C function pointers.
CANCEL: Any = lib._pgf_py_cancel
CALL_DONE: Any = lib._pgf_py_call_done
STREAM_EVENT: Any = lib._pgf_py_stream_event
RELEASE_BUFFER: Any = lib._pgf_py_release_buffer
RELEASE_HANDLER: Any = lib._pgf_py_release_handler
