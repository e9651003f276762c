"""The runtime that runs handlers on calls C hands over.

``runners`` runs sync and async handlers (``streams`` the streaming ones,
``loop_calls`` the async unary ones queued straight from C for the event
loop of ``loop``); ``requests`` reads requests from calls without copying
payloads, ``answers`` writes answers and statuses back; ``trampolines`` are
the functions C calls; ``handles`` keeps the Python objects C holds;
``c_builtins`` installs the per-call C functions; ``lifetime`` counts C
objects and shuts the runtime down (embedding hosts call :func:`shutdown`).
"""

from . import trampolines as _trampolines  # defines the functions C calls
from .answers import INTERNAL_MESSAGE, InvalidResponse
from .handles import handles
from .lifetime import live_objects, on_shutdown, shutdown
from .requests import make_request, read_metadata
from .runners import Binding, run, unary_handler_data

__all__ = ["INTERNAL_MESSAGE", "Binding", "InvalidResponse", "handles", "live_objects",
           "make_request", "on_shutdown", "read_metadata", "run", "shutdown",
           "unary_handler_data"]

del _trampolines
