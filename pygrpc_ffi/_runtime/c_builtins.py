"""Per-call and per-message functions written in C with the CPython API
(``_binding/*.c``), compiled into the cffi module and installed here as builtins:
no cffi object is made per call, and the GIL is released where C waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._binding import base, fastpath

_builtins: dict[str, Any] = {}
fastpath.install_builtins(_builtins)

# _binding/unary.c: response metadata without a Python call per entry.
#: add_text_metadata(call address, dict, trailing) -> how many of the dict's
#: leading entries (ASCII str keys not ending in -bin, ASCII str values) the
#: call took; Python handles the rest, and reports what cannot be sent.
add_text_metadata: Callable[[int, dict[Any, Any], bool], int] = \
    _builtins["add_text_metadata"]

# _binding/stream_io.c: the blocking reads and writes of sync streaming handlers.
#: read_message(call address) -> memoryview of the next request message
#: (owning it), or the int code that ended the read (PGF_EOF, ...).
read_message: Callable[[int], memoryview | int] = _builtins["read_message"]
#: write_message(call address, payload) -> the pgf_call_write_wait code,
#: once the host completed the write.
write_message: Callable[[int, Any], int] = _builtins["write_message"]
# The reads and writes of async streaming handlers, on the event loop.
#: read_message_async(call address, loop) -> the next request message's
#: view, or the int code that ended the read, if the host delivered at
#: once; else an asyncio future of ``loop`` for either.
read_message_async: Callable[[int, Any], Any] = _builtins["read_message_async"]
#: write_message_async(call address, payload, loop) -> the int code if the
#: write ended at once, else an asyncio future of ``loop`` for the code.
write_message_async: Callable[[int, Any, Any], Any] = _builtins["write_message_async"]
#: set_resolver(fn): fn(future, outcome) resolves the future of one of the
#: two above from the host thread that ended the read or write.
set_resolver: Callable[[Callable[[Any, Any], None]], None] = _builtins["set_resolver"]

# _binding/loop_queue.c: the calls of async unary handlers, on the event loop.
#: take_calls() -> [(call address, binding or None for a cancel, cancelled,
#: payload view or None)]: up to 64 queued entries; each call's reference
#: is the taker's.
take_calls: Callable[[], list[tuple[int, Any, bool, memoryview | None]]] = \
    _builtins["take_calls"]
#: finish_taken(call address, answer bytes): finishes the call OK with the
#: answer and drops the taker's reference.
finish_taken: Callable[[int, bytes], None] = _builtins["finish_taken"]


def address_of(call: Any) -> int:
    """The address of a ``pgf_call *``, as the functions above take it."""
    return base.address_of(call)
