"""A bounded soak through a real server: mixed calls, deadlines, cancels and
failures from several client threads; every call gets a status it may get,
and afterwards the server's live C objects are back to what serving needs."""

from __future__ import annotations

import json
import random
import threading
import time

import grpc
import pytest
from conftest import Server

pytestmark = pytest.mark.timeout(180)

OK, DEADLINE, CANCELLED, INTERNAL = (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED,
                                     grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL)
# What each kind of call may end with (CANCELLED: the client cancelled it).
ALLOWED = {
    "echo": {OK, CANCELLED},
    "sleep_async": {OK, DEADLINE, CANCELLED},
    "sleep_sync": {OK, DEADLINE, CANCELLED},
    "raise": {INTERNAL, CANCELLED},
    "bad_metadata": {INTERNAL, CANCELLED},
}


def _live(channel: grpc.Channel) -> dict[str, int]:
    return json.loads(channel.unary_unary("/e2e.Control/Live")(b"", timeout=10))


def _one_call(channel: grpc.Channel, rng: random.Random) -> tuple[str, grpc.StatusCode]:
    kind = rng.choice(sorted(ALLOWED))
    method, payload, timeout = {
        "echo": ("Echo", rng.randbytes(rng.choice([0, 10, 5000, 300_000])), 20.0),
        "sleep_async": ("SleepAsync", b"0.05", rng.uniform(0.01, 0.2)),
        "sleep_sync": ("SleepSync", b"0.05", rng.uniform(0.01, 0.2)),
        "raise": ("Raise", b"", 20.0),
        "bad_metadata": ("BadMetadata", b"Bad-Key", 20.0),
    }[kind]
    future = channel.unary_unary(f"/e2e.Control/{method}").future(payload, timeout=timeout)
    if rng.random() < 0.1:
        time.sleep(rng.uniform(0, 0.02))
        future.cancel()
    try:
        answer = future.result()
    except grpc.FutureCancelledError:
        return kind, CANCELLED
    except grpc.RpcError as err:
        return kind, err.code()
    if kind == "echo":
        assert answer == payload
    return kind, OK


def test_mixed_load_ends_with_no_leaked_calls_or_buffers(server: Server) -> None:
    with server.channel() as channel:
        before = _live(channel)
        outcomes: list[tuple[str, grpc.StatusCode]] = []
        lock = threading.Lock()

        def client(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(250):
                outcome = _one_call(channel, rng)
                with lock:
                    outcomes.append(outcome)

        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert len(outcomes) == 1500
        unexpected = [(kind, code) for kind, code in outcomes if code not in ALLOWED[kind]]
        assert not unexpected, unexpected[:10]
        assert channel.unary_unary("/e2e.Control/Echo")(b"alive", timeout=10) == b"alive"

        # Handlers still sleeping after their deadline finish within a second.
        deadline = time.monotonic() + 15
        after = _live(channel)
        while time.monotonic() < deadline and (after["calls"] > 1 or after["buffers"] > 0):
            time.sleep(0.1)
            after = _live(channel)
        assert after["calls"] == 1  # the Live call itself
        assert after["buffers"] == 0
        assert after["handlers"] == before["handlers"]
        assert after["names"] == before["names"]
