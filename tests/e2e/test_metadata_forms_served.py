"""Metadata a handler gives as a dict or as (key, value) pairs reaches a
real grpcio client the same way, on GrpcError and GrpcResponse alike (issue
24, finding 10: a dict was iterated as its keys, so ``{"ab": "value"}`` sent
``a: b`` and ``{"x-reason": "gone"}`` turned NOT_FOUND into INTERNAL); an
entry that cannot be sent is dropped and the error's status still arrives."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from conftest import ENGINES, Server

pytestmark = pytest.mark.timeout(120)

S = "e2e.MetadataForms"
FORMS = ["Dict", "Pairs", "Tuple", "Metadata"]
SENT = [("x-count-bin", b"\x01\x02"), ("x-reason", "gone")]


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = Server(request.param, module="metadata_forms_handlers")
    yield srv
    assert srv.stop() == 0


def ours(metadata: object) -> list[tuple[str, object]]:
    """The entries a handler sent (grpc's own, like content-type, left out),
    sorted: the order of distinct keys is the transport's."""
    return sorted((k, v) for k, v in metadata or ()  # type: ignore[attr-defined]
                  if k.startswith(("x-", "a")))


@pytest.mark.parametrize("prefix", ["", "A"])
@pytest.mark.parametrize("form", FORMS)
def test_grpc_error_trailers_in_any_form_reach_the_client(
        server: Server, form: str, prefix: str) -> None:
    with server.channel() as channel:
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary(f"/{S}/{prefix}Error{form}")(b"", timeout=10)
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.NOT_FOUND,
                                                      "no such thing")
    assert ours(err.value.trailing_metadata()) == SENT


@pytest.mark.parametrize("prefix", ["", "A"])
@pytest.mark.parametrize("form", FORMS)
def test_grpc_response_metadata_in_any_form_reaches_the_client(
        server: Server, form: str, prefix: str) -> None:
    with server.channel() as channel:
        answer, call = channel.unary_unary(f"/{S}/{prefix}Response{form}").with_call(
            b"", timeout=10)
    assert answer == b"ok"
    assert ours(call.initial_metadata()) == SENT
    assert ours(call.trailing_metadata()) == SENT


def test_a_dict_key_is_never_split_into_a_pair(server: Server) -> None:
    with server.channel() as channel:
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary(f"/{S}/ErrorAb")(b"", timeout=10)
        answer, call = channel.unary_unary(f"/{S}/ResponseAb").with_call(b"", timeout=10)
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    assert ours(err.value.trailing_metadata()) == [("ab", "value")]
    assert answer == b"ok" and ours(call.trailing_metadata()) == [("ab", "value")]


@pytest.mark.parametrize("prefix", ["", "A"])
def test_a_bad_trailer_never_costs_the_error_its_status(server: Server, prefix: str) -> None:
    with server.channel() as channel:
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary(f"/{S}/{prefix}ErrorBad")(b"", timeout=10)
        assert channel.unary_unary(f"/{S}/ResponseDict")(b"", timeout=10) == b"ok"
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.NOT_FOUND,
                                                      "no such thing")
    assert ours(err.value.trailing_metadata()) == [("x-reason", "gone")]
