"""What a handler returns."""

from __future__ import annotations

from typing import Any

from .metadata import MetadataLike


class GrpcResponse:
    """One unary response.

    ``payload`` is any bytes-like object (sent without a copy) or a protobuf
    message (serialized for you).  ``metadata`` is sent as initial metadata,
    ``trailers`` as trailing metadata: a mapping or (key, value) pairs, str
    values, bytes for keys ending in ``-bin``.
    """

    __slots__ = ("compress", "metadata", "payload", "trailers")

    def __init__(
        self,
        payload: Any = b"",
        metadata: MetadataLike = None,
        trailers: MetadataLike = None,
        *,
        compress: bool = False,
    ) -> None:
        self.payload = payload
        self.metadata = metadata
        self.trailers = trailers
        self.compress = compress

    def __repr__(self) -> str:
        return f"GrpcResponse(payload=<{type(self.payload).__name__}>, metadata={self.metadata!r})"
