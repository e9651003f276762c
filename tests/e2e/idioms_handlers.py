"""tests/request_idioms.py's handlers in default_service(), for
``pygrpc-ffi serve idioms_handlers``."""

from __future__ import annotations

import request_idioms

import pygrpc_ffi

request_idioms.register(pygrpc_ffi.default_service())
