"""gRPC's own rules for the metadata handlers send, through the C dispatch:
keys gRPC owns are dropped with a log line and the call ends as the handler
chose; other grpc- keys (grpc-retry-pushback-ms, grpc-retry-delay-ms) pass."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pygrpc_ffi import GrpcError, GrpcRequest, GrpcResponse, GrpcService, StatusCode
from pygrpc_ffi.testing import strategies as gs

pytestmark = pytest.mark.timeout(120, method="thread")

OWNED = sorted(gs.FORBIDDEN_KEYS)


def _value(key: str) -> str | bytes:
    return b"\x00\x01" if key.endswith("-bin") else "0"


@pytest.mark.parametrize("key", ["grpc-retry-delay-ms", "grpc-retry-pushback-ms"])
def test_a_retry_trailer_on_an_error_reaches_the_client_with_its_status(
        service: GrpcService, key: str) -> None:
    def handler(request: GrpcRequest) -> bytes:
        raise GrpcError(StatusCode.DEADLINE_EXCEEDED, "x",
                        trailers=[(key, "1000"), ("x-retryable", "true")])

    service.register_method("rules.Retry", key, handler)
    result = service.call("rules.Retry", key)
    assert (result.code, result.message) == (StatusCode.DEADLINE_EXCEEDED, "x")
    assert result.trailing_metadata.pairs() == ((key, "1000"), ("x-retryable", "true"))


@pytest.mark.parametrize("key", OWNED)
def test_an_owned_key_is_dropped_with_a_log_line_and_the_answer_sent(
        service: GrpcService, caplog: pytest.LogCaptureFixture, key: str) -> None:
    def handler(request: GrpcRequest) -> GrpcResponse:
        return GrpcResponse(b"ok", metadata=[(key, _value(key)), ("x-i", "1")],
                            trailers=[("x-t", "1"), (key, _value(key))])

    service.register_method("rules.Owned", key, handler)
    with caplog.at_level(logging.ERROR, logger="pygrpc_ffi"):
        result = service.call("rules.Owned", key)
    assert (result.code, result.payload) == (StatusCode.OK, b"ok")
    assert result.initial_metadata.pairs() == (("x-i", "1"),)
    assert result.trailing_metadata.pairs() == (("x-t", "1"),)
    logs = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logs) == 2 and all(repr(key) in line and "dropped" in line for line in logs)


@pytest.mark.parametrize("key", OWNED)
def test_an_owned_trailer_on_an_error_is_dropped_and_the_status_kept(
        service: GrpcService, key: str) -> None:
    def handler(request: GrpcRequest) -> bytes:
        raise GrpcError(StatusCode.ABORTED, "kept", trailers=[(key, _value(key)), ("x", "1")])

    service.register_method("rules.OwnedError", key, handler)
    result = service.call("rules.OwnedError", key)
    assert (result.code, result.message) == (StatusCode.ABORTED, "kept")
    assert result.trailing_metadata.pairs() == (("x", "1"),)


_KEYS = st.one_of(
    st.sampled_from([*OWNED, "grpc-retry-pushback-ms", "grpc-retry-delay-ms", "grpc-"]),
    gs.metadata_keys(binary=None).map(lambda key: f"grpc-{key}"),
    gs.metadata_keys(binary=None),
)
_VALUES = st.one_of(st.sampled_from(["1000", "-1", "", "1S", "abc"]),
                    gs.metadata_values(max_size=12))


_case: dict[str, Any] = {}


def _any_key_handler(request: GrpcRequest) -> GrpcResponse:
    if _case["where"] == "error":
        raise GrpcError(StatusCode.UNAVAILABLE, "busy", trailers=_case["pairs"])
    return GrpcResponse(b"ok", **{_case["where"]: _case["pairs"]})


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=_KEYS, value=_VALUES, where=st.sampled_from(["metadata", "trailers", "error"]))
def test_any_key_a_handler_writes_ends_the_call_as_grpc_rules_say(
        service: GrpcService, key: str, value: str, where: str) -> None:
    """An owned key never changes the outcome; a key gRPC passes arrives as
    sent; only a malformed entry on success fails the call (INTERNAL)."""
    sent: Any = value.encode() if key.endswith("-bin") else value
    _case.update(where=where, pairs=[(key, sent)])
    if _case.get("service") is not service:  # the test's service, kept across examples
        service.register_method("rules.Any", "M", _any_key_handler)
        _case["service"] = service
    logger = logging.getLogger("pygrpc_ffi")
    logger.disabled = True
    try:
        result = service.call("rules.Any", "M")
    finally:
        logger.disabled = False
    got = (result.initial_metadata if where == "metadata" else result.trailing_metadata).pairs()
    pushback_ok = key != "grpc-retry-pushback-ms" or (value.isdigit() and len(value) <= 18)
    spaced = not key.endswith("-bin") and value != value.strip(" ")
    passes = key not in gs.FORBIDDEN_KEYS and pushback_ok and not spaced
    if where == "error":  # a trailer never costs an error its status
        assert (result.code, result.message) == (StatusCode.UNAVAILABLE, "busy")
        assert got == (((key, sent),) if passes else ())
    elif passes or key in gs.FORBIDDEN_KEYS:
        assert (result.code, result.payload) == (StatusCode.OK, b"ok")
        assert got == (((key, sent),) if passes else ())
    else:
        assert result.code is StatusCode.INTERNAL


def _response_handler(metadata: dict[str, Any], trailers: dict[str, Any] | None,
                      asynchronous: bool) -> Any:
    if asynchronous:
        async def answer_async(request: GrpcRequest) -> GrpcResponse:
            return GrpcResponse(b"ok", metadata=metadata, trailers=trailers)

        return answer_async

    def answer(request: GrpcRequest) -> GrpcResponse:
        return GrpcResponse(b"ok", metadata=metadata, trailers=trailers)

    return answer


@pytest.mark.parametrize("asynchronous", [False, True], ids=["def", "async_def"])
def test_dict_metadata_of_text_and_binary_entries_arrives_in_order(
        service: GrpcService, asynchronous: bool) -> None:
    metadata = {"x-a": "1", "x-b-bin": b"\x00\xff", "x-c": "3"}
    trailers = {"x-t": "t", "x-u-bin": b"\x01"}
    service.register_method("rules.Dict", "Order",
                            _response_handler(metadata, trailers, asynchronous))
    result = service.call("rules.Dict", "Order")
    assert (result.code, result.payload) == (StatusCode.OK, b"ok")
    assert result.initial_metadata.pairs() == tuple(metadata.items())
    assert result.trailing_metadata.pairs() == tuple(trailers.items())


@pytest.mark.parametrize("asynchronous", [False, True], ids=["def", "async_def"])
def test_an_owned_key_inside_dict_metadata_is_dropped_and_the_entries_after_it_sent(
        service: GrpcService, caplog: pytest.LogCaptureFixture, asynchronous: bool) -> None:
    metadata = {"x-a": "1", "grpc-status": "5", "x-c": "3"}
    service.register_method("rules.Dict", "Owned",
                            _response_handler(metadata, None, asynchronous))
    with caplog.at_level(logging.ERROR, logger="pygrpc_ffi"):
        result = service.call("rules.Dict", "Owned")
    assert (result.code, result.payload) == (StatusCode.OK, b"ok")
    assert result.initial_metadata.pairs() == (("x-a", "1"), ("x-c", "3"))
    assert any("'grpc-status'" in r.getMessage() and "dropped" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("value", ["caf\u00e9", "a\nb", 7], ids=["non_ascii", "newline", "int"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["def", "async_def"])
def test_an_entry_that_cannot_be_sent_inside_dict_metadata_fails_the_call_cleanly(
        service: GrpcService, asynchronous: bool, value: Any) -> None:
    metadata = {"x-a": "1", "x-bad": value, "x-c": "3"}
    service.register_method("rules.Dict", "Bad", _response_handler(metadata, None, asynchronous))
    result = service.call("rules.Dict", "Bad")
    assert (result.code, result.message) == (StatusCode.INTERNAL, "Internal server error")
    assert result.payload == b"" and result.initial_metadata.pairs() == ()
