"""Async calls of a service with interceptors run the interceptors on a few
threads (a sync interceptor may block); calls waiting for one of those
threads are bounded by the queued-calls limit, as calls waiting for the loop
are: with every interceptor thread blocked, the excess is refused at once
with RESOURCE_EXHAUSTED, and every admitted call is answered once the
interceptors go on."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

import pygrpc_ffi as pgf
from pygrpc_ffi._runtime import loop_calls as _loop_calls

S = "bound.Svc"
LIMIT = 2


class Gate(grpc.ServerInterceptor):  # type: ignore[misc]
    """Blocks every call in intercept_service until opened."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.entered = 0
        self.lock = threading.Lock()

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        with self.lock:
            self.entered += 1
        self.opened.wait(30)
        return continuation(details)


@pytest.fixture()
def small_limit() -> Iterator[None]:
    saved = _loop_calls._max_queued_calls
    _loop_calls.set_max_queued_calls(LIMIT)
    yield
    _loop_calls.set_max_queued_calls(saved)


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_blocked_interceptors_refuse_calls_past_the_limit(small_limit: None) -> None:
    gate = Gate()
    service = pgf.GrpcService(interceptors=[gate])

    @service.method(S, "Echo")
    async def echo(request: pgf.GrpcRequest) -> bytes:
        return bytes(request.payload)

    threads = _loop_calls._INTERCEPT_THREADS
    clients = concurrent.futures.ThreadPoolExecutor(threads + LIMIT)

    def call(i: int) -> Any:
        return service.call(S, "Echo", str(i).encode(), timeout=30)

    try:
        # One at a time: the same limit bounds the calls waiting for the loop.
        running = []
        for i in range(threads):
            running.append(clients.submit(call, i))
            wait_for(lambda n=i + 1: gate.entered == n, "an interceptor thread blocked")
        waiting = []
        for i in range(LIMIT):
            waiting.append(clients.submit(call, threads + i))
            wait_for(lambda n=threads + i + 1: _loop_calls._intercepting_calls == n,
                     "a call waiting for an interceptor thread")

        for _ in range(3):
            refused = service.call(S, "Echo", b"x", timeout=30)
            assert refused.code is pgf.StatusCode.RESOURCE_EXHAUSTED
            assert "wait for an interceptor thread" in refused.message
        assert gate.entered == threads  # refused without reaching an interceptor

        gate.opened.set()
        answers = [f.result(timeout=30) for f in running + waiting]
        assert [(a.code, a.payload) for a in answers] == [
            (pgf.StatusCode.OK, str(i).encode()) for i in range(threads + LIMIT)]
        wait_for(lambda: _loop_calls._intercepting_calls == 0, "every call done")
        # Room again: a call after the burst is served.
        assert service.call(S, "Echo", b"after", timeout=30).payload == b"after"
    finally:
        gate.opened.set()
        clients.shutdown()
        service.close()
