"""Python request handlers for C and C++ RPC servers, through a small C ABI.

Register handlers in :func:`default_service` (or a :class:`GrpcService` of
your own) and a host — the bundled gRPC C++ server, your own C/C++ server, or
``GrpcService.call`` in tests — dispatches calls to them through the C shim.
"""

from __future__ import annotations

from ._runtime import live_objects
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
from .service import CallResult, GrpcService, default_service
from .status import StatusCode

__all__ = [
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
    "default_service",
    "live_objects",
    "register_exception",
    "status_for_exception",
    "unregister_exception",
]
