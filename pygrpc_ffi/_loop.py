"""The package's event-loop thread, on which ``async def`` handlers run."""

from __future__ import annotations

import asyncio
import logging
import threading

_log = logging.getLogger("pygrpc_ffi")
_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_stopping = False


def _run(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    # A handler that stops the loop must not strand the calls after it.
    while not _stopping:
        try:
            loop.run_forever()
        except BaseException:
            _log.exception("event loop stopped by an exception; restarting it")
        if not _stopping:
            _log.error("event loop was stopped by a handler; restarting it")
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
            thread = threading.Thread(
                target=_run, args=(new_loop,), name="pygrpc_ffi-asyncio", daemon=True
            )
            thread.start()
            _loop, _thread = new_loop, thread
        return _loop


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
