"""Errors that choose a call's status, and the table mapping other exceptions."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, ClassVar

from .metadata import MetadataLike, metadata_pairs
from .status import StatusCode

_log = logging.getLogger("pygrpc_ffi")


class GrpcError(Exception):
    """Raised by a handler to end its call with ``code`` and ``message``.

    ``details`` (a ``google.rpc.Status`` message or its serialized bytes) is
    sent as ``grpc-status-details-bin``; ``trailers`` are extra trailing
    metadata, in the forms :class:`GrpcResponse` takes (a mapping or (key,
    value) pairs), kept as a list of pairs.  An entry that cannot be sent is
    dropped with a log line; the status and message still reach the client.
    ``GrpcError(StatusCode.NOT_FOUND)`` is a :class:`NotFound`.  An OK code
    is sent as UNKNOWN, as grpcio does.  A code that is not a gRPC status
    (17, -1, None, "abc") is the server's own bug, not the client's: it is
    sent as INTERNAL and logged.
    """

    code: StatusCode
    default_code: ClassVar[StatusCode | None] = None
    _by_code: ClassVar[dict[StatusCode, type[GrpcError]]] = {}

    def __new__(cls, *args: Any, **kwargs: Any) -> GrpcError:
        if cls is GrpcError and args:
            try:
                subclass = cls._by_code.get(StatusCode(args[0]))
            except ValueError:
                subclass = None
            if subclass is not None:
                return super().__new__(subclass)
        return super().__new__(cls)

    def __init__(
        self,
        code: StatusCode | int,
        message: str = "",
        *,
        details: Any = None,
        trailers: MetadataLike = (),
    ) -> None:
        try:
            code = StatusCode(code)
        except (ValueError, TypeError):
            _log.error("GrpcError raised with %r, which is not a gRPC status code; "
                       "sent as INTERNAL", code)
            code = StatusCode.INTERNAL
        if code is StatusCode.OK:
            code = StatusCode.UNKNOWN
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.details = details
        self.trailers = metadata_pairs(trailers, _dropped_trailer)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}" if self.message else self.code.name

    def details_bytes(self) -> bytes | None:
        """The serialized ``google.rpc.Status``, if any."""
        if self.details is None:
            return None
        if isinstance(self.details, (bytes, bytearray, memoryview)):
            return bytes(self.details)
        serialize = getattr(self.details, "SerializeToString", None)
        if serialize is None:
            raise TypeError(
                f"details must be bytes or a protobuf message, not {type(self.details).__name__}"
            )
        return bytes(serialize())

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.default_code is not None:
            GrpcError._by_code.setdefault(cls.default_code, cls)


def _dropped_trailer(reason: str) -> None:
    _log.error("GrpcError trailer dropped: %s", reason)


class _CodedError(GrpcError):
    """A GrpcError whose code is fixed by its class."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _CodedError:
        return Exception.__new__(cls)

    def __init__(
        self,
        message: Any = "",
        *args: Any,
        details: Any = None,
        trailers: MetadataLike = (),
    ) -> None:
        assert self.default_code is not None
        # Also accepts GrpcError's (code, message) form, used by GrpcError(code).
        if isinstance(message, (StatusCode, int)) and not isinstance(message, bool):
            message = args[0] if args else ""
        super().__init__(self.default_code, message, details=details, trailers=trailers)


class Cancelled(_CodedError):
    default_code = StatusCode.CANCELLED


class Unknown(_CodedError):
    default_code = StatusCode.UNKNOWN


class InvalidArgument(_CodedError):
    default_code = StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(_CodedError):
    default_code = StatusCode.DEADLINE_EXCEEDED


class NotFound(_CodedError):
    default_code = StatusCode.NOT_FOUND


class AlreadyExists(_CodedError):
    default_code = StatusCode.ALREADY_EXISTS


class PermissionDenied(_CodedError):
    default_code = StatusCode.PERMISSION_DENIED


class ResourceExhausted(_CodedError):
    default_code = StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(_CodedError):
    default_code = StatusCode.FAILED_PRECONDITION


class Aborted(_CodedError):
    default_code = StatusCode.ABORTED


class OutOfRange(_CodedError):
    default_code = StatusCode.OUT_OF_RANGE


class Unimplemented(_CodedError):
    default_code = StatusCode.UNIMPLEMENTED


class Internal(_CodedError):
    default_code = StatusCode.INTERNAL


class Unavailable(_CodedError):
    default_code = StatusCode.UNAVAILABLE


class DataLoss(_CodedError):
    default_code = StatusCode.DATA_LOSS


class Unauthenticated(_CodedError):
    default_code = StatusCode.UNAUTHENTICATED


# KeyboardInterrupt and SystemExit raised inside a handler fail that call only:
# a handler cannot stop the server (the host owns its lifetime).
_DEFAULT_TABLE: dict[type[BaseException], StatusCode] = {
    ValueError: StatusCode.INVALID_ARGUMENT,
    PermissionError: StatusCode.PERMISSION_DENIED,
    NotImplementedError: StatusCode.UNIMPLEMENTED,
    TimeoutError: StatusCode.DEADLINE_EXCEEDED,
    # Python 3.10: asyncio's is its own class (an alias of TimeoutError from 3.11).
    asyncio.TimeoutError: StatusCode.DEADLINE_EXCEEDED,
    FileNotFoundError: StatusCode.NOT_FOUND,
    KeyError: StatusCode.NOT_FOUND,
    FileExistsError: StatusCode.ALREADY_EXISTS,
    IndexError: StatusCode.OUT_OF_RANGE,
    ConnectionError: StatusCode.UNAVAILABLE,
    MemoryError: StatusCode.RESOURCE_EXHAUSTED,
    asyncio.CancelledError: StatusCode.CANCELLED,
    KeyboardInterrupt: StatusCode.UNAVAILABLE,
    SystemExit: StatusCode.UNAVAILABLE,
}

_table: dict[type[BaseException], StatusCode] = dict(_DEFAULT_TABLE)
_table_lock = threading.Lock()

# Whether a mapped exception's text reaches the client (expose_exceptions=False).
# Texts of OSError's family (file paths: "No such file or directory:
# '/etc/myapp/db-credentials.yaml'") and KeyError (the key) reveal server
# internals: they are replaced by a generic message for their code.  Other
# mapped exceptions (ValueError, IndexError, NotImplementedError, ...) send
# their text, which handlers usually write for the client.
_DEFAULT_SEND_MESSAGE: dict[type[BaseException], bool] = {
    OSError: False,
    KeyError: False,
}
_send_message: dict[type[BaseException], bool] = dict(_DEFAULT_SEND_MESSAGE)

#: What INTERNAL carries unless the service exposes exceptions.
INTERNAL_MESSAGE = "Internal server error"


def register_exception(exc_type: type[BaseException], code: StatusCode | int, *,
                       send_message: bool | None = None) -> None:
    """Maps ``exc_type`` (and its subclasses without an entry of their own) to
    ``code``, adding to or overriding the built-in table.

    ``send_message``: whether the exception's text is sent to the client
    (True) or replaced by a generic message for its code (False); None keeps
    what the class inherits (by default texts are sent, except those of
    OSError and its subclasses and of KeyError).  INTERNAL never sends the
    text; ``GrpcService(expose_exceptions=True)`` sends every text."""
    if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
        raise TypeError("exc_type must be an exception class")
    with _table_lock:
        _table[exc_type] = StatusCode(code)
        if send_message is not None:
            _send_message[exc_type] = bool(send_message)


def unregister_exception(exc_type: type[BaseException]) -> None:
    """Removes an entry; a built-in one returns to its default."""
    with _table_lock:
        if exc_type in _DEFAULT_TABLE:
            _table[exc_type] = _DEFAULT_TABLE[exc_type]
        else:
            _table.pop(exc_type, None)
        if exc_type in _DEFAULT_SEND_MESSAGE:
            _send_message[exc_type] = _DEFAULT_SEND_MESSAGE[exc_type]
        else:
            _send_message.pop(exc_type, None)


def generic_message(code: StatusCode) -> str:
    """The message sent in place of an exception text that stays private."""
    if code is StatusCode.INTERNAL:
        return INTERNAL_MESSAGE
    return code.name.replace("_", " ").capitalize()  # "Not found"


def client_message(exc: BaseException, code: StatusCode, expose: bool) -> str:
    """The status message a client gets for ``exc`` mapped to ``code``:
    a GrpcError's own message; with ``expose``, the exception's text; else
    INTERNAL's generic message, or the text unless its class keeps it
    private (see :func:`register_exception`)."""
    if isinstance(exc, GrpcError):
        return exc.message
    if code is StatusCode.INTERNAL:
        return f"{type(exc).__name__}: {exc}" if expose else INTERNAL_MESSAGE
    if expose:
        return str(exc)
    for klass in type(exc).__mro__:
        send = _send_message.get(klass)
        if send is not None:
            return str(exc) if send else generic_message(code)
    return str(exc)


def status_for_exception(exc: BaseException) -> StatusCode:
    """The status an exception maps to: GrpcError's own code, else the entry
    of the most specific class in the table, else INTERNAL."""
    if isinstance(exc, GrpcError):
        return exc.code
    for klass in type(exc).__mro__:
        code = _table.get(klass)
        if code is not None:
            return code
    return StatusCode.INTERNAL
