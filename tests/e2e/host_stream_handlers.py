"""What the host's stream tests serve besides the C echo (--native-echo):
the unary Python handlers of interop_handlers, and e2e.HostStreams/Live,
the server's live C objects including request messages."""

from __future__ import annotations

import json

import interop_handlers  # noqa: F401  (registers its handlers)

import pygrpc_ffi as pgf
from pygrpc_ffi._native import lib

service = pgf.default_service()

LIVE_KINDS = {"names": 0, "handlers": 1, "calls": 2, "registries": 3, "buffers": 4,
              "messages": 5}


@service.method("e2e.HostStreams", "Live")
def live(request: pgf.GrpcRequest) -> bytes:
    """Every PGF_LIVE_* count of the server process (this call counts too)."""
    return json.dumps({k: lib.pgf_live_count(v) for k, v in LIVE_KINDS.items()}).encode()
