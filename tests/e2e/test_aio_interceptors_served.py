"""A grpc.aio interceptor that awaits in ``intercept_service`` (an
asynchronous token lookup on the running loop), loaded with
``pygrpc-ffi serve --interceptor``, on both engines: it admits, rejects and
denies calls after its awaits as under grpc.aio's server."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from conftest import ENGINES, Server

pytestmark = pytest.mark.timeout(120)

S = "obs.Native"
AUTH = (("authorization", "Bearer ok"),)


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = Server(request.param, "--interceptor", "aio_interceptors:AsyncTokenCheck",
                 module="observed_handlers")
    yield srv
    assert srv.stop() == 0


@pytest.mark.parametrize(("method", "answer"), [("Unary", b"u:x"), ("AsyncUnary", b"a:x")])
def test_awaiting_aio_interceptor_admits_rejects_and_denies(
        server: Server, method: str, answer: bytes) -> None:
    with server.channel() as channel:
        stub = channel.unary_unary(f"/{S}/{method}")
        assert stub(b"x", metadata=AUTH, timeout=10) == answer
        with pytest.raises(grpc.RpcError) as err:
            stub(b"x", metadata=(("authorization", "Bearer no"),), timeout=10)
        assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNIMPLEMENTED,
                                                          "Method not found!")
        with pytest.raises(grpc.RpcError) as err:
            stub(b"x", metadata=(*AUTH, ("x-deny", "1")), timeout=10)
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
