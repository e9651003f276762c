"""The host side of calls driven from Python (``GrpcService.call_stream``,
the testing kit): request messages handed over without a copy, response
messages collected, on the thread that asks, as a C host would."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from typing import Any

from .._binding import calls, streams
from .._binding.base import EVENT_READ, EVENT_WRITE
from .._runtime.requests import new_message

_log = logging.getLogger("pygrpc_ffi")


def take_write_copy(call: Any) -> bytes | None:
    """The queued response message, copied, its bytes released and its write
    completed (for hosts that send copies: grpcio sends only bytes); None if
    no write is queued."""
    message = streams.take_write(call)
    if message is not None:
        streams.write_done_quietly(call, True)
    return message


class ThreadedReads:
    """Serves a stream's PGF_EVENT_READ as a host does: each read is done by
    :meth:`_read_one` on a reader thread of its own (the source of requests
    may block, like a network)."""

    _reader_name = "pygrpc_ffi-reader"

    def __init__(self) -> None:
        self._reads: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._reader: threading.Thread | None = None

    def _read_later(self, call: Any) -> None:
        if self._reader is None:
            self._reader = threading.Thread(target=self._read_loop, name=self._reader_name,
                                            daemon=True)
            self._reader.start()
        self._reads.put(calls.ref(call))

    def _read_loop(self) -> None:
        while True:
            call = self._reads.get()
            if call is None:
                return
            try:
                self._read_one(call)
            finally:
                calls.unref(call)

    def _read_one(self, call: Any) -> None:
        """Pushes the next request message (or the end) into the call."""
        raise NotImplementedError

    def close(self) -> None:
        """Stops the reader thread once it is done with its read."""
        self._reads.put(None)


class LocalStream(ThreadedReads):
    """Serves a call's stream events as a host does: each read takes the next
    item of ``requests`` on a reader thread of its own (the iterator may
    block, like a network); each write is copied into ``responses`` and
    completed at once."""

    _reader_name = "pygrpc_ffi-local-reader"

    def __init__(self, requests: Iterable[Any]) -> None:
        super().__init__()
        self._requests = iter(requests)
        self.responses: list[bytes] = []

    def event(self, call: Any, event: int) -> None:
        if event == EVENT_READ:
            self._read_later(call)
        elif event == EVENT_WRITE:
            self.take_write(call)

    def _read_one(self, call: Any) -> None:
        try:
            msg = new_message(next(self._requests))
        except StopIteration:
            streams.push_end_quietly(call)
            return
        except Exception:
            _log.exception("the request iterator failed; the call is cancelled")
            streams.push_end_quietly(call)
            calls.cancel(call)
            return
        streams.push_request_quietly(call, msg)

    def take_write(self, call: Any) -> bool:
        """Takes, copies and completes the queued write; False if none."""
        message = take_write_copy(call)
        if message is None:
            return False
        self.responses.append(message)
        return True
