"""grpc.aio interceptors that need what grpc.aio's server gives them: a
running event loop and the freedom to await in ``intercept_service``
itself.  Used in process (tests/test_aio_interceptors.py) and loaded into
real servers with ``--interceptor aio_interceptors:AsyncTokenCheck``."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import grpc

TOKEN = "Bearer ok"
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "aio_request_id", default=None)


class AsyncTokenCheck(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks the token with an asynchronous lookup (a future the running
    loop completes later) before continuing: returns None (rejects) for a
    bad token, raises PermissionError after awaiting for ``x-deny``, sets
    REQUEST_ID from ``x-request-id`` for the handler, and awaits again
    after its continuation.  ``loops`` records the running loop per call."""

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def _valid(self, token: str | None) -> bool:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        loop.call_later(0.005, answer.set_result, token == TOKEN)
        return await answer

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        self.loops.append(asyncio.get_running_loop())
        metadata = dict(details.invocation_metadata)
        if not await self._valid(metadata.get("authorization")):
            return None
        if "x-deny" in metadata:
            await asyncio.sleep(0)
            raise PermissionError("denied after an await")
        REQUEST_ID.set(metadata.get("x-request-id"))
        handler = await continuation(details)
        await asyncio.sleep(0.001)
        return handler


class AioOrder(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Records ``name>`` before and ``<name`` after its continuation, with
    an await on each side."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        await asyncio.sleep(0)
        self.log.append(f"{self.name}>")
        handler = await continuation(details)
        await asyncio.sleep(0)
        self.log.append(f"<{self.name}")
        return handler


class SyncOrder(grpc.ServerInterceptor):  # type: ignore[misc]
    """The same for grpcio's sync style; also records whether it ran on a
    thread with a running event loop (it must not block one)."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log
        self.on_a_loop: list[bool] = []

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        try:
            asyncio.get_running_loop()
            self.on_a_loop.append(True)
        except RuntimeError:
            self.on_a_loop.append(False)
        self.log.append(f"{self.name}>")
        handler = continuation(details)
        self.log.append(f"<{self.name}")
        return handler
