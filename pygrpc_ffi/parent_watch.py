"""A server process that stops when its supervisor dies, even by SIGKILL.

``pygrpc-ffi serve --processes N`` gives each grpcio engine process its own
pid (``--die-with-parent PID``, as it gives the C++ host), and the process
calls :func:`die_with_parent` before anything else.  When the supervisor
dies, the process gets SIGTERM and stops as on any SIGTERM (gracefully,
freeing the port), instead of serving on as an orphan beside a restarted
supervisor's processes.  Linux: the kernel sends the signal
(``PR_SET_PDEATHSIG``); elsewhere a daemon thread watches ``os.getppid()``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

__all__ = ["WATCH_SECONDS", "die_with_parent"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
#: How often the fallback thread looks at the parent pid.
WATCH_SECONDS = 0.5


def die_with_parent(pid: int) -> bool:
    """Sends this process SIGTERM when its parent, which must be ``pid``,
    dies.  False if the parent is not ``pid`` (already gone: this process
    was handed to another), else True."""
    if _set_death_signal(signal.SIGTERM):
        # After the prctl: a parent that died before it sent nothing.
        return os.getppid() == pid
    if os.getppid() != pid:
        return False
    threading.Thread(target=_watch, args=(pid,), name="pygrpc_ffi-parent-watch",
                     daemon=True).start()
    return True


def _set_death_signal(signum: int) -> bool:
    """PR_SET_PDEATHSIG where there is one; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return int(prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0


def _watch(pid: int) -> None:
    while os.getppid() == pid:
        time.sleep(WATCH_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)
