"""Errors and status codes, through the C dispatch: StatusCode and its grpc
conversions, GrpcError and its per-code subclasses (message, details,
trailers), the exception -> status table (most specific class first), user
overrides with register_exception, and INTERNAL's generic message, opt-in
exposure and logged traceback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2

import pygrpc_ffi
from pygrpc_ffi import (
    GrpcError,
    GrpcRequest,
    GrpcService,
    StatusCode,
    register_exception,
    status_for_exception,
    unregister_exception,
)

pytestmark = pytest.mark.timeout(20, method="thread")

LOGGER = "pygrpc_ffi"

SUBCLASSES = {
    StatusCode.CANCELLED: pygrpc_ffi.Cancelled,
    StatusCode.UNKNOWN: pygrpc_ffi.Unknown,
    StatusCode.INVALID_ARGUMENT: pygrpc_ffi.InvalidArgument,
    StatusCode.DEADLINE_EXCEEDED: pygrpc_ffi.DeadlineExceeded,
    StatusCode.NOT_FOUND: pygrpc_ffi.NotFound,
    StatusCode.ALREADY_EXISTS: pygrpc_ffi.AlreadyExists,
    StatusCode.PERMISSION_DENIED: pygrpc_ffi.PermissionDenied,
    StatusCode.RESOURCE_EXHAUSTED: pygrpc_ffi.ResourceExhausted,
    StatusCode.FAILED_PRECONDITION: pygrpc_ffi.FailedPrecondition,
    StatusCode.ABORTED: pygrpc_ffi.Aborted,
    StatusCode.OUT_OF_RANGE: pygrpc_ffi.OutOfRange,
    StatusCode.UNIMPLEMENTED: pygrpc_ffi.Unimplemented,
    StatusCode.INTERNAL: pygrpc_ffi.Internal,
    StatusCode.UNAVAILABLE: pygrpc_ffi.Unavailable,
    StatusCode.DATA_LOSS: pygrpc_ffi.DataLoss,
    StatusCode.UNAUTHENTICATED: pygrpc_ffi.Unauthenticated,
}

# The table, most specific first where classes are related.
EXCEPTION_TABLE: list[tuple[BaseException, StatusCode]] = [
    (ValueError("bad value"), StatusCode.INVALID_ARGUMENT),
    (PermissionError("no access"), StatusCode.PERMISSION_DENIED),
    (NotImplementedError("later"), StatusCode.UNIMPLEMENTED),
    (TimeoutError("too slow"), StatusCode.DEADLINE_EXCEEDED),
    (FileNotFoundError("no file"), StatusCode.NOT_FOUND),
    (KeyError("no key"), StatusCode.NOT_FOUND),
    (FileExistsError("exists"), StatusCode.ALREADY_EXISTS),
    (IndexError("too far"), StatusCode.OUT_OF_RANGE),
    (ConnectionError("down"), StatusCode.UNAVAILABLE),
    (MemoryError("full"), StatusCode.RESOURCE_EXHAUSTED),
    (asyncio.CancelledError("stop"), StatusCode.CANCELLED),
    (RuntimeError("anything else"), StatusCode.INTERNAL),
    (Exception("plain"), StatusCode.INTERNAL),
    (OSError("generic os error"), StatusCode.INTERNAL),
    (LookupError("base of KeyError"), StatusCode.INTERNAL),
    # Subclasses take their nearest mapped base.
    (ConnectionRefusedError("refused"), StatusCode.UNAVAILABLE),
    (BrokenPipeError("pipe"), StatusCode.UNAVAILABLE),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), StatusCode.INVALID_ARGUMENT),
    (asyncio.TimeoutError("asyncio timeout"), StatusCode.DEADLINE_EXCEEDED),
    (IsADirectoryError("dir"), StatusCode.INTERNAL),
]


def raising(exc: BaseException):
    def handler(request: GrpcRequest) -> bytes:
        raise exc

    return handler


def async_raising(exc: BaseException):
    async def handler(request: GrpcRequest) -> bytes:
        await asyncio.sleep(0)
        raise exc

    return handler


# ------------------------------------------------------------------- StatusCode


def test_status_codes_have_grpcs_numbers() -> None:
    assert len(StatusCode) == 17
    for member in grpc.StatusCode:
        ours = StatusCode[member.name]
        assert int(ours) == member.value[0]


def test_status_code_converts_to_and_from_grpc() -> None:
    for member in grpc.StatusCode:
        ours = StatusCode(member)
        assert ours.name == member.name
        assert StatusCode.from_grpc(member) is ours
        assert ours.to_grpc() is member


def test_status_code_is_an_int_enum() -> None:
    assert StatusCode(5) is StatusCode.NOT_FOUND
    assert StatusCode.INTERNAL == 13
    with pytest.raises(ValueError):
        StatusCode(17)


# -------------------------------------------------------------------- GrpcError


def test_there_is_one_subclass_per_non_ok_code() -> None:
    assert set(SUBCLASSES) == set(StatusCode) - {StatusCode.OK}
    for code, cls in SUBCLASSES.items():
        assert issubclass(cls, GrpcError)
        assert cls.__name__ == "".join(part.title() for part in code.name.split("_"))
        err = cls("msg")
        assert err.code is code
        assert err.message == "msg"


@pytest.mark.parametrize("code", list(SUBCLASSES))
def test_grpc_error_with_a_code_is_an_instance_of_its_subclass(code: StatusCode) -> None:
    err = GrpcError(code, "text")
    assert type(err) is SUBCLASSES[code]
    assert err.code is code
    assert err.message == "text"
    by_int = GrpcError(int(code))
    assert type(by_int) is SUBCLASSES[code]


def test_grpc_error_fields_and_str() -> None:
    err = GrpcError(StatusCode.ABORTED, "conflict", details=b"\x01", trailers=[("k", "v")])
    assert err.code is StatusCode.ABORTED
    assert err.message == "conflict"
    assert err.details_bytes() == b"\x01"
    assert err.trailers == [("k", "v")]
    assert str(err) == "ABORTED: conflict"
    assert str(pygrpc_ffi.NotFound()) == "NOT_FOUND"
    assert isinstance(err, Exception)


def test_grpc_error_with_ok_code_becomes_unknown() -> None:
    err = GrpcError(StatusCode.OK, "not really ok")
    assert err.code is StatusCode.UNKNOWN


def test_grpc_error_accepts_a_grpc_status_code() -> None:
    err = GrpcError(grpc.StatusCode.NOT_FOUND, "x")
    assert isinstance(err, pygrpc_ffi.NotFound)


@pytest.mark.parametrize("code", list(SUBCLASSES))
def test_raised_grpc_error_subclass_sets_code_and_message(
    service: GrpcService, code: StatusCode
) -> None:
    cls = SUBCLASSES[code]
    service.register_method("pkg.Svc", "Sync", raising(cls(f"sync {code.name}")))
    service.register_method("pkg.Svc", "Async", async_raising(cls(f"async {code.name}")))
    sync = service.call("pkg.Svc", "Sync")
    asyn = service.call("pkg.Svc", "Async")
    assert (sync.code, sync.message) == (code, f"sync {code.name}")
    assert (asyn.code, asyn.message) == (code, f"async {code.name}")
    assert sync.payload == b"" and asyn.payload == b""


def test_grpc_error_details_and_trailers_reach_the_caller(service: GrpcService) -> None:
    details = status_pb2.Status(code=StatusCode.FAILED_PRECONDITION, message="rich")
    service.register_method("pkg.Svc", "Proto", raising(pygrpc_ffi.FailedPrecondition(
        "precondition", details=details, trailers=[("why", "because"), ("why-bin", b"\x00")])))
    service.register_method("pkg.Svc", "Bytes", raising(GrpcError(
        StatusCode.ABORTED, "raw", details=b"\x08\x0a")))
    result = service.call("pkg.Svc", "Proto")
    assert result.code is StatusCode.FAILED_PRECONDITION
    assert result.message == "precondition"
    assert status_pb2.Status.FromString(result.details) == details
    assert result.trailing_metadata.pairs() == (("why", "because"), ("why-bin", b"\x00"))
    raw = service.call("pkg.Svc", "Bytes")
    assert raw.details == b"\x08\x0a"

    with pytest.raises(GrpcError) as info:
        result.to_response()
    assert info.value.code is StatusCode.FAILED_PRECONDITION
    assert info.value.details_bytes() == details.SerializeToString()


def test_grpc_error_drops_the_partial_response(service: GrpcService) -> None:
    # A handler that fails carries no payload; the status alone reaches the caller.
    service.register_handler("pkg.Svc", raising(pygrpc_ffi.Aborted("retry")))
    result = service.call("pkg.Svc", "M")
    assert result.code is StatusCode.ABORTED
    assert result.payload == b""
    assert result.initial_metadata.pairs() == ()


# -------------------------------------------------------------- exception table


@pytest.mark.parametrize(
    ("exc", "code"), EXCEPTION_TABLE, ids=[type(e).__name__ for e, _ in EXCEPTION_TABLE]
)
def test_exception_maps_to_status(service: GrpcService, exc: BaseException,
                                  code: StatusCode) -> None:
    assert status_for_exception(exc) is code
    service.register_method("pkg.Svc", "Sync", raising(exc))
    service.register_method("pkg.Svc", "Async", async_raising(exc))
    for method in ("Sync", "Async"):
        result = service.call("pkg.Svc", method)
        assert result.code is code, method
        if code is StatusCode.INTERNAL:
            assert result.message == "Internal server error"
        elif isinstance(exc, (OSError, KeyError)):  # texts that reveal internals
            assert result.message == code.name.replace("_", " ").capitalize()
        else:
            assert result.message == str(exc)


def test_mapping_prefers_the_most_specific_class(service: GrpcService,
                                                  restore_exception_table: None) -> None:
    class Base(Exception):
        pass

    class Middle(Base):
        pass

    class Leaf(Middle):
        pass

    register_exception(Base, StatusCode.ABORTED)
    register_exception(Middle, StatusCode.DATA_LOSS)
    service.register_method("pkg.Svc", "Base", raising(Base()))
    service.register_method("pkg.Svc", "Middle", raising(Middle()))
    service.register_method("pkg.Svc", "Leaf", raising(Leaf()))
    assert service.call("pkg.Svc", "Base").code is StatusCode.ABORTED
    assert service.call("pkg.Svc", "Middle").code is StatusCode.DATA_LOSS
    assert service.call("pkg.Svc", "Leaf").code is StatusCode.DATA_LOSS


def test_multiple_inheritance_follows_the_mro(service: GrpcService) -> None:
    class ValueFirst(ValueError, KeyError):
        pass

    class KeyFirst(KeyError, ValueError):
        pass

    service.register_method("pkg.Svc", "V", raising(ValueFirst("v")))
    service.register_method("pkg.Svc", "K", raising(KeyFirst("k")))
    assert service.call("pkg.Svc", "V").code is StatusCode.INVALID_ARGUMENT
    assert service.call("pkg.Svc", "K").code is StatusCode.NOT_FOUND


def test_grpc_error_code_wins_over_the_table(service: GrpcService,
                                             restore_exception_table: None) -> None:
    class Mine(pygrpc_ffi.NotFound, ValueError):
        pass

    register_exception(Mine, StatusCode.DATA_LOSS)
    service.register_handler("pkg.Svc", raising(Mine("gone")))
    result = service.call("pkg.Svc", "M")
    assert result.code is StatusCode.NOT_FOUND
    assert result.message == "gone"


def test_register_exception_adds_a_mapping(service: GrpcService,
                                           restore_exception_table: None) -> None:
    class QuotaExceeded(Exception):
        pass

    service.register_handler("pkg.Svc", raising(QuotaExceeded("over quota")))
    assert service.call("pkg.Svc", "M").code is StatusCode.INTERNAL
    register_exception(QuotaExceeded, StatusCode.RESOURCE_EXHAUSTED)
    result = service.call("pkg.Svc", "M")
    assert result.code is StatusCode.RESOURCE_EXHAUSTED
    assert result.message == "over quota"
    unregister_exception(QuotaExceeded)
    assert service.call("pkg.Svc", "M").code is StatusCode.INTERNAL


def test_register_exception_overrides_a_builtin_mapping(service: GrpcService,
                                                        restore_exception_table: None) -> None:
    service.register_method("pkg.Svc", "Value", raising(ValueError("v")))
    service.register_method("pkg.Svc", "Unicode",
                            raising(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")))
    register_exception(ValueError, int(StatusCode.FAILED_PRECONDITION))
    assert service.call("pkg.Svc", "Value").code is StatusCode.FAILED_PRECONDITION
    assert service.call("pkg.Svc", "Unicode").code is StatusCode.FAILED_PRECONDITION
    register_exception(UnicodeError, StatusCode.DATA_LOSS)
    assert service.call("pkg.Svc", "Unicode").code is StatusCode.DATA_LOSS
    unregister_exception(ValueError)
    unregister_exception(UnicodeError)
    assert service.call("pkg.Svc", "Value").code is StatusCode.INVALID_ARGUMENT
    assert service.call("pkg.Svc", "Unicode").code is StatusCode.INVALID_ARGUMENT


def test_register_exception_rejects_non_exception_types(restore_exception_table: None) -> None:
    with pytest.raises(TypeError):
        register_exception(int, StatusCode.INTERNAL)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        register_exception(ValueError("instance"), StatusCode.INTERNAL)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        register_exception(ValueError, 99)


# --------------------------------------------------------------------- INTERNAL


def test_internal_error_hides_the_exception_and_logs_the_traceback(
    service: GrpcService, caplog: pytest.LogCaptureFixture
) -> None:
    def leaky_handler(request: GrpcRequest) -> bytes:
        raise RuntimeError("secret database password")

    service.register_handler("pkg.Svc", leaky_handler)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        result = service.call("pkg.Svc", "M")
    assert result.code is StatusCode.INTERNAL
    assert "secret" not in result.message
    assert result.message == "Internal server error"
    records = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]
    assert len(records) == 1
    record = records[0]
    assert "leaky_handler" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "secret database password" in caplog.text
    assert "Traceback" in caplog.text


def test_async_internal_error_logs_the_traceback(
    service: GrpcService, caplog: pytest.LogCaptureFixture
) -> None:
    async def async_leaky(request: GrpcRequest) -> bytes:
        await asyncio.sleep(0)
        raise LookupError("hidden detail")

    service.register_handler("pkg.Svc", async_leaky)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        result = service.call("pkg.Svc", "M")
    assert result.code is StatusCode.INTERNAL
    assert "hidden" not in result.message
    records = [r for r in caplog.records if r.name == LOGGER and r.exc_info]
    assert len(records) == 1
    assert "async_leaky" in records[0].getMessage()
    assert records[0].exc_info[0] is LookupError


def test_expose_exceptions_sends_the_exception_text(
    exposing_service: GrpcService, caplog: pytest.LogCaptureFixture
) -> None:
    exposing_service.register_handler("pkg.Svc", raising(RuntimeError("visible detail")))
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        result = exposing_service.call("pkg.Svc", "M")
    assert result.code is StatusCode.INTERNAL
    assert result.message == "RuntimeError: visible detail"
    assert any(r.exc_info for r in caplog.records if r.name == LOGGER)


def test_mapped_exceptions_are_not_logged_as_errors(
    service: GrpcService, caplog: pytest.LogCaptureFixture
) -> None:
    service.register_handler("pkg.Svc", raising(KeyError("k")))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert service.call("pkg.Svc", "M").code is StatusCode.NOT_FOUND
    assert [r for r in caplog.records if r.name == LOGGER] == []


def test_error_then_success_on_the_same_handler(service: GrpcService) -> None:
    state: dict[str, Any] = {"fail": True}

    def flaky(request: GrpcRequest) -> bytes:
        if state["fail"]:
            raise pygrpc_ffi.Unavailable("try again")
        return b"fine"

    service.register_handler("pkg.Svc", flaky)
    assert service.call("pkg.Svc", "M").code is StatusCode.UNAVAILABLE
    state["fail"] = False
    result = service.call("pkg.Svc", "M")
    assert (result.code, result.payload) == (StatusCode.OK, b"fine")


@pytest.mark.parametrize("bad_code", [17, -1, None, "abc", 2.5])
def test_grpc_error_with_an_invalid_code_is_sent_as_internal_and_logged(
    service: GrpcService, caplog: pytest.LogCaptureFixture, bad_code: Any
) -> None:
    service.register_method("pkg.Svc", "Sync", raising(GrpcError(bad_code, "my message")))
    service.register_method("pkg.Svc", "Async", async_raising(GrpcError(bad_code, "msg")))
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        sync = service.call("pkg.Svc", "Sync")
        asyn = service.call("pkg.Svc", "Async")
    assert sync.code is StatusCode.INTERNAL and asyn.code is StatusCode.INTERNAL
    assert "is not a valid StatusCode" not in sync.message + asyn.message
    assert "not a gRPC status code" in caplog.text


PRIVATE_TEXTS = [
    (FileNotFoundError(2, "No such file or directory", "/etc/myapp/db-credentials.yaml"),
     StatusCode.NOT_FOUND, "Not found"),
    (PermissionError(13, "Permission denied", "/srv/secret/key.pem"),
     StatusCode.PERMISSION_DENIED, "Permission denied"),
    (KeyError("user:42:password-hash"), StatusCode.NOT_FOUND, "Not found"),
    (ConnectionRefusedError("db.internal.example:5432 refused"), StatusCode.UNAVAILABLE,
     "Unavailable"),
    (TimeoutError("waiting for /var/run/app.sock"), StatusCode.DEADLINE_EXCEEDED,
     "Deadline exceeded"),
]


@pytest.mark.parametrize(("exc", "code", "sent"), PRIVATE_TEXTS,
                         ids=[type(e).__name__ for e, _, _ in PRIVATE_TEXTS])
def test_mapped_os_and_key_errors_do_not_leak_their_text_by_default(
    exc: BaseException, code: StatusCode, sent: str
) -> None:
    for expose in (False, True):
        svc = GrpcService(expose_exceptions=expose)
        try:
            svc.register_method("pkg.Svc", "Sync", raising(exc))
            svc.register_method("pkg.Svc", "Async", async_raising(exc))
            for method in ("Sync", "Async"):
                result = svc.call("pkg.Svc", method)
                assert result.code is code
                # expose_exceptions=True is the opt-in to every text.
                assert result.message == (str(exc) if expose else sent)
        finally:
            svc.close()


def test_grpc_error_and_value_error_messages_are_still_sent(service: GrpcService) -> None:
    service.register_method("pkg.Svc", "G", raising(pygrpc_ffi.NotFound("no user 'bob'")))
    service.register_method("pkg.Svc", "V", raising(ValueError("age must be positive")))
    assert service.call("pkg.Svc", "G").message == "no user 'bob'"
    assert service.call("pkg.Svc", "V").message == "age must be positive"


def test_register_exception_chooses_whether_a_class_sends_its_text(
    service: GrpcService, restore_exception_table: None
) -> None:
    class PublicLookup(KeyError):
        pass

    register_exception(PublicLookup, StatusCode.NOT_FOUND, send_message=True)
    register_exception(ValueError, StatusCode.INVALID_ARGUMENT, send_message=False)
    service.register_method("pkg.Svc", "P", raising(PublicLookup("order 7")))
    service.register_method("pkg.Svc", "K", raising(KeyError("secret key")))
    service.register_method("pkg.Svc", "V", raising(ValueError("internal detail")))
    assert service.call("pkg.Svc", "P").message == "'order 7'"
    assert service.call("pkg.Svc", "K").message == "Not found"
    assert service.call("pkg.Svc", "V").message == "Invalid argument"
    unregister_exception(ValueError)
    unregister_exception(PublicLookup)
    assert service.call("pkg.Svc", "V").message == "internal detail"
