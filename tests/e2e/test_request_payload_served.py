"""The bytes idioms users write on ``request.payload`` work for unary and
stream messages on real servers, both engines, for grpcio clients."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import ENGINES, Server

pytestmark = pytest.mark.timeout(120)

DOC = b'{"k": "error"}'
EXPECTED = {"type": "bytes", "json": {"k": "error"}, "decoded": DOC.decode(),
            "has_error": True, "has_nul": False, "equal": True, "head": '{"k"',
            "starts": True, "same_object": True, "bytes_of": True, "memoryview_of": True}
S = "idioms.Payload"


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = Server(request.param, module="idioms_handlers")
    yield srv
    assert srv.stop() == 0


def test_bytes_idioms_on_unary_and_stream_payloads(server: Server) -> None:
    with server.channel() as channel:
        assert json.loads(channel.unary_unary(f"/{S}/Unary")(DOC, timeout=10)) == EXPECTED
        collected = channel.stream_unary(f"/{S}/ClientStream")(iter([DOC, DOC]), timeout=10)
        assert json.loads(collected) == [EXPECTED] * 2
        answers = channel.stream_stream(f"/{S}/AsyncBidi")(iter([DOC, DOC, DOC]), timeout=10)
        assert [json.loads(a) for a in answers] == [EXPECTED] * 3
