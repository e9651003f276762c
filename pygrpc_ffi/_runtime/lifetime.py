"""The runtime's lifetime: how many C objects are alive, and the shutdown
that stops the event loop and releases every Python registration while the
interpreter can still run (csrc/embed.c calls ``pygrpc_ffi._runtime.shutdown``
before it finalizes an embedded interpreter)."""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable

from .._binding import base
from . import loop as _loop

_log = logging.getLogger("pygrpc_ffi")


def live_objects() -> dict[str, int]:
    """How many C objects are alive: names, handlers, calls, registries,
    response buffers not yet released by their host, and request messages."""
    return {
        name: base.live_count(name.upper())
        for name in ("names", "handlers", "calls", "registries", "buffers", "messages")
    }


_shutdown_hooks: list[Callable[[], None]] = []


def on_shutdown(hook: Callable[[], None]) -> None:
    _shutdown_hooks.append(hook)


def shutdown() -> None:
    """Stops the event-loop thread and releases every Python registration,
    while the interpreter can still run them (embedding hosts call this)."""
    _loop.stop()
    for hook in reversed(_shutdown_hooks):
        try:
            hook()
        except Exception:
            _log.exception("shutdown hook failed")


atexit.register(shutdown)
