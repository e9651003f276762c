"""A native interceptor's sync hook that blocks (2 s) for one ``async def``
call does not hold another async call, on a real server and for grpcio
clients (issue 24, finding 8: a sleeping sync ``after`` hook ran on the event
loop and made an unrelated async call wait 1.70 s).  Both engines."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator

import pytest
from conftest import ENGINES, Server
from slow_hooks import SLEEP

pytestmark = pytest.mark.timeout(120)

S = "obs.Native"


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = Server(request.param, "--interceptor", "slow_hooks:SlowHooks",
                 module="observed_handlers")
    yield srv
    assert srv.stop() == 0


@pytest.mark.parametrize(("hook", "method"), [("after", "AsyncUnary"),
                                              ("on_response", "AsyncUnary"),
                                              ("on_request", "AsyncBidi")])
def test_a_blocking_sync_hook_does_not_hold_other_async_calls(
        server: Server, hook: str, method: str) -> None:
    with server.channel() as channel:
        fast = channel.unary_unary(f"/{S}/AsyncUnary")
        assert fast(b"warm", timeout=10)  # the loop and its threads are up
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            if method == "AsyncBidi":
                stream = channel.stream_stream(f"/{S}/AsyncBidi")
                slow = pool.submit(lambda: list(stream(iter([b"x"]), timeout=30,
                                                       metadata=[("x-slow", hook)])))
            else:
                slow = pool.submit(fast, b"slow", timeout=30, metadata=[("x-slow", hook)])
            time.sleep(0.3)  # the slow call's hook is asleep by now
            took = []
            for _ in range(3):
                started = time.monotonic()
                assert fast(b"quick", timeout=30)
                took.append(time.monotonic() - started)
            assert slow.result(30)
    assert max(took) < SLEEP / 2, f"async calls waited {took} for a sleeping {hook} hook"
