"""What the C++ host imports (its ``--stop-module``) when a stop signal
arrives, before its drain: importing it begins the shutdown of this process
(:func:`pygrpc_ffi.shutdown.begin_shutdown`: health NOT_SERVING, then the
shutdown callbacks).  The host can only import modules into its embedded
Python, hence a module whose import is the call."""

from __future__ import annotations

from .shutdown import begin_shutdown

begin_shutdown()
