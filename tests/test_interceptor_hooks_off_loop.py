"""Native interceptor hooks never run blocking code on the package's event
loop (issue 24, finding 8: a sync ``after`` hook sleeping 2 s on the loop made
an unrelated ``async def`` call wait 1.70 s).  Sync hooks of async calls run
on hook threads, awaited by the call; ``async def`` hooks run on the loop; the
hook threads' backlog is bounded: past it, new calls are refused at once.
End to end: tests/e2e/test_aio_interceptors_served.py."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import pygrpc_ffi as pgf
from pygrpc_ffi._runtime import loop as _loop
from pygrpc_ffi._runtime import loop_calls as _loop_calls
from pygrpc_ffi.interceptors import Interceptor, ServerCall, _hooks

pytestmark = pytest.mark.timeout(60)

S = "hooks.Svc"
SLEEP = 2.0


class SlowSync(Interceptor):
    """Sync hooks that sleep for calls with ``x-slow`` in their metadata,
    and record whether each hook ran on the event loop's thread."""

    def __init__(self) -> None:
        self.sleeping = threading.Event()
        self.on_loop: list[tuple[str, str, bool]] = []
        self.afters: list[tuple[str, pgf.StatusCode | None]] = []

    def _note(self, hook: str, call: ServerCall) -> None:
        self.on_loop.append((hook, call.method, _loop.is_loop_thread()))
        if hook in call.metadata.get("x-slow", ""):
            self.sleeping.set()
            time.sleep(SLEEP)

    def before(self, call: ServerCall) -> None:
        self._note("before", call)

    def on_request(self, call: ServerCall, request: Any) -> None:
        self._note("on_request", call)

    def on_response(self, call: ServerCall, response: Any) -> None:
        self._note("on_response", call)

    def after(self, call: ServerCall) -> None:
        self._note("after", call)
        self.afters.append((call.method, call.code))


class AsyncAfter(Interceptor):
    """An ``async def`` after hook: awaited on the loop."""

    def __init__(self) -> None:
        self.loops: list[bool] = []

    async def after(self, call: ServerCall) -> None:
        await asyncio.sleep(0)
        self.loops.append(_loop.is_loop_thread())


@pytest.fixture()
def served() -> Iterator[tuple[pgf.GrpcService, SlowSync, AsyncAfter]]:
    slow, aafter = SlowSync(), AsyncAfter()
    service = pgf.GrpcService(interceptors=[slow, aafter])

    @service.method(S, "Slow")
    async def slow_method(request: pgf.GrpcRequest) -> bytes:
        return bytes(request.payload)

    @service.method(S, "Fast")
    async def fast(request: pgf.GrpcRequest) -> bytes:
        await asyncio.sleep(0)
        return bytes(request.payload)

    @service.method(S, "Chat", request_streaming=True, response_streaming=True)
    async def chat(requests: AsyncIterator[pgf.GrpcRequest]) -> AsyncIterator[bytes]:
        async for request in requests:
            yield bytes(request.payload)

    yield service, slow, aafter
    service.close()


def wait_for(predicate: Any, what: str, limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.mark.parametrize(("hook", "method"), [("after", "Slow"), ("on_response", "Slow"),
                                              ("on_request", "Chat")])
def test_a_sleeping_sync_hook_does_not_hold_other_async_calls(
        served: tuple[pgf.GrpcService, SlowSync, AsyncAfter], hook: str, method: str) -> None:
    service, slow, _ = served
    assert service.call(S, "Fast", b"warm", timeout=10).payload == b"warm"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # (A unary async call's on_request runs before its handler, off the loop.)
        sleeper = pool.submit(service.call_stream, S, method, [b"slow"],
                              metadata=[("x-slow", hook)], timeout=30)
        assert slow.sleeping.wait(10), "the slow hook never ran"
        started = time.monotonic()
        fast = service.call(S, "Fast", b"quick", timeout=30)
        took = time.monotonic() - started
        assert (fast.code, fast.payload) == (pgf.StatusCode.OK, b"quick")
        assert took < SLEEP / 2, f"an async call waited {took:.2f} s for a sleeping {hook} hook"
        assert list(sleeper.result(30).messages) == [b"slow"]
    wait_for(lambda: (method, pgf.StatusCode.OK) in slow.afters, "the slow call's after hook")


def test_sync_hooks_of_async_calls_never_run_on_the_loop(
        served: tuple[pgf.GrpcService, SlowSync, AsyncAfter]) -> None:
    service, slow, aafter = served
    assert service.call(S, "Fast", b"x", timeout=10).payload == b"x"
    chat = service.call_stream(S, "Chat", [b"a", b"b"], timeout=10)
    assert (chat.code, list(chat.messages)) == (pgf.StatusCode.OK, [b"a", b"b"])
    wait_for(lambda: len(slow.afters) == 2 and len(aafter.loops) == 2, "every after hook")
    hooks = sorted({(hook, method) for hook, method, _ in slow.on_loop})
    assert hooks == [(h, m) for h in ("after", "before", "on_request", "on_response")
                     for m in ("Chat", "Fast")]
    assert [entry for entry in slow.on_loop if entry[2]] == []
    assert sorted(slow.afters) == [("Chat", pgf.StatusCode.OK), ("Fast", pgf.StatusCode.OK)]
    assert aafter.loops == [True, True]  # async def hooks: on the loop


@pytest.fixture()
def small_limit() -> Iterator[int]:
    saved = _loop_calls._max_queued_calls
    _loop_calls.set_max_queued_calls(2)
    yield 2
    _loop_calls.set_max_queued_calls(saved)


def test_blocked_after_hooks_refuse_new_calls_past_the_limit(small_limit: int) -> None:
    """The hook threads' queue is bounded by the queued-calls limit: with
    every hook thread blocked and the limit reached, new calls are refused
    RESOURCE_EXHAUSTED, and every queued hook still runs once they go on."""
    gate = threading.Event()
    ran: list[str] = []

    class Blocking(Interceptor):
        def after(self, call: ServerCall) -> None:
            gate.wait(30)
            ran.append(str(call.metadata.get("x-n")))

    service = pgf.GrpcService(interceptors=[Blocking()])

    @service.method(S, "Fast")
    async def fast(request: pgf.GrpcRequest) -> bytes:
        return bytes(request.payload)

    backlog = _hooks._HOOK_THREADS + small_limit
    # Hook jobs of earlier tests in this process (a sleeping hook) count
    # against the same backlog: let them end first.
    wait_for(lambda: _hooks._hook_jobs == 0, "earlier tests' hook jobs", limit=60)
    try:
        for i in range(backlog):
            answer = service.call(S, "Fast", b"ok", metadata=[("x-n", str(i))], timeout=10)
            assert answer.code is pgf.StatusCode.OK
        wait_for(lambda: _hooks._hook_jobs == backlog, "the hook backlog")
        refused = service.call(S, "Fast", b"no", timeout=10)
        assert refused.code is pgf.StatusCode.RESOURCE_EXHAUSTED
        assert "interceptor hooks wait for a thread" in refused.message
        assert _hooks._hook_jobs == backlog  # no hook queued for it
        gate.set()
        wait_for(lambda: _hooks._hook_jobs == 0, "every queued hook")
        assert sorted(ran) == sorted(str(i) for i in range(backlog))
        assert service.call(S, "Fast", b"again", timeout=10).payload == b"again"
    finally:
        gate.set()
        service.close()


def test_sync_after_hooks_of_async_calls_run_on_hook_threads_whoever_finishes_first() -> None:
    """An async call that finishes on the loop before its dispatching thread
    looks races two finishers; either way its sync after hook runs on a hook
    thread, never on the thread that dispatched the call (here the caller's)."""
    threads: list[str] = []

    class Where(Interceptor):
        def after(self, call: ServerCall) -> None:
            threads.append(threading.current_thread().name)

    service = pgf.GrpcService(interceptors=[Where()])

    @service.method(S, "Fast")
    async def fast(request: pgf.GrpcRequest) -> bytes:
        return bytes(request.payload)

    calls = 400
    try:
        for _ in range(calls):
            assert service.call(S, "Fast", b"x", timeout=10).payload == b"x"
        wait_for(lambda: len(threads) == calls, "every after hook")
        elsewhere = [name for name in threads if not name.startswith("pygrpc_ffi-hooks")]
        assert elsewhere == []
    finally:
        service.close()
