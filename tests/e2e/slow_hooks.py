"""A native interceptor whose sync hooks sleep 2 s for calls that carry
``x-slow: <hook>`` (the hook's name), for tests/e2e/
test_interceptor_hooks_served.py: loaded with ``--interceptor
slow_hooks:SlowHooks``."""

from __future__ import annotations

import time
from typing import Any

from pygrpc_ffi.interceptors import Interceptor, ServerCall

SLEEP = 2.0


class SlowHooks(Interceptor):
    """Sync hooks that block their thread for ``SLEEP`` seconds when asked."""

    def _maybe_sleep(self, hook: str, call: ServerCall) -> None:
        if call.metadata.get("x-slow") == hook:
            time.sleep(SLEEP)

    def after(self, call: ServerCall) -> None:
        self._maybe_sleep("after", call)

    def on_response(self, call: ServerCall, response: Any) -> None:
        self._maybe_sleep("on_response", call)

    def on_request(self, call: ServerCall, request: Any) -> None:
        self._maybe_sleep("on_request", call)
