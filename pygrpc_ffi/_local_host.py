"""The host side of calls driven from Python (``GrpcService.call_stream``,
the testing kit): request messages handed over without a copy, response
messages collected, on the thread that asks, as a C host would."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from typing import Any

from ._handles import handles
from ._native import ffi, lib

_log = logging.getLogger("pygrpc_ffi")


def new_message(payload: Any) -> Any:
    """An OWNED pgf_message over a Python bytes-like object, without a copy;
    the object lives until the message is released."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        serialize = getattr(payload, "SerializeToString", None)
        if serialize is None:
            raise TypeError(f"a request message must be bytes-like, not {type(payload).__name__}")
        payload = serialize()
    buf = ffi.from_buffer(payload)
    if not len(buf):
        msg = lib.pgf_message_new(ffi.NULL, 0, ffi.NULL, ffi.NULL)
    else:
        msg = lib.pgf_message_new(buf, len(buf), lib._pgf_py_release_buffer, handles.add(buf))
    if msg == ffi.NULL:
        raise MemoryError("cannot allocate a message")
    return msg


def take_write_copy(call: Any) -> bytes | None:
    """The queued response message, copied, its bytes released and its write
    completed (for hosts that send copies: grpcio sends only bytes); None if
    no write is queued."""
    data = ffi.new("const uint8_t **")
    size = ffi.new("size_t *")
    release = ffi.new("pgf_release_fn *")
    ctx = ffi.new("void **")
    if lib.pgf_call_take_write(call, data, size, release, ctx, ffi.NULL) != lib.PGF_OK:
        return None
    message = ffi.buffer(data[0], size[0])[:] if size[0] else b""
    if release[0] != ffi.NULL:
        release[0](ctx[0])
    lib.pgf_call_write_done(call, 1)
    return message


class LocalStream:
    """Serves a call's stream events as a host does: each read takes the next
    item of ``requests`` on a reader thread of its own (the iterator may
    block, like a network); each write is copied into ``responses`` and
    completed at once."""

    def __init__(self, requests: Iterable[Any]) -> None:
        self._requests = iter(requests)
        self.responses: list[bytes] = []
        self._reads: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._reader: threading.Thread | None = None

    def event(self, call: Any, event: int) -> None:
        if event == lib.PGF_EVENT_READ:
            if self._reader is None:
                self._reader = threading.Thread(target=self._read_loop,
                                                name="pygrpc_ffi-local-reader", daemon=True)
                self._reader.start()
            self._reads.put(lib.pgf_call_ref(call))
        elif event == lib.PGF_EVENT_WRITE:
            self.take_write(call)

    def _read_loop(self) -> None:
        while True:
            call = self._reads.get()
            if call is None:
                return
            try:
                self._read_one(call)
            finally:
                lib.pgf_call_unref(call)

    def _read_one(self, call: Any) -> None:
        try:
            msg = new_message(next(self._requests))
        except StopIteration:
            lib.pgf_call_push_request(call, ffi.NULL)
            return
        except Exception:
            _log.exception("the request iterator failed; the call is cancelled")
            lib.pgf_call_push_request(call, ffi.NULL)
            lib.pgf_call_cancel(call)
            return
        lib.pgf_call_push_request(call, msg)

    def close(self) -> None:
        """Stops the reader thread once it is done with its read."""
        self._reads.put(None)

    def take_write(self, call: Any) -> bool:
        """Takes, copies and completes the queued write; False if none."""
        message = take_write_copy(call)
        if message is None:
            return False
        self.responses.append(message)
        return True
