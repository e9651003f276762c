"""A grpcio interceptor that post-processes answers (``bytes(response)``,
then trailers through ``context.set_trailing_metadata``) works on native
handlers and on servicers alike, on both engines, as on grpcio's server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import ENGINES, Server

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = Server(request.param, "--interceptor", "answer_handlers:AnswerStamp",
                 module="answer_handlers")
    yield srv
    assert srv.stop() == 0


@pytest.mark.parametrize(("method", "answer"), [
    ("answers.Native/Echo", b"native:hi"),
    ("answers.Native/Wrapped", b"wrapped:hi"),
    ("answers.Servicer/Echo", b"servicer:hi"),
])
def test_an_interceptor_reads_the_answer_bytes_and_adds_trailers(
        server: Server, method: str, answer: bytes) -> None:
    with server.channel() as channel:
        reply, call = channel.unary_unary(f"/{method}").with_call(b"hi", timeout=10)
    assert reply == answer
    trailers = dict(call.trailing_metadata())
    assert trailers["x-answer-size"] == str(len(answer))
    assert trailers["x-answer"] == answer.decode()
