"""gRPC status codes."""

from __future__ import annotations

import enum
from typing import Any


class StatusCode(enum.IntEnum):
    """gRPC's status codes, with gRPC's numbers.

    Converts to and from ``grpc.StatusCode``: ``StatusCode(grpc.StatusCode.OK)``
    and ``StatusCode.OK.to_grpc()``.
    """

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @classmethod
    def _missing_(cls, value: object) -> StatusCode | None:
        # grpc.StatusCode members carry (number, name) tuples as their value.
        inner: Any = getattr(value, "value", None)
        if isinstance(inner, tuple) and inner and isinstance(inner[0], int):
            return cls(inner[0])
        return None

    @classmethod
    def from_grpc(cls, code: Any) -> StatusCode:
        """The member for a ``grpc.StatusCode``."""
        return cls(code)

    def to_grpc(self) -> Any:
        """The matching ``grpc.StatusCode`` (requires grpcio)."""
        import grpc

        for member in grpc.StatusCode:
            if member.value[0] == self.value:
                return member
        raise ValueError(f"grpc has no status code {self.value}")  # pragma: no cover
