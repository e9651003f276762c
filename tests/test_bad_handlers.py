"""Handlers that misbehave fail their own call, never the process or another
call: wrong return types, unsendable payloads, invalid response metadata,
broken GrpcError fields, a kept request payload, KeyboardInterrupt and
SystemExit, a handler that stops the event loop.  Each failure is INTERNAL
(or the documented status) with a log line naming the handler."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

import pygrpc_ffi
from pygrpc_ffi import GrpcRequest, GrpcResponse, GrpcService, StatusCode, live_objects

pytestmark = pytest.mark.timeout(20, method="thread")

LOGGER = "pygrpc_ffi"
INTERNAL_MESSAGE = "Internal server error"


def error_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno >= logging.ERROR]


def sync_and_async(result: Callable[[GrpcRequest], Any]) -> dict[str, Callable[..., Any]]:
    """A sync and an async handler returning result(request), with distinct names."""

    def sync_bad_handler(request: GrpcRequest) -> Any:
        return result(request)

    async def async_bad_handler(request: GrpcRequest) -> Any:
        await asyncio.sleep(0)
        return result(request)

    return {"sync_bad_handler": sync_bad_handler, "async_bad_handler": async_bad_handler}


def good(request: GrpcRequest) -> GrpcResponse:
    return GrpcResponse(b"good:" + bytes(request.payload), {"fine": "yes"})


def assert_internal(result: pygrpc_ffi.CallResult) -> None:
    assert result.code is StatusCode.INTERNAL
    assert result.message == INTERNAL_MESSAGE
    assert result.payload == b""
    assert result.initial_metadata.pairs() == ()
    assert result.trailing_metadata.pairs() == ()


def assert_good_still_works(service: GrpcService) -> None:
    result = service.call("pkg.Good", "M", b"x")
    assert (result.code, result.payload) == (StatusCode.OK, b"good:x")
    assert result.initial_metadata["fine"] == "yes"


# ------------------------------------------------------------ wrong return types


@pytest.mark.parametrize(
    ("returned", "type_name"),
    [
        (lambda r: None, "NoneType"),
        (lambda r: "a str is not bytes", "str"),
        (lambda r: 42, "int"),
        (lambda r: {"payload": b""}, "dict"),
        (lambda r: GrpcResponse(payload=123), "int"),
        (lambda r: GrpcResponse(payload="text"), "str"),
        (lambda r: GrpcResponse(payload=None), "NoneType"),
        (lambda r: GrpcResponse(payload=[1, 2]), "list"),
    ],
    ids=["None", "str", "int", "dict", "response-int", "response-str", "response-None",
         "response-list"],
)
def test_wrong_return_type_is_internal_with_a_log_naming_handler_and_type(
    service: GrpcService, caplog: pytest.LogCaptureFixture,
    returned: Callable[[GrpcRequest], Any], type_name: str,
) -> None:
    service.register_handler("pkg.Good", good)
    for name, handler in sync_and_async(returned).items():
        service.register_method("pkg.Bad", name, handler)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            result = service.call("pkg.Bad", name, b"in")
        assert_internal(result)
        logs = error_logs(caplog)
        assert len(logs) == 1, logs
        assert name in logs[0]
        assert type_name in logs[0]
        assert_good_still_works(service)


def test_serializer_that_fails_is_internal(service: GrpcService,
                                            caplog: pytest.LogCaptureFixture) -> None:
    class BrokenMessage:
        def SerializeToString(self) -> bytes:
            raise RuntimeError("cannot serialize")

    class NotBytesMessage:
        def SerializeToString(self) -> int:
            return 5

    service.register_handler("pkg.Good", good)
    for maker in (BrokenMessage, NotBytesMessage):
        for name, handler in sync_and_async(lambda r, m=maker: m()).items():
            service.register_method("pkg.Bad", f"{maker.__name__}_{name}", handler)
            with caplog.at_level(logging.ERROR, logger=LOGGER):
                result = service.call("pkg.Bad", f"{maker.__name__}_{name}", timeout=5)
            assert_internal(result)
            assert_good_still_works(service)
    assert len(error_logs(caplog)) == 4


def test_returning_the_request_view_itself_echoes_it(service: GrpcService) -> None:
    # The answer holds the request's message until the host has sent it.
    handlers = {**sync_and_async(lambda r: r.payload),
                **{f"wrapped_{k}": v for k, v in
                   sync_and_async(lambda r: GrpcResponse(r.payload)).items()}}
    for name, handler in handlers.items():
        service.register_method("pkg.Echo", name, handler)
        result = service.call("pkg.Echo", name, b"echo me", timeout=5)
        assert result.code is StatusCode.OK and result.payload == b"echo me", name


# ------------------------------------------------------------ response metadata

INVALID_METADATA: list[tuple[str, Any, str]] = [
    ("Upper-Case", "v", "uppercase key"),
    ("x-crlf", "a\r\nb", "CR LF in value"),
    ("x-cr", "a\rb", "CR in value"),
    ("x-lf", "a\nb", "LF in value"),
    ("x-nonascii", "caf\u00e9", "non-ASCII value"),
    ("x-emoji", "\U0001f600", "non-ASCII value (emoji)"),
    ("x-data-bin", "str on bin key", "str value on -bin key"),
    ("x-bytes", b"bytes on text key", "bytes value on text key"),
    ("", "v", "empty key"),
    ("bad key", "v", "space in key"),
    ("x-ctl", "a\x00b", "NUL in value"),
    ("x-tab", "a\tb", "tab in value"),
    ("x-space", " leading", "leading space"),
    ("x-space", "trailing ", "trailing space"),
    ("x-num", 5, "int value"),
]


@pytest.mark.parametrize(("key", "value", "why"), INVALID_METADATA,
                         ids=[why for _, _, why in INVALID_METADATA])
@pytest.mark.parametrize("where", ["metadata", "trailers"])
def test_invalid_response_metadata_fails_only_that_call(
    service: GrpcService, caplog: pytest.LogCaptureFixture,
    key: str, value: Any, why: str, where: str,
) -> None:
    def response(request: GrpcRequest) -> GrpcResponse:
        entries = [("valid-before", "ok"), (key, value)]
        if where == "metadata":
            return GrpcResponse(b"payload", metadata=entries)
        return GrpcResponse(b"payload", metadata={"initial": "ok"}, trailers=entries)

    service.register_handler("pkg.Good", good)
    for name, handler in sync_and_async(response).items():
        service.register_method("pkg.Bad", name, handler)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            result = service.call("pkg.Bad", name)
        assert_internal(result)
        logs = error_logs(caplog)
        assert len(logs) == 1 and name in logs[0], logs
        assert_good_still_works(service)


def test_malformed_metadata_containers_fail_only_that_call(
    service: GrpcService, caplog: pytest.LogCaptureFixture,
) -> None:
    shapes: list[Any] = [5, [("one-element",)], [("a", "b", "c")], [b"xy"], object()]
    service.register_handler("pkg.Good", good)
    for i, shape in enumerate(shapes):
        for where in ("metadata", "trailers"):
            def response(request: GrpcRequest, shape: Any = shape, where: str = where) -> Any:
                if where == "metadata":
                    return GrpcResponse(b"p", metadata=shape)
                return GrpcResponse(b"p", metadata={"initial": "ok"}, trailers=shape)

            for name, handler in sync_and_async(response).items():
                method = f"{name}_{i}_{where}"
                service.register_method("pkg.Bad", method, handler)
                with caplog.at_level(logging.ERROR, logger=LOGGER):
                    result = service.call("pkg.Bad", method, timeout=5)
                assert_internal(result)
                assert_good_still_works(service)


def test_invalid_metadata_does_not_disturb_concurrent_good_calls(service: GrpcService) -> None:
    def bad(request: GrpcRequest) -> GrpcResponse:
        return GrpcResponse(b"x", trailers={"grpc-status": "13"})

    service.register_handler("pkg.Good", good)
    service.register_handler("pkg.Bad", bad)
    failures: list[Any] = []

    def worker(n: int) -> None:
        for i in range(50):
            if (i + n) % 2:
                r = service.call("pkg.Good", "M", b"x")
                if (r.code, r.payload) != (StatusCode.OK, b"good:x"):
                    failures.append(r)
            else:
                r = service.call("pkg.Bad", "M")
                # gRPC owns grpc-status: the entry is dropped, the answer sent.
                if (r.code, r.payload) != (StatusCode.OK, b"x") or r.trailing_metadata.pairs():
                    failures.append(r)

    logging.getLogger(LOGGER).disabled = True
    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
    finally:
        logging.getLogger(LOGGER).disabled = False
    assert failures == []


# --------------------------------------------------------------- broken errors


@pytest.mark.parametrize(
    "bad",
    [("grpc-message", "x"), ("Upper", "x"), ("k", "line\nbreak"), ("only-key",), "ab", 5],
    ids=["grpc-key", "uppercase", "newline", "one-tuple", "string", "int"],
)
def test_a_bad_trailer_never_costs_a_grpc_error_its_status(
    service: GrpcService, caplog: pytest.LogCaptureFixture, bad: Any,
) -> None:
    """docs/design.md, Errors: the entry is dropped with a log line; the status,
    message and good trailers the handler chose reach the client."""
    def raise_it(request: GrpcRequest) -> Any:
        raise pygrpc_ffi.Aborted("bad trailer", trailers=[("good", "1"), bad, ("also", "2")])

    service.register_handler("pkg.Good", good)
    for name, handler in sync_and_async(raise_it).items():
        service.register_method("pkg.Bad", name, handler)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            result = service.call("pkg.Bad", name, timeout=5)
        assert (result.code, result.message) == (StatusCode.ABORTED, "bad trailer"), name
        assert result.trailing_metadata.pairs() == (("good", "1"), ("also", "2"))
        assert len(error_logs(caplog)) == 1, error_logs(caplog)
        assert_good_still_works(service)


@pytest.mark.parametrize(
    "error",
    [
        pygrpc_ffi.Aborted("bad details", details=12345),
        pygrpc_ffi.GrpcError(StatusCode.ABORTED, 12345),  # type: ignore[arg-type]
    ],
    ids=["details-int", "message-int"],
)
def test_grpc_error_with_unsendable_fields_is_internal(
    service: GrpcService, caplog: pytest.LogCaptureFixture, error: pygrpc_ffi.GrpcError,
) -> None:
    def raise_it(request: GrpcRequest) -> Any:
        raise error

    service.register_handler("pkg.Good", good)
    for name, handler in sync_and_async(raise_it).items():
        service.register_method("pkg.Bad", name, handler)
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            result = service.call("pkg.Bad", name, timeout=5)
        assert result.code is StatusCode.INTERNAL, name
        assert result.trailing_metadata.pairs() == ()
        assert result.details is None
        assert_good_still_works(service)


# ------------------------------------------------------------- kept payload


def test_payload_kept_and_read_in_a_later_call_reads_its_own_bytes(service: GrpcService) -> None:
    # Before the request bytes were owned by messages, a kept view read the
    # next client's bytes (or freed memory).
    kept: list[memoryview] = []
    outcome: list[bytes] = []

    def handler(request: GrpcRequest) -> bytes:
        if kept:
            outcome.append(bytes(kept[0]))
        kept.append(request.payload_view)
        return bytes(request.payload)

    service.register_handler("pkg.Svc", handler)
    assert service.call("pkg.Svc", "M", b"first").payload == b"first"
    assert service.call("pkg.Svc", "M", b"second").payload == b"second"
    assert outcome == [b"first"]
    kept.clear()


def test_payload_read_from_another_thread_after_the_call_reads_its_bytes(
    service: GrpcService,
) -> None:
    holder: list[memoryview] = []

    async def handler(request: GrpcRequest) -> bytes:
        holder.append(request.payload_view[2:])
        return b"done"

    service.register_handler("pkg.Svc", handler)
    assert service.call("pkg.Svc", "M", b"data").payload == b"done"
    read: list[bytes] = []
    thread = threading.Thread(target=lambda: read.append(holder[0].tobytes()))
    thread.start()
    thread.join(5)
    assert read == [b"ta"]
    holder.clear()


def test_slices_and_exports_of_the_payload_hold_its_bytes_until_dropped(
    service: GrpcService,
) -> None:
    kept: list[Any] = []

    def exporting_handler(request: GrpcRequest) -> bytes:
        view = request.payload_view
        kept.extend([view[1:], view.obj, memoryview(view.obj)[0:3], view[::2]])
        return b"ok"

    service.register_handler("pkg.Svc", exporting_handler)
    assert service.call("pkg.Svc", "M", b"sliced payload").code is StatusCode.OK
    assert service.call("pkg.Svc", "M", b"another payload").code is StatusCode.OK
    assert bytes(kept[0]) == b"liced payload"
    assert bytes(kept[1]) == b"sliced payload"
    assert bytes(kept[2]) == b"sli"
    assert bytes(kept[3]) == b"sliced payload"[::2]
    assert pygrpc_ffi.live_objects()["messages"] == 2
    kept.clear()
    gc.collect()
    assert pygrpc_ffi.live_objects()["messages"] == 0


# ------------------------------------------------ KeyboardInterrupt, SystemExit


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_interrupt_in_a_sync_handler_fails_only_that_call(
    service: GrpcService, caplog: pytest.LogCaptureFixture, exc_type: type[BaseException],
) -> None:
    def interrupting_handler(request: GrpcRequest) -> bytes:
        raise exc_type()

    service.register_handler("pkg.Good", good)
    service.register_handler("pkg.Bad", interrupting_handler)
    outcomes: list[Any] = []

    def host_thread() -> None:
        # The dispatching thread goes on after the interrupted call.
        outcomes.append(service.call("pkg.Bad", "M"))
        outcomes.append(service.call("pkg.Good", "M", b"after"))
        outcomes.append("thread continued")

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        thread = threading.Thread(target=host_thread)
        thread.start()
        thread.join(10)
        same_thread = service.call("pkg.Bad", "M")
    assert not thread.is_alive()
    bad, after, marker = outcomes
    assert bad.code is StatusCode.UNAVAILABLE
    assert exc_type.__name__ in bad.message
    assert (after.code, after.payload) == (StatusCode.OK, b"good:after")
    assert marker == "thread continued"
    assert same_thread.code is StatusCode.UNAVAILABLE
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 2
    assert all(r.levelno == logging.ERROR for r in records)
    assert all("interrupting_handler" in r.getMessage() for r in records)
    assert all(exc_type.__name__ in r.getMessage() for r in records)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_interrupt_in_an_async_handler_fails_only_that_call(
    service: GrpcService, caplog: pytest.LogCaptureFixture, exc_type: type[BaseException],
) -> None:
    async def async_interrupting(request: GrpcRequest) -> bytes:
        await asyncio.sleep(0)
        raise exc_type()

    async def async_good(request: GrpcRequest) -> bytes:
        await asyncio.sleep(0)
        return b"loop alive"

    service.register_method("pkg.Svc", "Bad", async_interrupting)
    service.register_method("pkg.Svc", "Good", async_good)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        bad = service.call("pkg.Svc", "Bad", timeout=5)
    assert bad.code is StatusCode.UNAVAILABLE
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    assert "async_interrupting" in records[0].getMessage()
    good_result = service.call("pkg.Svc", "Good", timeout=5)
    assert (good_result.code, good_result.payload) == (StatusCode.OK, b"loop alive")


def test_handler_that_stops_the_event_loop_does_not_lose_calls(
    service: GrpcService, caplog: pytest.LogCaptureFixture,
) -> None:
    async def loop_stopper(request: GrpcRequest) -> bytes:
        asyncio.get_running_loop().stop()
        await asyncio.sleep(0.01)
        return b"finished anyway"

    async def after(request: GrpcRequest) -> bytes:
        return b"loop restarted"

    service.register_method("pkg.Svc", "Stop", loop_stopper)
    service.register_method("pkg.Svc", "After", after)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        stopped = service.call("pkg.Svc", "Stop", timeout=5)
        later = service.call("pkg.Svc", "After", timeout=5)
    assert (stopped.code, stopped.payload) == (StatusCode.OK, b"finished anyway")
    assert (later.code, later.payload) == (StatusCode.OK, b"loop restarted")


def test_many_failing_calls_leak_nothing(service: GrpcService) -> None:
    handlers: list[Callable[[GrpcRequest], Any]] = [
        lambda r: None,
        lambda r: GrpcResponse(b"x", trailers={"Bad": "x"}),
        lambda r: 1 / 0,
        lambda r: GrpcResponse(b"x", metadata=5),
    ]
    for i, handler in enumerate(handlers):
        service.register_method("pkg.Svc", f"M{i}", handler)
    logging.getLogger(LOGGER).disabled = True
    try:
        for _ in range(25):
            for i in range(len(handlers)):
                assert service.call("pkg.Svc", f"M{i}").code is StatusCode.INTERNAL
    finally:
        logging.getLogger(LOGGER).disabled = False
    assert live_objects()["calls"] == 0
    assert live_objects()["buffers"] == 0


NESTED_CALLS_WITHOUT_BOUND = """
import logging, sys
logging.basicConfig(level=logging.WARNING)
from pygrpc_ffi import GrpcError, GrpcService
svc = GrpcService()
def handler(request):
    result = svc.call("pkg.Svc", "M")
    if not result.ok:
        raise GrpcError(result.code, result.message)
    return result.payload
svc.register_method("pkg.Svc", "M", handler)
for _ in range(3):
    result = svc.call("pkg.Svc", "M")
    print(result.code.name, flush=True)
"""


def test_unbounded_nested_calls_end_with_internal_instead_of_hanging() -> None:
    # RecursionError strikes inside the trampoline's own error handling (the
    # traceback it logs) or before its first line: the call must end anyway.
    # A subprocess, so that the old hang fails the test instead of stalling it.
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", NESTED_CALLS_WITHOUT_BOUND],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["INTERNAL"] * 3
