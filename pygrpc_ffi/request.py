"""What a handler receives."""

from __future__ import annotations

import time
from typing import Any

from ._binding import calls
from .metadata import Metadata, MetadataLike, MetadataValue


class _Lazy:
    """The value of a field not read from its call yet."""

    def __repr__(self) -> str:
        return "<not read yet>"


#: A request made by the dispatch reads its names, deadline and peer from the
#: call when they are first used (most handlers use none of them); before the
#: call ends, every field still _LAZY of a request that outlives it is read.
_LAZY: Any = _Lazy()


#: (auth properties, peer identity key): see GrpcRequest.auth_context.
Auth = tuple[dict[str, list[bytes]], str | None]


class GrpcRequest:
    """One request message and the call it belongs to.

    ``payload`` is the request message's ``bytes``, made from the host's
    bytes on first access (one copy, then cached).  ``payload_view`` is a
    read-only memoryview over the host's bytes, never copied; it (and any
    slice or export of it) keeps those bytes alive for as long as it is
    referenced, so it is safe to keep.  ``metadata`` is the
    client's metadata; ``deadline`` the absolute deadline in ``time.time()``
    seconds, or None.  The messages of a request stream share the call's
    fields.
    """

    # _payload is None until payload is first read: a handler that reads
    # only payload_view copies nothing.
    __slots__ = ("_auth", "_call", "_deadline", "_metadata", "_method_name", "_payload", "_peer",
                 "_reader", "_service_name", "_stream", "payload_view")
    _payload: bytes | None
    _service_name: Any  # str or _LAZY, and so on
    _method_name: Any
    _deadline: Any
    _peer: Any

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
        self.payload = payload
        self.deadline = deadline
        self.peer = peer
        self._metadata: Metadata | None = Metadata(metadata)
        self._call: Any = None
        self._reader: Any = None  # reads lazy fields from _call (see _runtime.requests)
        self._stream: Any = None  # the streaming call this message came from
        self._auth: Auth = ({}, None)  # in-process: no transport, no identity

    @property
    def payload(self) -> bytes:
        """The request message's bytes: copied from the host's on first
        access, then the same object.  ``payload_view`` reads them without
        a copy."""
        data = self._payload
        if data is None:  # a test, not try/except: raising costs more than the copy
            data = self._payload = self.payload_view.tobytes()
        return data

    @payload.setter
    def payload(self, value: bytes | bytearray | memoryview) -> None:
        self.payload_view = memoryview(value).toreadonly()
        # Already bytes: payload is that object, no copy.
        self._payload = value if type(value) is bytes else None

    @property
    def service_name(self) -> str:
        """The service, ``package.Service``."""
        value = self._service_name
        if value is _LAZY:
            value = self._service_name = self._reader.service_name(self._call)
        return value  # type: ignore[no-any-return]

    @service_name.setter
    def service_name(self, value: str) -> None:
        self._service_name = value

    @property
    def method_name(self) -> str:
        """The method, without its service."""
        value = self._method_name
        if value is _LAZY:
            value = self._method_name = self._reader.method_name(self._call)
        return value  # type: ignore[no-any-return]

    @method_name.setter
    def method_name(self, value: str) -> None:
        self._method_name = value

    @property
    def deadline(self) -> float | None:
        """The absolute deadline in ``time.time()`` seconds, or None."""
        value = self._deadline
        if value is _LAZY:
            value = self._deadline = self._reader.deadline(self._call)
        return value  # type: ignore[no-any-return]

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        self._deadline = value

    @property
    def peer(self) -> str:
        """The client's address as the host reports it, or ""."""
        value = self._peer
        if value is _LAZY:
            value = self._peer = self._reader.peer(self._call)
        return value  # type: ignore[no-any-return]

    @peer.setter
    def peer(self, value: str) -> None:
        self._peer = value

    def _read_lazy_fields(self) -> None:
        """Reads every field not read yet from the call, which must still be
        alive: for a request that outlives its call."""
        for name in ("service_name", "method_name", "deadline", "peer", "metadata"):
            getattr(self, name)
        self._auth_info()

    def _auth_info(self) -> Auth:
        try:
            return self._auth
        except AttributeError:  # unset: made by the dispatch, not read yet
            pass
        auth: Auth = ({}, None)
        if self._reader is not None:
            auth = self._reader.auth(self._call)
        self._auth = auth
        return auth

    @property
    def auth_context(self) -> dict[str, list[bytes]]:
        """The caller's auth properties as the host passed them, as grpcio's
        ``ServicerContext.auth_context()``: name -> values, for example
        ``transport_security_type`` -> ``[b"ssl"]`` and, with a client
        certificate, ``x509_common_name`` and one
        ``x509_subject_alternative_name`` per SAN.  ``{}`` in-process."""
        return self._auth_info()[0]

    @property
    def peer_identity_key(self) -> str | None:
        """The name of the auth property that holds the caller's identity
        (``x509_subject_alternative_name`` or ``x509_common_name``), or None
        without a client certificate."""
        return self._auth_info()[1]

    @property
    def peer_identities(self) -> list[bytes] | None:
        """The values of the :attr:`peer_identity_key` property, or None."""
        context, key = self._auth_info()
        return context.get(key) if key is not None else None

    @property
    def metadata(self) -> Metadata:
        """The client's metadata (multi-valued; ``-bin`` values are bytes)."""
        if self._metadata is None:
            if self._reader is None:
                raise ValueError("request metadata can only be read during the call")
            self._metadata = self._reader.metadata(self._call)
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
        if self._stream is not None:
            return bool(self._stream.is_active())
        if self._call is None:
            return False
        return not calls.is_cancelled(calls.pointer(self._call))

    @property
    def full_method(self) -> str:
        """The method path, ``/package.Service/Method``."""
        return f"/{self.service_name}/{self.method_name}"

    @property
    def payload_size(self) -> int:
        """The request payload's size in bytes (0 once released)."""
        return 0 if self._released() else self.payload_view.nbytes

    def __repr__(self) -> str:
        size = "<released>" if self._released() else self.payload_view.nbytes
        return (f"GrpcRequest(service_name={self.service_name!r}, "
                f"method_name={self.method_name!r}, payload_size={size})")

    def _released(self) -> bool:
        try:
            self.payload_view.nbytes  # noqa: B018
        except ValueError:
            return True
        return False
