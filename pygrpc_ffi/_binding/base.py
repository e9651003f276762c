"""The cffi module, the error type and the checker every wrapper uses, the
constants of the header, and the cffi primitives the layers above need
(NULL, handles, views of C bytes)."""

from __future__ import annotations

from typing import Any

from .._native import ffi, lib

NULL: Any = ffi.NULL

# Status codes (PGF_E*).
OK: int = lib.PGF_OK
EINVAL: int = lib.PGF_EINVAL
ENOMEM: int = lib.PGF_ENOMEM
EEXIST: int = lib.PGF_EEXIST
ENOTFOUND: int = lib.PGF_ENOTFOUND
EMETADATA: int = lib.PGF_EMETADATA
ESTATE: int = lib.PGF_ESTATE
EPYTHON: int = lib.PGF_EPYTHON
EOF: int = lib.PGF_EOF
ECANCELLED: int = lib.PGF_ECANCELLED
EWOULDBLOCK: int = lib.PGF_EWOULDBLOCK
EVERSION: int = lib.PGF_EVERSION

# Method kinds and registration flags (PGF_KIND_*, PGF_FLAG_*).
KIND_UNARY: int = lib.PGF_KIND_UNARY
KIND_CLIENT_STREAMING: int = lib.PGF_KIND_CLIENT_STREAMING
KIND_SERVER_STREAMING: int = lib.PGF_KIND_SERVER_STREAMING
FLAG_NONBLOCKING: int = lib.PGF_FLAG_NONBLOCKING

# Stream events a host serves (PGF_EVENT_*).
EVENT_READ: int = lib.PGF_EVENT_READ
EVENT_WRITE: int = lib.PGF_EVENT_WRITE
EVENT_INITIAL_METADATA: int = lib.PGF_EVENT_INITIAL_METADATA

_ERROR_NAMES = {
    int(getattr(lib, name)): name
    for name in ("PGF_EINVAL", "PGF_ENOMEM", "PGF_EEXIST", "PGF_ENOTFOUND", "PGF_EMETADATA",
                 "PGF_ESTATE", "PGF_EPYTHON", "PGF_EOF", "PGF_ECANCELLED", "PGF_EWOULDBLOCK",
                 "PGF_EVERSION")
}


def strerror(rc: int) -> str:
    """The shim's description of a status code."""
    return str(ffi.string(lib.pgf_strerror(rc)).decode())


class PgfError(RuntimeError):
    """A C function of the shim returned a status other than PGF_OK.

    ``code`` is the status, ``name`` its PGF_E* name, ``function`` the C
    function that returned it, ``reason`` the shim's description of it."""

    def __init__(self, code: int, function: str) -> None:
        self.code = code
        self.name = _ERROR_NAMES.get(code, f"PGF_E({code})")
        self.function = function
        self.reason = strerror(code)
        super().__init__(f"{function}: {self.reason} ({self.name})")

    def as_builtin(self, what: str) -> Exception:
        """The exception the public API raises for it: ValueError (bad
        argument, already registered), MemoryError, KeyError (not found),
        else RuntimeError; its text is ``what`` and the shim's reason."""
        kind = _BUILTIN.get(self.code, RuntimeError)
        return kind(f"{what}: {self.reason}")


_BUILTIN: dict[int, type[Exception]] = {
    EINVAL: ValueError,
    ENOMEM: MemoryError,
    EEXIST: ValueError,
    ENOTFOUND: KeyError,
}


def ensure(rc: int, function: str) -> None:
    """The one checker: PgfError unless ``rc`` is PGF_OK."""
    if rc != OK:
        raise PgfError(rc, function)


# Handles: Python objects C holds as ``void *`` (see _runtime.handles).
new_handle = ffi.new_handle
from_handle = ffi.from_handle
#: A C pointer to the bytes of a bytes-like object, kept alive with it.
from_buffer = ffi.from_buffer


def copy_bytes(data: Any, size: int) -> bytes:
    """A copy of ``size`` bytes at ``data`` (b"" for none)."""
    return ffi.buffer(data, size)[:] if size else b""


def address_of(pointer: Any) -> int:
    """The address of a C pointer, as an int."""
    return int(ffi.cast("uintptr_t", pointer))


def void_p(address: int) -> Any:
    """An address as a ``void *`` (the fast path's objects, by id())."""
    return ffi.cast("void *", address)


def live_count(kind: str) -> int:
    """How many C objects of a kind (``NAMES``, ``CALLS``, ... of
    PGF_LIVE_*) are alive."""
    return int(lib.pgf_live_count(getattr(lib, f"PGF_LIVE_{kind}")))


def abi_version() -> int:
    """The ABI version of the loaded shim."""
    return int(lib.pgf_abi_version())


def version_number() -> int:
    """The loaded shim's version, as PGF_VERSION_NUMBER encodes it."""
    return int(lib.pgf_version_number())
