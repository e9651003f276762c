"""Live streaming calls for the testing kit: a call of any kind dispatched
into a service's C registry, served by a host of our own (the request
iterator read on a thread as the handler asks, each response message handed
to the caller as soon as the handler writes it)."""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import _runtime
from .._binding import calls, streams
from .._binding.base import (
    KIND_CLIENT_STREAMING,
    KIND_SERVER_STREAMING,
    KIND_UNARY,
    PgfError,
)
from .._host.calls import read_result
from .._host.local_stream import LocalStream
from ..metadata import MetadataLike, MetadataValue
from ..service import CallResult, GrpcService
from ..status import StatusCode

__all__ = ["LOCALLY_CANCELLED", "StreamingCall"]

#: What a grpcio client reports when it cancels a call itself.
LOCALLY_CANCELLED = "Locally cancelled by application!"

_DONE = object()  # the call finished: its result follows in StreamingCall._result
_ENDED = object()  # cancelled or past its deadline on the client side


class _LiveHost(LocalStream):
    """LocalStream that also hands each response message to the caller."""

    def __init__(self, requests: Iterable[Any], out: queue.SimpleQueue[Any]) -> None:
        super().__init__(requests)
        self.out = out

    def take_write(self, call: Any) -> bool:
        count = len(self.responses)
        taken = super().take_write(call)
        if taken:
            self.out.put(self.responses[count])
        return taken


def one_request_required(path: str) -> CallResult:
    """What the hosts answer when a method that takes one request gets zero
    or several."""
    return CallResult(StatusCode.UNIMPLEMENTED, f'"{path}" requires exactly one request message.')


class StreamingCall:
    """One call in flight, as a grpcio client's streaming call: iterate it
    for the response messages (a non-OK status raises the kit's CallError at
    the end); ``code()``, ``details()``, ``initial_metadata()``,
    ``trailing_metadata()`` wait for the end; ``cancel()`` cancels it.

    The call is dispatched at once, on a thread of its own (sync handlers run
    there); ``timeout`` cancels it when it passes (DEADLINE_EXCEEDED).
    """

    def __init__(self, service: GrpcService, path: str, requests: Iterable[Any], *,
                 metadata: MetadataLike = None, timeout: float | None = None,
                 peer: str = "local",
                 deserialize: Callable[[bytes], Any] | None = None,
                 error: Callable[[CallResult], BaseException] | None = None) -> None:
        self._kind = 0
        self._deserialize = deserialize
        self._error = error
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._result: CallResult | None = None  # from the handler
        self._local: CallResult | None = None  # cancelled or expired here
        self._call: Any = None
        self._handle: Any = None
        self._stream_handle: Any = None
        self._timer: threading.Timer | None = None
        service_name, _, method_name = path.strip("/").partition("/")
        kind = service._method_kind(service_name, method_name)
        self._kind = kind if kind >= 0 else 0
        payload: Any = None
        if kind >= 0 and not kind & KIND_CLIENT_STREAMING:
            items = list(requests)
            if len(items) != 1:
                self._end(one_request_required(f"/{service_name}/{method_name}"))
                return
            payload, requests = items[0], ()
        self._host = _LiveHost(requests, self._queue)
        call, _ = service._new_call(service_name, method_name, payload, metadata or (),
                                    timeout)
        try:
            calls.set_peer(call, peer.encode("utf-8", "replace"))
        except PgfError as exc:
            calls.unref(call)
            raise exc.as_builtin("cannot set the peer") from None
        self._call = call  # our reference, dropped when the call is finished
        if kind >= 0 and kind != KIND_UNARY:
            self._stream_handle = _runtime.handles.add(self._host)
            streams.set_stream_quietly(call, self._stream_handle)
        self._handle = _runtime.handles.add(self)
        if timeout is not None:
            self._timer = threading.Timer(max(timeout, 0.0), self._expire)
            self._timer.daemon = True
            self._timer.start()
        threading.Thread(target=self._dispatch, args=(service, calls.ref(call)),
                         name="pygrpc_ffi-teststream", daemon=True).start()

    # ------------------------------------------------------------ host side

    def _dispatch(self, service: GrpcService, call: Any) -> None:
        # The service is held (and its registry acquired) while the dispatch
        # reads the registry: a racing close() or collection cannot free it.
        try:
            if not service._dispatch_async(call, self._handle):
                calls.finish_quietly(call, int(StatusCode.INTERNAL), b"dispatch failed")
                self.done(call)
        finally:
            calls.unref(call)

    def done(self, call: Any) -> None:
        """The call is finished (C's done callback, on the finishing thread)."""
        self._host.take_write(call)  # a message queued just before the finish
        result = read_result(call)
        if self._kind & KIND_SERVER_STREAMING:
            result = dataclasses.replace(result, messages=tuple(self._host.responses))
        elif result.ok:
            result = dataclasses.replace(result, messages=(result.payload,))
        with self._lock:
            _runtime.handles.pop(self._handle)
            self._handle = None
            if self._stream_handle is not None:
                _runtime.handles.pop(self._stream_handle)
                self._stream_handle = None
            self._call = None
        self._host.close()
        if self._timer is not None:
            self._timer.cancel()
        if result.ok and not self._kind & KIND_SERVER_STREAMING:
            self._queue.put(result.payload)  # the one answer
        self._end(result)
        calls.unref(call)  # our reference (the dispatch holds its own)

    def _end(self, result: CallResult) -> None:
        self._result = result
        self._finished.set()
        self._queue.put(_DONE)

    def _stop(self, result: CallResult) -> None:
        with self._lock:
            if self._call is None or self._local is not None:
                return
            self._local = result
            call = calls.ref(self._call)
        try:
            calls.cancel(call)
        finally:
            calls.unref(call)
        self._queue.put(_ENDED)

    def _expire(self) -> None:
        self._stop(CallResult(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))

    # ---------------------------------------------------------- client side

    def cancel(self) -> bool:
        """Cancels the call (the handler sees it); False if it had ended."""
        if self._finished.is_set():
            return False
        self._stop(CallResult(StatusCode.CANCELLED, LOCALLY_CANCELLED))
        return True

    def cancelled(self) -> bool:
        """Whether the caller cancelled the call."""
        outcome = self._local
        return outcome is not None and outcome.code is StatusCode.CANCELLED

    def result(self, timeout: float | None = None) -> CallResult:
        """The outcome (waits for the end); messages are those received."""
        if self._local is None and not self._finished.wait(timeout):
            raise TimeoutError("the call has not ended")
        outcome = self._local or self._result
        assert outcome is not None
        return outcome

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        while True:
            item = self._queue.get()
            if item is _DONE or item is _ENDED:
                self._queue.put(item)  # the end stays the end
                outcome = self._local or self._result
                assert outcome is not None
                if outcome.ok:
                    raise StopIteration
                if self._error is not None:
                    raise self._error(outcome)
                raise RuntimeError(f"{outcome.code.name}: {outcome.message}")
            if self._local is not None:
                continue  # cancelled here: what follows is not received
            return self._deserialize(item) if self._deserialize is not None else item

    def is_active(self) -> bool:
        """Whether the call is still running."""
        return self._local is None and not self._finished.is_set()

    def code(self) -> Any:
        """The status (a ``grpc.StatusCode`` if grpcio is installed)."""
        code = self.result().code
        return code.to_grpc() if _has_grpc() else code

    def details(self) -> str:
        """The status message."""
        return self.result().message

    def initial_metadata(self) -> tuple[tuple[str, MetadataValue], ...]:
        """The initial metadata the handler sent (waits for the end)."""
        return self.result().initial_metadata.pairs()

    def trailing_metadata(self) -> tuple[tuple[str, MetadataValue], ...]:
        """The trailing metadata (waits for the end)."""
        return self.result().trailing_metadata.pairs()

    def time_remaining(self) -> float | None:
        return None

    def add_callback(self, callback: Callable[[], Any]) -> bool:
        return False


def _has_grpc() -> bool:
    try:
        import grpc  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


def messages_of(call: StreamingCall) -> list[Any]:
    """Every response message of a call (waits for its end; no raise)."""
    received = []
    try:
        for item in call:
            received.append(item)
    except Exception:
        pass
    return received

