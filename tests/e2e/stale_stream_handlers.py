"""Streaming handlers that keep their request iterator past the call: one
hands it to a thread that reads after the handler returned, one leaves a
thread blocked in a read when it returns, and an async one reads a stored
async iterator from a later task.  `Outcomes` reports what each late read
got, as JSON; `Total` checks that a later call still gets its own bytes."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pygrpc_ffi as pgf

service = pgf.default_service()
SVC = "e2e.Stale"
_lock = threading.Lock()
_outcomes: list[str] = []
_kept: list[Any] = []  # iterators kept past their call, as a careless handler would


def _record(outcome: str) -> None:
    with _lock:
        _outcomes.append(outcome)


def _late_read(requests: Iterator[pgf.GrpcRequest], delay: float) -> None:
    time.sleep(delay)
    try:
        request = next(requests)
        _record(f"message {bytes(request.payload)!r}")
    except StopIteration:
        _record("end")
    except Exception as exc:
        _record(f"{type(exc).__name__}: {exc}")


@service.method(SVC, "KeepForThread", request_streaming=True)
def keep_for_thread(requests: Iterator[pgf.GrpcRequest]) -> bytes:
    threading.Thread(target=_late_read, args=(requests, 0.3), daemon=True).start()
    return b"kept"


def _read_all(requests: Iterator[pgf.GrpcRequest]) -> None:
    try:
        for _ in requests:
            pass
        _record("end")
    except Exception as exc:
        _record(f"{type(exc).__name__}: {exc}")


@service.method(SVC, "ReturnWhileThreadReads", request_streaming=True)
def return_while_thread_reads(requests: Iterator[pgf.GrpcRequest]) -> bytes:
    threading.Thread(target=_read_all, args=(requests,), daemon=True).start()
    time.sleep(0.1)  # the reader waits for a message the client holds back
    return b"returned"


@service.method(SVC, "KeepAsync", request_streaming=True)
async def keep_async(requests: AsyncIterator[pgf.GrpcRequest]) -> bytes:
    _kept.append(requests)

    async def read_later() -> None:
        await asyncio.sleep(0.3)
        try:
            request = await requests.__anext__()
            _record(f"message {bytes(request.payload)!r}")
        except StopAsyncIteration:
            _record("end")
        except Exception as exc:
            _record(f"{type(exc).__name__}: {exc}")

    _kept.append(asyncio.get_running_loop().create_task(read_later()))
    return b"kept"


@service.method(SVC, "Total", request_streaming=True)
def total(requests: Iterator[pgf.GrpcRequest]) -> bytes:
    return b"|".join(bytes(r.payload) for r in requests)


@service.method(SVC, "Outcomes")
def outcomes(request: pgf.GrpcRequest) -> bytes:
    with _lock:
        return json.dumps(_outcomes).encode()


@service.method(SVC, "Forget")
def forget(request: pgf.GrpcRequest) -> bytes:
    """Drops the kept iterators and outcomes: the calls they held may go."""
    with _lock:
        _outcomes.clear()
    _kept.clear()
    return b"ok"


@service.method(SVC, "LiveCalls")
def live_calls(request: pgf.GrpcRequest) -> bytes:
    """The server's live pgf_call objects (this call counts as one)."""
    from pygrpc_ffi._runtime import live_objects

    return b"%d" % live_objects()["calls"]
