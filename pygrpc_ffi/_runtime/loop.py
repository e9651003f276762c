"""The package's event-loop thread, on which ``async def`` handlers run."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

_log = logging.getLogger("pygrpc_ffi")
_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_stopping = False


_start_hooks: list[Callable[[asyncio.AbstractEventLoop], None]] = []
_stop_hooks: list[Callable[[], None]] = []
_fork_hooks: list[Callable[[], None]] = []


def on_start(hook: Callable[[asyncio.AbstractEventLoop], None]) -> None:
    """Runs ``hook(loop)`` on the loop thread whenever a loop starts."""
    _start_hooks.append(hook)


def on_stop(hook: Callable[[], None]) -> None:
    """Runs ``hook()`` on the loop thread once a loop has stopped for good."""
    _stop_hooks.append(hook)


def on_fork_child(hook: Callable[[], None]) -> None:
    """Runs ``hook()`` in the child of a ``fork()``, before its own loop
    starts: the parent's loop thread, and its work, are not in the child."""
    _fork_hooks.append(hook)


def _run(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    for hook in _start_hooks:
        try:
            hook(loop)
        except BaseException:
            _log.exception("event loop start hook %r failed", hook)
    started.set()
    # A handler that stops the loop must not strand the calls after it.
    while not _stopping:
        try:
            loop.run_forever()
        except BaseException:
            _log.exception("event loop stopped by an exception; restarting it")
        if not _stopping:
            _log.error("event loop was stopped by a handler; restarting it")
    for stop_hook in _stop_hooks:
        try:
            stop_hook()
        except BaseException:
            _log.exception("event loop stop hook %r failed", stop_hook)
    loop.close()


def is_loop_thread() -> bool:
    """Whether the calling thread is the package's event-loop thread."""
    return _thread is not None and _thread is threading.current_thread()


def get_loop() -> asyncio.AbstractEventLoop:
    """The running loop for async handlers, started on first use."""
    global _loop, _thread, _stopping
    loop = _loop
    if loop is not None:
        return loop
    with _lock:
        if _loop is None:
            _stopping = False
            new_loop = asyncio.new_event_loop()
            started = threading.Event()
            thread = threading.Thread(
                target=_run, args=(new_loop, started), name="pygrpc_ffi-asyncio", daemon=True
            )
            thread.start()
            started.wait()  # its start hooks ran: e.g. the call queue is open
            _loop, _thread = new_loop, thread
        return _loop


# Work handed to the loop from other threads: one wake-up of the loop serves
# everything queued until it runs (see submit).
_submitted: deque[tuple[contextvars.Context, Callable[[Any], None], Any]] = deque()
_drain_scheduled = False


def submit(fn: Callable[[Any], None], arg: Any) -> None:
    """Runs ``fn(arg)`` on the loop thread soon, from any thread, in a copy
    of the caller's context (as ``call_soon_threadsafe`` would).  Calls
    submitted before the loop gets to them share one wake-up of the loop.
    RuntimeError if the loop is closed (then ``fn`` never runs)."""
    global _drain_scheduled
    loop = get_loop()
    item = (contextvars.copy_context(), fn, arg)
    _submitted.append(item)  # before the check: a drain that already began sees it
    if not _drain_scheduled:
        _drain_scheduled = True
        try:
            loop.call_soon_threadsafe(_drain)
        except BaseException:
            _drain_scheduled = False
            try:
                _submitted.remove(item)
            except ValueError:
                pass
            raise


def _drain() -> None:
    global _drain_scheduled
    _drain_scheduled = False  # before draining: what comes after schedules anew
    while _submitted:
        context, fn, arg = _submitted.popleft()
        try:
            context.run(fn, arg)
        except BaseException:
            _log.exception("pygrpc_ffi failed to start work on the event loop")


if sys.version_info >= (3, 12):
    def start_task(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A task of ``coro`` on the running loop, whose first step runs now:
        a coroutine that never suspends is done when this returns."""
        return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)
else:
    def start_task(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A task of ``coro`` on the running loop (eager start needs 3.12;
        the package's loop has no task factory: the Task itself)."""
        return asyncio.Task(coro, loop=asyncio.get_running_loop())


def stop(timeout: float = 5.0) -> None:
    """Stops the loop thread (pending tasks are cancelled) and waits for it."""
    global _loop, _thread, _stopping
    with _lock:
        loop, thread = _loop, _thread
        _loop = _thread = None
        _stopping = True
    if loop is None or thread is None:
        return

    async def drain() -> None:
        # Cancelled handlers still finish their calls before the loop stops.
        tasks = asyncio.all_tasks(loop) - {asyncio.current_task(loop)}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        loop.stop()

    try:
        loop.call_soon_threadsafe(lambda: loop.create_task(drain()))
    except RuntimeError:
        return
    thread.join(timeout)


# The parent's loops, as inherited by a child of fork(): kept, never used.
# In the child's memory they still run (their thread is in the parent), so
# they can be neither closed nor collected without complaint.
_inherited_loops: list[asyncio.AbstractEventLoop] = []


def _after_fork_in_child() -> None:
    """The child has no loop thread: it sets the parent's loop aside and, if
    the parent had one, starts its own, so that the async handlers it
    inherited are served from the child too."""
    global _lock, _loop, _thread, _stopping, _drain_scheduled
    had_loop = _loop is not None
    if _loop is not None:
        _inherited_loops.append(_loop)
    _lock = threading.Lock()  # the parent's may have been held by a thread
    _loop = _thread = None
    _stopping = False
    _submitted.clear()
    _drain_scheduled = False
    for hook in _fork_hooks:
        try:
            hook()
        except BaseException:
            _log.exception("after-fork hook %r failed", hook)
    if had_loop:
        get_loop()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
