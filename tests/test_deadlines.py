"""Calls completed from other threads: async handlers finishing on the
package's loop thread, ``call(..., timeout=...)`` and ``acall`` waiting for
them; deadlines that pass (DEADLINE_EXCEEDED for the caller, CancelledError
inside the handler) and the live counters returning to zero afterwards."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from waiting import wait_until

import pygrpc_ffi.service as service_module
from pygrpc_ffi import GrpcRequest, GrpcService, StatusCode, live_objects

pytestmark = pytest.mark.timeout(30, method="thread")




class SlowHandler:
    """An async handler that sleeps, recording whether it was cancelled."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        self.thread: threading.Thread | None = None

    async def handle_request(self, request: GrpcRequest) -> bytes:
        self.thread = threading.current_thread()
        self.started.set()
        try:
            await asyncio.sleep(self.seconds)
            return b"slow answer"
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self.finished.set()


# ------------------------------------------------------------ completions


def test_call_with_timeout_waits_for_an_async_completion(service: GrpcService) -> None:
    handler = SlowHandler(0.05)
    service.register_handler("pkg.Svc", handler)
    result = service.call("pkg.Svc", "M", timeout=5)
    assert (result.code, result.payload) == (StatusCode.OK, b"slow answer")
    assert handler.thread is not threading.current_thread()
    assert not handler.cancelled.is_set()


def test_call_with_timeout_on_a_sync_handler(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", lambda r: b"sync " + bytes(r.payload))
    result = service.call("pkg.Svc", "M", b"x", timeout=5)
    assert (result.code, result.payload) == (StatusCode.OK, b"sync x")
    assert service.call("pkg.Nope", "M", timeout=5).code is StatusCode.UNIMPLEMENTED


def test_many_concurrent_acalls_complete_from_the_loop_thread(service: GrpcService) -> None:
    completed_on: set[str] = set()

    async def handler(request: GrpcRequest) -> bytes:
        await asyncio.sleep(0.001 * (bytes(request.payload)[0] % 5))
        completed_on.add(threading.current_thread().name)
        return bytes(request.payload) * 2

    service.register_handler("pkg.Svc", handler)

    async def main() -> list[Any]:
        return await asyncio.gather(*(
            service.acall("pkg.Svc", "M", bytes([i]), timeout=10 if i % 2 else None)
            for i in range(200)
        ))

    results = asyncio.run(main())
    assert [r.code for r in results] == [StatusCode.OK] * 200
    assert [r.payload for r in results] == [bytes([i]) * 2 for i in range(200)]
    assert completed_on == {"pygrpc_ffi-asyncio"}


def test_calls_from_many_threads_complete_on_the_loop_thread(service: GrpcService) -> None:
    async def handler(request: GrpcRequest) -> bytes:
        await asyncio.sleep(0)
        return b"from loop " + bytes(request.payload)

    service.register_handler("pkg.Svc", handler)
    bad: list[Any] = []

    def worker(n: int) -> None:
        for i in range(50):
            payload = f"{n}-{i}".encode()
            r = service.call("pkg.Svc", "M", payload, timeout=10 if i % 2 else None)
            if (r.code, r.payload) != (StatusCode.OK, b"from loop " + payload):
                bad.append(r)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    assert bad == []


# ------------------------------------------------------------- deadlines


def test_call_timeout_on_a_slow_async_handler_is_deadline_exceeded(service: GrpcService) -> None:
    handler = SlowHandler(10)
    service.register_handler("pkg.Svc", handler)
    start = time.monotonic()
    result = service.call("pkg.Svc", "M", b"payload", timeout=0.1)
    elapsed = time.monotonic() - start
    assert result.code is StatusCode.DEADLINE_EXCEEDED
    assert result.payload == b""
    assert 0.09 <= elapsed < 2.0
    # The handler sees the cancellation as asyncio.CancelledError.
    assert handler.cancelled.wait(5)
    assert handler.finished.wait(5)
    assert wait_until(lambda: live_objects()["calls"] == 0)


def test_acall_timeout_on_a_slow_async_handler_is_deadline_exceeded(service: GrpcService) -> None:
    handler = SlowHandler(10)
    service.register_handler("pkg.Svc", handler)

    async def main() -> Any:
        return await service.acall("pkg.Svc", "M", b"payload", timeout=0.1)

    start = time.monotonic()
    result = asyncio.run(main())
    assert result.code is StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < 2.0
    assert handler.cancelled.wait(5)
    assert wait_until(lambda: live_objects()["calls"] == 0)


@pytest.mark.parametrize("api", ["call", "acall"])
def test_zero_timeout_is_deadline_exceeded_and_the_call_still_ends(
    service: GrpcService, api: str,
) -> None:
    # Cancelled before its coroutine could start, the call must still be
    # finished (and freed), whether or not the handler got to run.
    handler = SlowHandler(10)
    service.register_handler("pkg.Svc", handler)
    for _ in range(5):
        if api == "call":
            result = service.call("pkg.Svc", "M", timeout=0)
        else:
            result = asyncio.run(service.acall("pkg.Svc", "M", timeout=0))
        assert result.code is StatusCode.DEADLINE_EXCEEDED
        assert wait_until(lambda: live_objects()["calls"] == 0), live_objects()
    assert not handler.started.is_set() or handler.cancelled.is_set()


def test_handler_sees_the_deadline_and_can_respect_it(service: GrpcService) -> None:
    remaining: list[float | None] = []

    async def handler(request: GrpcRequest) -> bytes:
        left = request.time_remaining()
        remaining.append(left)
        await asyncio.sleep(max(0.0, (left or 0) - 0.6))
        return b"just in time"

    service.register_handler("pkg.Svc", handler)
    result = service.call("pkg.Svc", "M", timeout=1.0)
    assert (result.code, result.payload) == (StatusCode.OK, b"just in time")
    assert remaining[0] is not None and 0.5 < remaining[0] <= 1.0


def test_cancelling_the_task_awaiting_acall_cancels_the_call(service: GrpcService) -> None:
    handler = SlowHandler(10)
    service.register_handler("pkg.Svc", handler)

    async def main() -> None:
        task = asyncio.create_task(service.acall("pkg.Svc", "M", b"x"))
        assert await asyncio.to_thread(handler.started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert handler.cancelled.wait(5)
    assert wait_until(lambda: live_objects()["calls"] == 0)


def test_cancellation_runs_the_handlers_cleanup(service: GrpcService) -> None:
    cleaned = threading.Event()

    async def handler(request: GrpcRequest) -> bytes:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0)  # cleanup may still await
            cleaned.set()
        return b""

    service.register_handler("pkg.Svc", handler)
    assert service.call("pkg.Svc", "M", timeout=0.05).code is StatusCode.DEADLINE_EXCEEDED
    assert cleaned.wait(5)


def test_timed_out_calls_leak_nothing(service: GrpcService) -> None:
    handlers = [SlowHandler(10) for _ in range(20)]
    for i, handler in enumerate(handlers):
        service.register_method("pkg.Svc", f"M{i}", handler)

    def worker(i: int) -> None:
        service.call("pkg.Svc", f"M{i}", b"x" * 100, timeout=0.05)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(h.cancelled.wait(5) for h in handlers)
    assert wait_until(lambda: live_objects()["calls"] == 0 and live_objects()["buffers"] == 0)


def test_calls_near_their_deadline_always_get_ok_or_deadline_exceeded(
    service: GrpcService,
) -> None:
    async def handler(request: GrpcRequest) -> bytes:
        await asyncio.sleep(0.002)
        return b"ok"

    service.register_handler("pkg.Svc", handler)
    codes: list[StatusCode] = []

    def worker() -> None:
        for _ in range(60):
            codes.append(service.call("pkg.Svc", "M", timeout=0.002).code)

    async def async_worker() -> None:
        for _ in range(60):
            codes.append((await service.acall("pkg.Svc", "M", timeout=0.002)).code)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    threads.append(threading.Thread(target=asyncio.run, args=(async_worker(),)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(codes) == 240
    assert set(codes) <= {StatusCode.OK, StatusCode.DEADLINE_EXCEEDED}
    assert wait_until(lambda: live_objects()["calls"] == 0)


# --------------------------------- races made deterministic by a slow cancel


class SlowCancelLib:
    """Stands in for the binding's calls module inside pygrpc_ffi.service,
    widening the window around pgf_call_cancel as a preempted thread would."""

    def __init__(self, real: Any, before: float = 0.0, after: float = 0.0) -> None:
        self._real = real
        self.before = before
        self.after = after
        self.cancel_on_freed_call = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def cancel(self, call: Any) -> None:
        time.sleep(self.before)
        if live_objects()["calls"] == 0:
            # The only call of the test is gone: cancelling it would touch
            # freed memory.  Record it instead of doing it.
            self.cancel_on_freed_call += 1
            return
        self._real.cancel(call)
        time.sleep(self.after)


def test_call_timeout_is_deadline_exceeded_even_if_the_cancelled_handler_ends_first(
    service: GrpcService, monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = SlowHandler(10)
    service.register_handler("pkg.Svc", handler)
    # The handler ends (CANCELLED) before call() looks at the call again.
    monkeypatch.setattr(service_module, "calls", SlowCancelLib(service_module.calls, after=0.2))
    result = service.call("pkg.Svc", "M", timeout=0.05)
    assert handler.cancelled.wait(5)
    assert result.code is StatusCode.DEADLINE_EXCEEDED


def test_acall_timeout_is_deadline_exceeded_even_if_the_cancelled_handler_ends_first(
    service: GrpcService, monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = SlowHandler(10)
    service.register_handler("pkg.Svc", handler)
    monkeypatch.setattr(service_module, "calls", SlowCancelLib(service_module.calls, after=0.2))
    result = asyncio.run(service.acall("pkg.Svc", "M", timeout=0.05))
    assert handler.cancelled.wait(5)
    assert result.code is StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize("api", ["call", "acall"])
def test_cancel_after_timeout_never_touches_a_freed_call(
    service: GrpcService, monkeypatch: pytest.MonkeyPatch, api: str,
) -> None:
    # The handler finishes just after the timeout, while the caller is about
    # to cancel: the caller must still hold its reference to the call.
    handler = SlowHandler(0.1)
    service.register_handler("pkg.Svc", handler)
    slow = SlowCancelLib(service_module.calls, before=0.5)
    monkeypatch.setattr(service_module, "calls", slow)
    if api == "call":
        result = service.call("pkg.Svc", "M", timeout=0.05)
    else:
        result = asyncio.run(service.acall("pkg.Svc", "M", timeout=0.05))
    assert handler.finished.is_set() and not handler.cancelled.is_set()
    assert slow.cancel_on_freed_call == 0
    # It finished before the cancel: either answer is right, but not another.
    assert result.code in (StatusCode.OK, StatusCode.DEADLINE_EXCEEDED)


def test_blocking_call_from_an_async_handler_is_refused_not_deadlocked(
        service: GrpcService) -> None:
    async def inner(request: GrpcRequest) -> bytes:
        return b"inner"

    async def outer(request: GrpcRequest) -> bytes:
        try:
            service.call("pkg.Svc", "Inner")
            refused = b"not refused"
        except RuntimeError as exc:
            refused = b"refused" if "acall" in str(exc) else b"wrong message"
        result = await service.acall("pkg.Svc", "Inner", timeout=5)
        return refused + b"," + result.payload

    service.register_method("pkg.Svc", "Inner", inner)
    service.register_method("pkg.Svc", "Outer", outer)
    result = service.call("pkg.Svc", "Outer", timeout=10)
    assert result.code is StatusCode.OK and result.payload == b"refused,inner"


def test_call_timeout_on_a_slow_sync_handler_is_deadline_exceeded(service: GrpcService) -> None:
    def slow(request: GrpcRequest) -> bytes:
        time.sleep(0.5)
        return b"too late"

    service.register_method("pkg.Svc", "Slow", slow)
    result = service.call("pkg.Svc", "Slow", timeout=0.1)
    assert (result.code, result.payload) == (StatusCode.DEADLINE_EXCEEDED, b"")
    assert asyncio.run(service.acall("pkg.Svc", "Slow", timeout=0.1)).code \
        is StatusCode.DEADLINE_EXCEEDED
    # In time, the same handler's answer stands.
    assert service.call("pkg.Svc", "Slow", timeout=5).payload == b"too late"
    assert asyncio.run(service.acall("pkg.Svc", "Slow", timeout=5)).payload == b"too late"
