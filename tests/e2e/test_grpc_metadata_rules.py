"""gRPC's own metadata rules for what handlers send, through real servers on
both engines: grpc- keys gRPC passes through (gRFC A6's
grpc-retry-pushback-ms, grpc-retry-delay-ms) reach the client; keys the
transport owns are dropped and the call keeps the status the handler chose."""

from __future__ import annotations

import json

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pygrpc_ffi.testing import strategies as gs

pytestmark = pytest.mark.timeout(300)

OWNED = ["grpc-status", "grpc-message", "grpc-timeout", "grpc-encoding",
         "grpc-accept-encoding", "grpc-internal-encoding-request",
         "grpc-status-details-bin", "grpc-previous-rpc-attempts", "content-type", "te",
         "grpclb_client_stats"]


def _entry(where: str, key: str, value: str) -> list[object]:
    """A SendMetadata entry: -bin keys carry the value's bytes, as gRPC wants."""
    if key.endswith("-bin"):
        return [where, key, value.encode().hex(), True]
    return [where, key, value, False]


def _fail_with(channel: grpc.Channel, code: int, message: str,
               trailers: list[tuple[str, str]]) -> grpc.RpcError:
    call = channel.unary_unary("/e2e.Control/FailWith")
    with pytest.raises(grpc.RpcError) as info:
        call(json.dumps([code, message, trailers]).encode(), timeout=20)
    return info.value


@pytest.mark.parametrize("key", ["grpc-retry-delay-ms", "grpc-retry-pushback-ms"])
def test_a_retry_trailer_reaches_the_client_with_the_handlers_status(
        channel: grpc.Channel, key: str) -> None:
    err = _fail_with(channel, grpc.StatusCode.DEADLINE_EXCEEDED.value[0], "x",
                     [(key, "1000"), ("x-retryable", "true")])
    assert (err.code(), err.details()) == (grpc.StatusCode.DEADLINE_EXCEEDED, "x")
    assert (key, "1000") in err.trailing_metadata()
    assert ("x-retryable", "true") in err.trailing_metadata()


@pytest.mark.parametrize("key", OWNED)
def test_a_transport_owned_trailer_is_dropped_and_the_error_status_kept(
        channel: grpc.Channel, key: str) -> None:
    value = "AAAA" if key.endswith("-bin") else "0"
    err = _fail_with(channel, grpc.StatusCode.ABORTED.value[0], "kept",
                     [(key, value), ("x-after", "1")])
    assert (err.code(), err.details()) == (grpc.StatusCode.ABORTED, "kept")
    assert ("x-after", "1") in err.trailing_metadata()


@pytest.mark.parametrize("where", ["initial", "trailing"])
@pytest.mark.parametrize("key", OWNED)
def test_a_transport_owned_key_on_success_is_dropped_and_the_answer_sent(
        channel: grpc.Channel, key: str, where: str) -> None:
    send = channel.unary_unary("/e2e.Control/SendMetadata")
    request = json.dumps([_entry(where, key, "0"), _entry(where, "x-kept", "1")]).encode()
    answer, call = send.with_call(request, timeout=20)
    got = call.initial_metadata() if where == "initial" else call.trailing_metadata()
    assert answer == b"sent" and ("x-kept", "1") in got
    assert call.code() == grpc.StatusCode.OK


def test_a_pass_through_grpc_key_on_success_reaches_the_client(channel: grpc.Channel) -> None:
    send = channel.unary_unary("/e2e.Control/SendMetadata")
    request = json.dumps([["trailing", "grpc-retry-pushback-ms", "250", False],
                          ["initial", "grpc-custom", "v", False]]).encode()
    answer, call = send.with_call(request, timeout=20)
    assert answer == b"sent"
    assert ("grpc-retry-pushback-ms", "250") in call.trailing_metadata()
    assert ("grpc-custom", "v") in call.initial_metadata()


#: Keys gRPC core parses into its own typed slots, and look-alikes.
CORE_KEYS = [*OWNED, "grpc-retry-pushback-ms", "grpc-retry-delay-ms", "grpc-",
             "grpc-trace-bin", "grpc-tags-bin", "grpc-server-stats-bin", "lb-token",
             "lb-cost-bin", "endpoint-load-metrics-bin", "user-agent", "host", ":status",
             "grpc-x-bin"]
_GRPC_KEYS = st.one_of(
    st.sampled_from(CORE_KEYS),
    gs.metadata_keys(binary=None).map(lambda key: f"grpc-{key}"),
)
_VALUES = ["1000", "-1", "abc", "", "99999999999999999999", "1S", "gzip", "0"]
_ANY_VALUES = st.one_of(st.sampled_from(_VALUES), gs.metadata_values(max_size=12))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=_GRPC_KEYS, value=_ANY_VALUES, where=st.sampled_from(["initial", "trailing"]),
       fail=st.booleans())
def test_the_host_stays_alive_for_any_key_a_handler_writes(
        channel: grpc.Channel, key: str, value: str, where: str, fail: bool) -> None:
    """Whatever the key, the call ends as the handler chose (OK or its error)
    or, for a malformed entry on success, INTERNAL; the server keeps serving."""
    if fail:
        err = _fail_with(channel, grpc.StatusCode.UNAVAILABLE.value[0], "busy", [(key, value)])
        assert (err.code(), err.details()) == (grpc.StatusCode.UNAVAILABLE, "busy")
    else:
        send = channel.unary_unary("/e2e.Control/SendMetadata")
        try:
            assert send(json.dumps([_entry(where, key, value)]).encode(), timeout=20) == b"sent"
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INTERNAL
    assert channel.unary_unary("/e2e.Control/Echo")(b"alive", timeout=20) == b"alive"


@pytest.mark.parametrize("key", CORE_KEYS)
def test_every_core_key_with_every_odd_value_leaves_the_host_serving(
        channel: grpc.Channel, key: str) -> None:
    send = channel.unary_unary("/e2e.Control/SendMetadata")
    for value in _VALUES:
        for where in ("initial", "trailing"):
            try:
                send(json.dumps([_entry(where, key, value)]).encode(), timeout=20)
            except grpc.RpcError as exc:  # a malformed entry on success
                assert exc.code() == grpc.StatusCode.INTERNAL, (key, value, where)
            err = _fail_with(channel, grpc.StatusCode.UNAVAILABLE.value[0], "busy",
                             [(key, value)])
            assert (err.code(), err.details()) == (grpc.StatusCode.UNAVAILABLE, "busy"), \
                (key, value)
    assert channel.unary_unary("/e2e.Control/Echo")(b"alive", timeout=20) == b"alive"
