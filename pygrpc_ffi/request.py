"""What a handler receives."""

from __future__ import annotations

import time
from typing import Any

from .metadata import Metadata, MetadataLike, MetadataValue


class GrpcRequest:
    """One unary request.

    ``payload`` is a read-only memoryview over the host's bytes, valid while
    the handler runs and released afterwards (``bytes(request.payload)``
    keeps a copy).  ``metadata`` is the client's metadata; ``deadline`` the
    absolute deadline in ``time.time()`` seconds, or None.
    """

    __slots__ = ("_call", "_metadata", "_reader", "deadline", "method_name", "payload", "peer",
                 "service_name")

    def __init__(
        self,
        service_name: str,
        method_name: str,
        payload: bytes | bytearray | memoryview = b"",
        metadata: MetadataLike = None,
        *,
        deadline: float | None = None,
        peer: str = "",
    ) -> None:
        self.service_name = service_name
        self.method_name = method_name
        self.payload = memoryview(payload).toreadonly()
        self.deadline = deadline
        self.peer = peer
        self._metadata: Metadata | None = Metadata(metadata)
        self._call: Any = None
        self._reader: Any = None

    @property
    def metadata(self) -> Metadata:
        """The client's metadata (multi-valued; ``-bin`` values are bytes)."""
        if self._metadata is None:
            if self._reader is None:
                raise ValueError("request metadata can only be read during the call")
            self._metadata = self._reader(self._call)
        return self._metadata

    def get_metadata(self, key: str) -> MetadataValue | None:
        """The first value of ``key``, or None."""
        return self.metadata.get(key.lower())

    def time_remaining(self) -> float | None:
        """Seconds until the deadline (never negative), or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.time())

    def is_active(self) -> bool:
        """False once the client cancelled the call or its deadline passed;
        long-running handlers should check it (async ones are cancelled)."""
        if self._call is None:
            return False
        from ._native import lib

        return not lib.pgf_call_is_cancelled(self._call)

    @property
    def full_method(self) -> str:
        """The method path, ``/package.Service/Method``."""
        return f"/{self.service_name}/{self.method_name}"

    def __repr__(self) -> str:
        return (f"GrpcRequest({self.service_name!r}, {self.method_name!r}, "
                f"<{self.payload.nbytes if not self._released() else 'released'} bytes>)")

    def _released(self) -> bool:
        try:
            self.payload.nbytes  # noqa: B018
        except ValueError:
            return True
        return False
