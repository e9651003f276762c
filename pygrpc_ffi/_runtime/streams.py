"""Streaming handlers: request iterators and response writers over a call.

A handler registered with ``request_streaming`` gets an iterator of
:class:`GrpcRequest` (an async iterator if it is ``async def``); one with
``response_streaming`` returns an iterable (a generator, or an async
generator) of answers.  Reads are pulled from the host one message at a
time, and each write waits until the host has handed the message to its
transport, so neither side is ever buffered without limit.  Sync handlers
wait with the GIL released; async ones await on the package's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .._binding import calls
from .._binding.base import ECANCELLED, EOF, NULL, OK
from ..errors import Cancelled
from ..status import StatusCode
from . import loop as _loop
from .answers import (
    INTERNAL_MESSAGE,
    InvalidResponse,
    Responder,
    finish,
    finish_error,
    finish_ok,
)
from .c_builtins import (
    address_of,
    read_message,
    read_message_async,
    set_resolver,
    write_message,
    write_message_async,
)
from .handles import handles
from .requests import CallInfo, message_request, new_message, read_call_info, view_request

_log = logging.getLogger("pygrpc_ffi")

_KIND_REQUEST_STREAM = 1  # PGF_KIND_* bit: the request is a stream
_KIND_RESPONSE_STREAM = 2  # PGF_KIND_* bit: the response is a stream
_EOF = EOF
_ECANCELLED = ECANCELLED
_running_loop = asyncio._get_running_loop


_current: contextvars.ContextVar[_Stream | None] = contextvars.ContextVar(
    "pygrpc_ffi_stream", default=None)


def current_stream() -> _Stream | None:
    """The streaming call whose handler function is being called, or None.

    Set while ``binding.fn`` is called (for async handlers: in the handler's
    task), so that a handler wrapper (the servicer layer) can reach the call
    before its first read: metadata, initial metadata, reads and writes."""
    return _current.get()


class StreamCancelled(Cancelled):
    """The call was cancelled (or finished) while the handler read or wrote."""

    def __init__(self, message: str = "the call was cancelled") -> None:
        super().__init__(message)


def is_async_handler(fn: Any) -> bool:
    """Whether ``fn`` is ``async def`` or an async generator function, or an
    object whose ``__call__`` is."""
    target = getattr(fn, "__func__", fn)
    if inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects
    call = getattr(call, "__func__", call)
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)


class CallRef:
    """A reference to a streaming call, held by every Python object that can
    reach it (the stream, its request iterators, its requests, a servicer
    context) and dropped when the last of them goes: a handle kept past the
    handler (an iterator handed to a thread, stored, read after the handler
    returned) reaches a finished call, which answers every read and write
    with an error, never freed memory.  It references no Python object, so
    it is never part of a cycle and goes as soon as its holders do."""

    __slots__ = ("call", "done")

    def __init__(self, call: Any) -> None:
        self.call = calls.ref(call)
        self.done = False  # the handler is done with the call

    def is_active(self) -> bool:
        return not self.done and not calls.is_cancelled(self.call)

    def __del__(self) -> None:
        _unref(self.call)


_unref = calls.unref


class _Stream:
    """One streaming call as its handler sees it: the call (referenced as long
    as this object or anything made from it lives), what was read of it, and
    its written state."""

    __slots__ = ("address", "binding", "call", "info", "ref", "responder")

    def __init__(self, binding: Any, call: Any) -> None:
        self.binding = binding
        self.ref = CallRef(call)
        self.call = self.ref.call
        self.address = address_of(call)
        self.info: CallInfo = read_call_info(call, self.ref)
        self.responder = Responder(call, binding.name)

    @property
    def done(self) -> bool:
        return self.ref.done

    def is_active(self) -> bool:
        return self.ref.is_active()

    def release(self) -> None:
        """The handler is done: reads and writes from now on fail."""
        self.ref.done = True

    def _over(self) -> StreamCancelled:
        return StreamCancelled("the call has finished") if self.ref.done else StreamCancelled()

    # ------------------------------------------------------------ sync side

    def requests(self) -> Iterator[Any]:
        """The request messages, read one at a time (GIL released)."""
        info = self.info
        address = address_of(self.call)
        while True:
            payload = read_message(address)
            if isinstance(payload, memoryview):
                yield view_request(info, payload)
            elif payload == _EOF:
                return
            elif payload == _ECANCELLED:
                raise self._over()
            else:
                raise RuntimeError(f"reading the request stream failed ({payload})")

    def first_request(self) -> Any:
        """The one request of a unary-request call (set before dispatch).  Bytes
        the host only lent (pgf_call_set_request) are copied: a view of them
        could outlive the call."""
        raw = calls.request_of(self.call)
        msg = raw.msg
        if msg == NULL:
            msg = new_message(calls.request_copy(raw))
        return message_request(self.info, msg)

    def write(self, answer: Any) -> None:
        payload = answer if type(answer) is bytes else self.responder.message_payload(answer)
        try:
            # Borrowed by the host until the write completed, when this returns.
            rc = write_message(self.address, payload)
        except (TypeError, BufferError, ValueError) as exc:
            raise InvalidResponse(f"payload cannot be sent: {exc}") from None
        if rc == _ECANCELLED or (rc != OK and self.ref.done):
            raise self._over()
        if rc != OK:
            raise InvalidResponse(f"the host refused a response message ({rc})")

    # ----------------------------------------------------------- async side

    # Each read and write is split in a start (the C builtin: its outcome if
    # the host ended it inside the call, else a future) and an end that
    # reads the outcome, so that the per-message loops (arequests, _drive)
    # await only the futures, without a coroutine per message.

    def read_start(self) -> Any:
        """Asks for the next request message: the outcome, or a future of it."""
        # A message the host had received already comes at once, with no
        # future and no thread hop.
        return read_message_async(self.address, _running_loop())

    def read_end(self, got: Any) -> Any | None:
        """The request an outcome of :meth:`read_start` is, None at the end
        of the stream."""
        if type(got) is memoryview:
            return view_request(self.info, got)
        if got == _EOF:
            return None
        if got == _ECANCELLED:
            raise self._over()
        raise RuntimeError(f"reading the request stream failed ({got})")

    async def aread(self) -> Any | None:
        """The next request message, or None at the end of the stream."""
        got = self.read_start()
        if type(got) is not memoryview and type(got) is not int:
            got = await got
        return self.read_end(got)

    async def arequests(self) -> AsyncIterator[Any]:
        while True:
            got = self.read_start()
            if type(got) is not memoryview and type(got) is not int:
                got = await got
            request = self.read_end(got)
            if request is None:
                return
            yield request

    def write_start(self, answer: Any) -> Any:
        """Writes one response message: the code, or a future of it."""
        payload = answer if type(answer) is bytes else self.responder.message_payload(answer)
        try:
            # A small message is lent: the host copies it as it takes it and
            # the write usually ends here, with no future and no thread hop.
            # A write that waits keeps its bytes until the host is done, even
            # if its awaiting coroutine is cancelled meanwhile.
            return write_message_async(self.address, payload, _running_loop())
        except (TypeError, BufferError, ValueError) as exc:
            raise InvalidResponse(f"payload cannot be sent: {exc}") from None

    def write_end(self, rc: int) -> None:
        """Raises what the code of a :meth:`write_start` means, if not OK."""
        if rc == OK:
            return
        if rc == _ECANCELLED or self.ref.done:
            raise self._over()
        raise InvalidResponse(f"the host refused a response message ({rc})")

    async def awrite(self, answer: Any) -> None:
        rc = self.write_start(answer)
        if type(rc) is not int:
            rc = await rc
        self.write_end(rc)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _resolve_later(future: asyncio.Future[Any], outcome: Any) -> None:
    """Resolves the future of an async read or write (see c_builtins) from
    the thread that ended it."""
    loop = future.get_loop()
    if _running_loop() is loop:
        _resolve(future, outcome)
        return
    try:
        loop.call_soon_threadsafe(_resolve, future, outcome)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass


set_resolver(_resolve_later)


# ------------------------------------------------------------------- running


def run(binding: Any, call: Any) -> None:
    """Runs a streaming handler on a call (from the dispatch trampoline)."""
    stream = _Stream(binding, call)
    if binding.is_async:
        _start_async(stream)
        return
    try:
        _run_sync(stream)
    finally:
        stream.release()


def _run_sync(stream: _Stream) -> None:
    binding, call = stream.binding, stream.call
    kind = binding.kind
    try:
        arg = stream.requests() if kind & _KIND_REQUEST_STREAM else stream.first_request()
        token = _current.set(stream)
        try:
            result = binding.fn(arg)
        finally:
            _current.reset(token)
        if not kind & _KIND_RESPONSE_STREAM:
            finish_ok(call, result, binding)
            return
        answers = iter(result)
        try:
            for answer in answers:
                stream.write(answer)
        except BaseException:
            close = getattr(answers, "close", None)
            if close is not None:
                close()  # GeneratorExit at the yield: the handler's finally runs
            raise
        stream.responder.finish_stream()
    except BaseException as exc:
        _finish_failed(stream, exc)


def _finish_failed(stream: _Stream, exc: BaseException) -> None:
    if calls.is_finished(stream.call):
        return
    if isinstance(exc, InvalidResponse):
        _log.error("handler %s %s; the call fails with INTERNAL", stream.binding.name, str(exc))
        calls.reset_response_quietly(stream.call)
        finish(stream.call, StatusCode.INTERNAL, INTERNAL_MESSAGE)
        return
    finish_error(stream.call, exc, stream.binding)


class _AsyncStream:
    """The task of an async streaming handler, which C may cancel."""

    __slots__ = ("cancelled", "handle", "loop_task", "stream", "task")

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream
        self.task: concurrent.futures.Future[None] | None = None
        self.loop_task: asyncio.Task[Any] | None = None  # set by _drive, first thing
        self.cancelled = False
        self.handle: Any = None

    def cancel(self) -> None:
        # _drive records its task before it checks `cancelled`: whichever of
        # the two runs first, the handler is cancelled.
        self.cancelled = True
        loop_task = self.loop_task
        if loop_task is not None:
            try:
                loop_task.get_loop().call_soon_threadsafe(loop_task.cancel)
            except RuntimeError:  # the loop is closed
                pass
        task = self.task
        if task is not None:
            task.cancel()


def _start_async(stream: _Stream) -> None:
    pending = _AsyncStream(stream)
    pending.handle = handles.add(pending)
    # Not finished yet (its handler is about to start): the hook is set.
    calls.set_cancel_hook(stream.call, pending.handle)
    try:
        pending.task = asyncio.run_coroutine_threadsafe(_drive(pending), _loop.get_loop())
    except BaseException as exc:
        _end_async(pending, exc)


async def _drive(pending: _AsyncStream) -> None:
    stream = pending.stream
    binding = stream.binding
    kind = binding.kind
    error: BaseException | None = None
    pending.loop_task = asyncio.current_task()
    try:
        if pending.cancelled:
            raise asyncio.CancelledError()
        arg = stream.arequests() if kind & _KIND_REQUEST_STREAM else stream.first_request()
        _current.set(stream)  # this task's context only
        result = binding.fn(arg)
        if not kind & _KIND_RESPONSE_STREAM:
            if inspect.isawaitable(result):
                result = await result
            finish_ok(stream.call, result, binding)
            return
        if inspect.isawaitable(result):
            result = await result
        if hasattr(result, "__aiter__"):
            try:
                async for answer in result:
                    rc = stream.write_start(answer)  # awrite, inline: per message
                    if type(rc) is not int:
                        rc = await rc
                    stream.write_end(rc)
            except BaseException:
                aclose = getattr(result, "aclose", None)
                if aclose is not None:
                    await aclose()
                raise
        else:
            for answer in result:
                await stream.awrite(answer)
        stream.responder.finish_stream()
    except BaseException as exc:
        error = exc
    finally:
        try:
            _end_async(pending, error)
        finally:
            # The exception's traceback holds this frame (and the handler's,
            # with its last request): no cycle may keep those alive.
            error = None


def _end_async(pending: _AsyncStream, exc: BaseException | None) -> None:
    stream = pending.stream
    try:
        if exc is not None:
            _finish_failed(stream, exc)
    except BaseException:  # a call must never be left unfinished
        _log.exception("pygrpc_ffi failed to finish the call of handler %s",
                       stream.binding.name)
        if not calls.is_finished(stream.call):
            calls.reset_response_quietly(stream.call)
            finish(stream.call, StatusCode.INTERNAL, INTERNAL_MESSAGE)
    finally:
        handles.pop(pending.handle)
        pending.handle = None  # a handle keeps its object: no cycle
        pending.loop_task = None
        stream.release()
        on_finish = stream.binding.on_finish
        if on_finish is not None:
            on_finish()
