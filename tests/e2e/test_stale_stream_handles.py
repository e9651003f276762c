"""A streaming handler's request iterator used after its call ended (handed
to a thread, stored, or still being read when the handler returns) holds
its own reference to the call: the late read fails with a clear error,
never reaches freed memory or another call's bytes, and the call is freed
once the iterator goes.  Both engines; the test command also runs this file
against the ASan + UBSan host."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from conftest import ENGINES, Server

SVC = "/e2e.Stale/"
CANCELLED = "StreamCancelled: CANCELLED: the call "
FINISHED = CANCELLED + "has finished"


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    srv = Server(request.param, module="stale_stream_handlers")
    yield srv
    assert srv.stop() == 0


def _unary(ch: grpc.Channel, method: str, payload: bytes = b"") -> bytes:
    return ch.unary_unary(SVC + method)(payload, timeout=10)


def _stream(ch: grpc.Channel, method: str, messages: list[bytes]) -> bytes:
    return ch.stream_unary(SVC + method)(iter(messages), timeout=10)


def _outcomes(ch: grpc.Channel, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        got = json.loads(_unary(ch, "Outcomes"))
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def _held_back(first: bytes, answered: threading.Event) -> Iterator[bytes]:
    """Sends one message, then holds the stream open until the answer came."""
    yield first
    answered.wait(10)


def _call_holding_back(ch: grpc.Channel, method: str, first: bytes) -> bytes:
    answered = threading.Event()
    future = ch.stream_unary(SVC + method).future(_held_back(first, answered), timeout=10)
    try:
        return future.result()
    finally:
        answered.set()


@pytest.mark.parametrize("method,answer", [("KeepForThread", b"kept"),
                                           ("ReturnWhileThreadReads", b"returned"),
                                           ("KeepAsync", b"kept")])
def test_a_request_iterator_read_after_its_call_ended_fails_cleanly(
        server: Server, method: str, answer: bytes) -> None:
    with server.channel() as ch:
        _unary(ch, "Forget")
        rounds = 20
        for i in range(rounds):
            if method == "ReturnWhileThreadReads":
                # The thread is blocked in a read when the handler returns.
                assert _call_holding_back(ch, method, b"first-%d" % i) == answer
            else:
                assert _stream(ch, method, [b"first-%d" % i, b"second-%d" % i]) == answer
            # Other clients' calls run meanwhile: a late read must never take
            # their bytes.
            assert _stream(ch, "Total", [b"a%d" % i, b"b%d" % i]) == b"a%d|b%d" % (i, i)
        outcomes = _outcomes(ch, rounds)
        assert len(outcomes) == rounds
        # The late read either still got this call's own first message (read
        # before the call ended) or was told the call had finished.
        for outcome in outcomes:
            assert outcome.startswith(CANCELLED) or outcome.startswith("message b'first-"), outcome
        assert any(o.startswith(CANCELLED) for o in outcomes)
        if method != "ReturnWhileThreadReads":  # read after the handler was done
            assert FINISHED in outcomes
        assert not any("b'a" in o or "b'b" in o for o in outcomes)
        _unary(ch, "Forget")  # the kept iterators go, and their calls with them
        deadline = time.monotonic() + 10
        while int(_unary(ch, "LiveCalls")) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert int(_unary(ch, "LiveCalls")) == 1
