"""Python request handlers for C and C++ RPC servers, through a small C ABI.

Register handlers in :func:`default_service` (or a :class:`GrpcService` of
your own) and a host — the bundled gRPC C++ server, your own C/C++ server, or
``GrpcService.call`` in tests — dispatches calls to them through the C shim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._binding import base as _base
from ._runtime import live_objects
from .config import get_include, get_library_dir
from .config import library_version as _library_version
from .errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    GrpcError,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    register_exception,
    status_for_exception,
    unregister_exception,
)
from .handler import GrpcHandler
from .metadata import Metadata
from .request import GrpcRequest
from .response import GrpcResponse
from .service import CallResult, GrpcService, HandlerNotFound, default_service
from .shutdown import on_shutdown
from .status import StatusCode

if TYPE_CHECKING:
    from .grpcio_server import serve as serve
    from .grpcio_server import start as start
    from .servicer import ServicerTarget as ServicerTarget
    from .servicer import add_servicer as add_servicer


# Single-sourced: PGF_VERSION_* in pygrpc_ffi.h give the C library's version,
# which setup.py also reads for the distribution's version.
__version__ = _library_version()
ABI_VERSION = _base.abi_version()

# grpcio compatibility, imported on first use: grpcio is optional, and hosts
# that embed Python should not pay for importing it.
_LAZY = {
    "serve": "grpcio_server",
    "start": "grpcio_server",
    "ServicerTarget": "servicer",
    "add_servicer": "servicer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value

__all__ = [
    "ABI_VERSION",
    "Aborted",
    "AlreadyExists",
    "CallResult",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "GrpcError",
    "GrpcHandler",
    "GrpcRequest",
    "GrpcResponse",
    "GrpcService",
    "HandlerNotFound",
    "Internal",
    "InvalidArgument",
    "Metadata",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "StatusCode",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "__version__",
    "default_service",
    "get_include",
    "get_library_dir",
    "live_objects",
    "on_shutdown",
    "register_exception",
    "status_for_exception",
    "unregister_exception",
]
