"""The shape of a handler."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, runtime_checkable

from .request import GrpcRequest
from .response import GrpcResponse

#: What a handler may return: a GrpcResponse, bytes-like, or a protobuf message.
HandlerResult = GrpcResponse | bytes | bytearray | memoryview | Any


@runtime_checkable
class GrpcHandler(Protocol):
    """An object that answers requests; ``handle_request`` may be ``async def``.

    A plain callable ``f(request)`` (sync or async) is accepted too.
    """

    def handle_request(
        self, request: GrpcRequest
    ) -> HandlerResult | Awaitable[HandlerResult]: ...
