"""The handlers of tests/observed.py in default_service(), for
``pygrpc-ffi serve observed_handlers``.  With $OBS_ACCESS_LOG, access-log
lines go to that file (a handler of the user's own on the access logger)."""

from __future__ import annotations

import logging
import os

import observed

import pygrpc_ffi
from pygrpc_ffi.access_log import ACCESS_LOGGER

observed.register(pygrpc_ffi.default_service())

if os.environ.get("OBS_ACCESS_LOG"):
    _handler = logging.FileHandler(os.environ["OBS_ACCESS_LOG"])
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger(ACCESS_LOGGER).addHandler(_handler)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
