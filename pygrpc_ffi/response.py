"""What a handler returns."""

from __future__ import annotations

from typing import Any

from .metadata import MetadataLike


class GrpcResponse:
    """One unary response.

    ``payload`` is any bytes-like object (sent without a copy) or a protobuf
    message (serialized for you).  ``metadata`` is sent as initial metadata,
    ``trailers`` as trailing metadata: a mapping or (key, value) pairs (the
    forms :class:`GrpcError` takes, read by the same function when sent), str
    values, bytes for keys ending in ``-bin``.  Both default to a new empty
    dict, so ``response.metadata["k"] = "v"`` works (as in Spikard).
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
        # Any: a dict by default (mutable), or whatever mapping or pairs were given.
        self.metadata: Any = {} if metadata is None else metadata
        self.trailers: Any = {} if trailers is None else trailers
        self.compress = compress

    @property
    def payload_size(self) -> int | None:
        """The payload's size in bytes (None if it is neither bytes-like nor
        a protobuf message)."""
        return payload_size(self.payload)

    def __bytes__(self) -> bytes:
        """The payload's bytes (a message serialized), as a grpcio
        interceptor that post-processes answers reads them.  Not iterable:
        interceptors that treat iterables as response streams leave it be."""
        payload = self.payload
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return bytes(payload)
        serialize = getattr(payload, "SerializeToString", None)
        if callable(serialize):
            return bytes(serialize())
        return bytes(payload)

    def __repr__(self) -> str:
        return (f"GrpcResponse(payload_size={self.payload_size}, "
                f"metadata={self.metadata!r}, trailers={self.trailers!r})")


def payload_size(payload: Any) -> int | None:
    try:
        return memoryview(payload).nbytes
    except (TypeError, ValueError):
        pass
    size = getattr(payload, "ByteSize", None)
    return int(size()) if callable(size) else None
