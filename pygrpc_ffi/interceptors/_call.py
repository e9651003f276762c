"""The call as native interceptors see it (:class:`ServerCall`), their base
class (:class:`Interceptor`), and the call being intercepted now."""

from __future__ import annotations

import contextvars
import itertools
import os
import time
from typing import Any

from .._binding import calls
from .._runtime.requests import decode_name, read_metadata
from ..metadata import Metadata
from ..status import StatusCode

_KIND_REQUEST_STREAM = 1
_KIND_RESPONSE_STREAM = 2
_NO_DEADLINE = (1 << 63) - 1
_ids = itertools.count(1)
_CODES = tuple(StatusCode)
_pid = os.getpid()
_current_call: contextvars.ContextVar[ServerCall | None] = contextvars.ContextVar(
    "pygrpc_ffi_call", default=None)


def current_call() -> ServerCall | None:
    """The intercepted call whose handler (or hook) is running, or None."""
    return _current_call.get()


class ServerCall:
    """One call as native interceptors see it.

    Before the handler: ``service``, ``method``, ``full_method``, ``kind``
    (PGF_KIND_*), ``metadata``, ``peer``, ``deadline`` (Unix seconds or
    None), ``call_id`` (unique in the process, also in access-log lines and
    in the log line of an INTERNAL traceback), ``state`` (a dict for the
    interceptors' own use).  Counted as messages pass: ``messages_in``,
    ``messages_out``, ``bytes_in``, ``bytes_out`` (payload bytes, when an
    interceptor asks for sizes or sees messages).  After the call:
    ``code``, ``message``, ``trailers``, ``duration`` (seconds)."""

    __slots__ = ("_call", "_done", "_id", "_message", "_metadata", "_state", "_trailers",
                 "bytes_in", "bytes_out", "code", "duration", "kind", "messages_in",
                 "messages_out", "method", "service", "start")

    def __init__(self, call: Any, kind: int) -> None:
        self._call: Any = call  # None once the after hooks ran
        self.service = decode_name(calls.service(call))
        self.method = decode_name(calls.method(call))
        self.kind = kind
        self._id = next(_ids)
        self.start = time.perf_counter()
        self._metadata: Metadata | None = None
        self._trailers: Metadata | None = None
        self._message: str | None = None
        self._done = [True]  # popped once: the outcome is read exactly once
        self._state: dict[str, Any] | None = None
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0
        self.code: StatusCode | None = None
        self.duration = 0.0

    @property
    def call_id(self) -> str:
        """Unique in the process (and across processes: it starts with the pid)."""
        return f"{_pid:x}-{self._id}"

    @property
    def state(self) -> dict[str, Any]:
        """A dict for the interceptors' own use, for the call's lifetime."""
        if self._state is None:
            self._state = {}
        return self._state

    @property
    def message(self) -> str:
        """The status message (after the call; read during the after hooks)."""
        if self._message is None:
            if self.code is None or self._call is None:
                return ""
            self._message = calls.status_message(self._call)
        return self._message

    @property
    def full_method(self) -> str:
        """``/package.Service/Method``."""
        return f"/{self.service}/{self.method}"

    @property
    def metadata(self) -> Metadata:
        """The request metadata (read from the call on first use)."""
        if self._metadata is None:
            if self._call is None:
                return Metadata()
            self._metadata = read_metadata(calls.request_metadata(self._call))
        return self._metadata

    @property
    def peer(self) -> str:
        """The client's address as the host gave it, e.g. ``ipv4:127.0.0.1:5123``."""
        if self._call is None:
            return ""
        return calls.peer(self._call)

    @property
    def deadline(self) -> float | None:
        """The call's deadline in Unix seconds, or None."""
        if self._call is None:
            return None
        ns = calls.deadline(self._call)
        return None if ns == _NO_DEADLINE else ns / 1e9

    @property
    def trailers(self) -> Metadata:
        """The trailing metadata sent with the status (after the call)."""
        if self._trailers is None:
            if self.code is None or self._call is None:
                return Metadata()
            self._trailers = read_metadata(calls.trailing_metadata(self._call))
        return self._trailers

    def _finished(self) -> bool:
        """Reads the outcome; False if it was already read (runs once)."""
        try:
            self._done.pop()  # atomic: a sync finish and an async one may race
        except IndexError:
            return False
        self.duration = time.perf_counter() - self.start
        self.code = _CODES[calls.status(self._call)]
        return True


class Interceptor:
    """Base class of native interceptors: override the hooks you need (each
    may be ``async def``).  Hooks that are not overridden cost nothing.
    ``needs_sizes = True`` asks for ``bytes_in``/``bytes_out`` counts."""

    needs_sizes = False

    def before(self, call: ServerCall) -> Any:
        """Before the handler runs; raise to reject the call with a status."""

    def after(self, call: ServerCall) -> Any:
        """After the call is finished: ``call.code``, ``.trailers``, ``.duration``."""

    def on_request(self, call: ServerCall, request: Any) -> Any:
        """Each request message (a GrpcRequest), before the handler gets it."""

    def on_response(self, call: ServerCall, response: Any) -> Any:
        """Each answer the handler gives (bytes-like, GrpcResponse or protobuf)."""
