"""A unary-request method given zero or several request messages by a
streaming client: both engines answer UNIMPLEMENTED with grpcio's text, and
keep serving."""

from __future__ import annotations

import grpc
import pytest

UNARY = "/grpc.testing.TestService/EmptyCall"


@pytest.mark.parametrize("count", [0, 2])
def test_unary_method_needs_exactly_one_request_message_on_every_engine(
        channel: grpc.Channel, count: int) -> None:
    with pytest.raises(grpc.RpcError) as err:
        channel.stream_unary(UNARY)(iter([b""] * count), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.value.details() == f'"{UNARY}" requires exactly one request message.'
    assert channel.stream_unary(UNARY)(iter([b""]), timeout=10) == b""
