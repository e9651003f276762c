"""The handlers of tests/observed.py in default_service(), for
``pygrpc-ffi serve observed_handlers``."""

from __future__ import annotations

import observed

import pygrpc_ffi

observed.register(pygrpc_ffi.default_service())
