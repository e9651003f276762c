"""grpc.aio interceptors behave as under grpc.aio's server: their
``intercept_service`` is a coroutine awaited on a running event loop (the
one ``async def`` handlers run on), so it may use that loop and await
anything before or after its continuation; what it sets in context
variables reaches the handler; rejecting and raising after an await give
the statuses they give under grpc.aio; mixed chains keep their order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aio_interceptors import REQUEST_ID, TOKEN, AioOrder, AsyncTokenCheck, SyncOrder

import pygrpc_ffi as pgf

S = "aio.Svc"
AUTH = (("authorization", TOKEN),)


@pytest.fixture()
def make_service() -> Iterator[Any]:
    services: list[pgf.GrpcService] = []

    def make(*interceptors: Any) -> tuple[pgf.GrpcService, dict[str, Any]]:
        service = pgf.GrpcService(interceptors=interceptors)
        seen: dict[str, Any] = {"ran": 0}

        @service.method(S, "Who")
        def who(request: pgf.GrpcRequest) -> bytes:
            seen["ran"] += 1
            return f"sync:{REQUEST_ID.get()}".encode()

        @service.method(S, "AsyncWho")
        async def async_who(request: pgf.GrpcRequest) -> bytes:
            seen["ran"] += 1
            seen["handler_loop"] = asyncio.get_running_loop()
            return f"async:{REQUEST_ID.get()}".encode()

        @service.method(S, "Count", response_streaming=True)
        def count(request: pgf.GrpcRequest) -> Iterator[bytes]:
            seen["ran"] += 1
            for i in range(int(bytes(request.payload))):
                yield f"{i}:{REQUEST_ID.get()}".encode()

        services.append(service)
        return service, seen

    yield make
    for service in services:
        service.close()


def test_intercept_service_awaits_on_the_handlers_running_loop(make_service: Any) -> None:
    check = AsyncTokenCheck()
    service, seen = make_service(check)
    metadata = (*AUTH, ("x-request-id", "r1"))
    for method, answer in (("Who", b"sync:r1"), ("AsyncWho", b"async:r1")):
        result = service.call(S, method, b"", metadata=metadata, timeout=10)
        assert (method, result.code, result.payload) == (method, pgf.StatusCode.OK, answer)
    stream = service.call_stream(S, "Count", [b"2"], metadata=metadata, timeout=10)
    assert (stream.code, list(stream.messages)) == (pgf.StatusCode.OK, [b"0:r1", b"1:r1"])
    assert seen["ran"] == 3
    # One running loop for every call: the one async handlers run on.
    assert len(check.loops) == 3
    assert all(loop is seen["handler_loop"] for loop in check.loops)
    # The variable was set in the interceptor's call only.
    assert REQUEST_ID.get() is None
    assert service.call(S, "Who", b"", metadata=AUTH, timeout=10).payload == b"sync:None"


def test_reject_and_raise_after_an_await(make_service: Any) -> None:
    service, seen = make_service(AsyncTokenCheck())
    for method in ("Who", "AsyncWho"):
        refused = service.call(S, method, b"", metadata=[("authorization", "Bearer no")],
                               timeout=10)
        assert (refused.code, refused.message) == (pgf.StatusCode.UNIMPLEMENTED,
                                                   "Method not found!")
        denied = service.call(S, method, b"", metadata=(*AUTH, ("x-deny", "1")), timeout=10)
        assert denied.code is pgf.StatusCode.PERMISSION_DENIED
    refused_stream = service.call_stream(S, "Count", [b"2"], timeout=10)
    assert refused_stream.code is pgf.StatusCode.UNIMPLEMENTED
    assert seen["ran"] == 0  # no handler ran


def test_mixed_chain_keeps_grpcio_order_and_no_sync_code_on_the_loop(
        make_service: Any) -> None:
    log: list[str] = []
    outer_sync, inner_sync = SyncOrder("s1", log), SyncOrder("s2", log)
    service, _ = make_service(outer_sync, AioOrder("a1", log), inner_sync,
                              AioOrder("a2", log), AsyncTokenCheck())
    for method in ("Who", "AsyncWho"):
        log.clear()
        result = service.call(S, method, b"", metadata=(*AUTH, ("x-request-id", "m")),
                              timeout=10)
        assert result.code is pgf.StatusCode.OK, result.message
        assert result.payload.endswith(b":m")
        assert log == ["s1>", "a1>", "s2>", "a2>", "<a2", "<s2", "<a1", "<s1"]
    # Sync interceptors never ran on an event loop's thread (they may block).
    assert outer_sync.on_a_loop == inner_sync.on_a_loop == [False, False]


def test_many_calls_at_once_through_an_awaiting_interceptor(make_service: Any) -> None:
    import concurrent.futures

    service, seen = make_service(AsyncTokenCheck())

    def one(i: int) -> bytes:
        method = "AsyncWho" if i % 2 else "Who"
        return bytes(service.call(S, method, b"", metadata=(*AUTH, ("x-request-id", str(i))),
                                  timeout=20).payload)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(64)))
    assert answers == [f"{'async' if i % 2 else 'sync'}:{i}".encode() for i in range(64)]
    assert seen["ran"] == 64
