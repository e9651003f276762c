"""Many threads at once: dispatchers calling while others register and
unregister (sync and async handlers, with and without timeouts), racing
registrations of one name, unregistering or closing while calls are in
flight.  Every call gets a valid status from the right handler, nothing
crashes, and the live counters return to zero."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import pytest
from waiting import wait_until

from pygrpc_ffi import GrpcRequest, GrpcService, StatusCode, live_objects

pytestmark = pytest.mark.timeout(60, method="thread")

SERVICES = [f"pkg.S{i}" for i in range(4)]
METHODS = [f"M{i}" for i in range(3)]


def make_handler(tag: str, asynchronous: bool) -> Any:
    answer = tag.encode()

    if asynchronous:
        async def async_handler(request: GrpcRequest) -> bytes:
            await asyncio.sleep(0)
            return answer + b"|" + bytes(request.payload)

        return async_handler

    def sync_handler(request: GrpcRequest) -> bytes:
        return answer + b"|" + bytes(request.payload)

    return sync_handler




def test_dispatch_while_registering_and_unregistering() -> None:
    service = GrpcService()
    stop = threading.Event()
    problems: list[str] = []
    counts = {"ok": 0, "unimplemented": 0, "registered": 0, "unregistered": 0}
    lock = threading.Lock()

    def registrar(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            svc = rng.choice(SERVICES)
            asynchronous = rng.random() < 0.5
            try:
                if rng.random() < 0.5:
                    method = rng.choice(METHODS)
                    if rng.random() < 0.5:
                        service.register_method(
                            svc, method, make_handler(f"{svc}/{method}", asynchronous))
                        key = "registered"
                    else:
                        service.unregister_method(svc, method)
                        key = "unregistered"
                elif rng.random() < 0.5:
                    service.register_handler(svc, make_handler(f"{svc}/*", asynchronous))
                    key = "registered"
                else:
                    service.unregister_handler(svc)
                    key = "unregistered"
            except (ValueError, KeyError):
                continue  # another registrar got there first
            with lock:
                counts[key] += 1
            # Read-side calls racing the writes.
            listed = service.list_services()
            if listed != sorted(listed) or not set(listed) <= set(SERVICES):
                problems.append(f"bad listing {listed}")
            service.has_service(svc)

    def dispatcher(seed: int) -> None:
        rng = random.Random(seed)
        n = 0
        while not stop.is_set():
            svc, method = rng.choice(SERVICES), rng.choice(METHODS)
            payload = f"{seed}:{n}".encode()
            n += 1
            timeout = 10.0 if rng.random() < 0.3 else None
            result = service.call(svc, method, payload, timeout=timeout)
            if result.code is StatusCode.OK:
                tag, _, echoed = result.payload.partition(b"|")
                if echoed != payload or tag.decode() not in (f"{svc}/{method}", f"{svc}/*"):
                    problems.append(f"{svc}/{method} answered by {result.payload!r}")
                key = "ok"
            elif result.code is StatusCode.UNIMPLEMENTED:
                key = "unimplemented"
            else:
                problems.append(f"{svc}/{method}: unexpected {result.code!r} {result.message}")
                continue
            with lock:
                counts[key] += 1

    async def async_dispatcher() -> None:
        rng = random.Random(99)
        while not stop.is_set():
            svc, method = rng.choice(SERVICES), rng.choice(METHODS)
            results = await asyncio.gather(
                *(service.acall(svc, method, b"a", timeout=10) for _ in range(8)))
            for result in results:
                if result.code not in (StatusCode.OK, StatusCode.UNIMPLEMENTED):
                    problems.append(f"acall {svc}/{method}: {result.code!r}")

    threads = [threading.Thread(target=registrar, args=(i,)) for i in range(2)]
    threads += [threading.Thread(target=dispatcher, args=(100 + i,)) for i in range(4)]
    threads.append(threading.Thread(target=asyncio.run, args=(async_dispatcher(),)))
    try:
        for t in threads:
            t.start()
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    alive = [t for t in threads if t.is_alive()]
    service.close()
    assert not alive, "a thread hung"
    assert problems == []
    assert counts["ok"] > 50 and counts["unimplemented"] > 0
    assert counts["registered"] > 20 and counts["unregistered"] > 20
    assert wait_until(lambda: not any(live_objects().values())), live_objects()


def test_concurrent_registration_of_one_name_succeeds_once(service: GrpcService) -> None:
    for round_ in range(20):
        barrier = threading.Barrier(6)
        outcomes: list[str] = []

        def register(i: int, round_: int = round_, barrier: threading.Barrier = barrier,
                     outcomes: list[str] = outcomes) -> None:
            barrier.wait()
            try:
                service.register_handler(f"pkg.Race{round_}", make_handler(f"winner{i}", False))
                outcomes.append(f"winner{i}")
            except ValueError:
                outcomes.append("ValueError")

        threads = [threading.Thread(target=register, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        winners = [o for o in outcomes if o != "ValueError"]
        assert len(winners) == 1 and outcomes.count("ValueError") == 5
        assert service.call(f"pkg.Race{round_}", "M").payload == f"{winners[0]}|".encode()
    assert live_objects()["handlers"] == 20


def test_concurrent_unregistration_of_one_name_succeeds_once(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", make_handler("x", False))
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def unregister() -> None:
        barrier.wait()
        try:
            service.unregister_handler("pkg.Svc")
            outcomes.append("ok")
        except KeyError:
            outcomes.append("KeyError")

    threads = [threading.Thread(target=unregister) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(outcomes) == ["KeyError"] * 5 + ["ok"]
    assert live_objects()["handlers"] == 0


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_unregistering_during_a_call_lets_it_finish(service: GrpcService,
                                                    asynchronous: bool) -> None:
    entered = threading.Event()
    release = threading.Event()

    if asynchronous:
        async def handler(request: GrpcRequest) -> bytes:
            entered.set()
            while not release.is_set():
                await asyncio.sleep(0.005)
            return b"finished after unregister"
    else:
        def handler(request: GrpcRequest) -> bytes:  # type: ignore[misc]
            entered.set()
            release.wait(10)
            return b"finished after unregister"

    service.register_handler("pkg.Svc", handler)
    results: list[Any] = []
    caller = threading.Thread(target=lambda: results.append(service.call("pkg.Svc", "M")))
    caller.start()
    assert entered.wait(5)
    service.unregister_handler("pkg.Svc")
    assert not service.has_service("pkg.Svc")
    assert service.call("pkg.Svc", "M").code is StatusCode.UNIMPLEMENTED
    # The registration stays alive while its call is in flight.
    assert live_objects()["handlers"] == 1
    release.set()
    caller.join(10)
    assert (results[0].code, results[0].payload) == (StatusCode.OK, b"finished after unregister")
    assert wait_until(lambda: live_objects()["handlers"] == 0)


def test_closing_a_service_during_a_call_lets_it_finish() -> None:
    service = GrpcService()
    entered = threading.Event()
    release = threading.Event()

    async def handler(request: GrpcRequest) -> bytes:
        entered.set()
        while not release.is_set():
            await asyncio.sleep(0.005)
        return b"outlived the registry"

    service.register_handler("pkg.Svc", handler)
    results: list[Any] = []
    caller = threading.Thread(target=lambda: results.append(service.call("pkg.Svc", "M",
                                                                         timeout=10)))
    caller.start()
    assert entered.wait(5)
    service.close()
    # Freed as soon as the caller has left the registry (it may still be
    # inside the dispatch when the handler starts), while the call goes on.
    assert wait_until(lambda: live_objects()["registries"] == 0)
    assert live_objects()["calls"] == 1
    release.set()
    caller.join(10)
    assert (results[0].code, results[0].payload) == (StatusCode.OK, b"outlived the registry")
    assert wait_until(lambda: not any(live_objects().values())), live_objects()


def test_sync_and_async_handlers_from_many_threads(service: GrpcService) -> None:
    service.register_method("pkg.Svc", "Sync", make_handler("sync", False))
    service.register_method("pkg.Svc", "Async", make_handler("async", True))
    problems: list[Any] = []

    def worker(n: int) -> None:
        for i in range(100):
            method = "Async" if (n + i) % 2 else "Sync"
            payload = bytes([n, i]) * (i % 7)
            result = service.call("pkg.Svc", method, payload)
            expected = method.lower().encode() + b"|" + payload
            if (result.code, result.payload) != (StatusCode.OK, expected):
                problems.append((method, result))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert problems == []
    # The loop thread drops its reference just after finishing the call.
    assert wait_until(lambda: live_objects()["calls"] == 0)
