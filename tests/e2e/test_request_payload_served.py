"""The bytes idioms users write on ``request.payload`` work for unary and
stream messages on real servers, both engines, for grpcio clients."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from conftest import ENGINES, Server
from request_idioms import DOC, EXPECTED, SERVICE

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=ENGINES)
def idioms_channel(request: pytest.FixtureRequest) -> Iterator[grpc.Channel]:
    """A server of tests/request_idioms.py's handlers (idioms_handlers)."""
    srv = Server(request.param, module="idioms_handlers")
    try:
        with srv.channel() as channel:
            yield channel
    finally:
        assert srv.stop() == 0


def test_bytes_idioms_on_unary_and_stream_payloads(idioms_channel: grpc.Channel) -> None:
    channel = idioms_channel
    unary = channel.unary_unary(f"/{SERVICE}/Unary")
    assert json.loads(unary(DOC, timeout=10)) == EXPECTED
    collected = channel.stream_unary(f"/{SERVICE}/ClientStream")(iter([DOC, DOC]), timeout=10)
    assert json.loads(collected) == [EXPECTED] * 2
    answers = channel.stream_stream(f"/{SERVICE}/AsyncBidi")(iter([DOC, DOC, DOC]), timeout=10)
    assert [json.loads(a) for a in answers] == [EXPECTED] * 3
