"""An unmodified generated servicer served by the gRPC C++ host (and the
grpcio engine) gives a grpcio client what grpcio's own server gives it, in
every credential-free interop case of gRPC's client (the streaming cases are
skipped while an engine answers streams with UNIMPLEMENTED)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent import futures

import grpc
import interop_servicer as interop
import pytest
from conftest import ENGINES, Server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def reference_address() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    interop.pb_grpc.add_TestServiceServicer_to_server(interop.TestServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture(scope="module", params=[(e, flavour) for e in ENGINES
                                        for flavour in ("sync", "async")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def servicer_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    engine, flavour = request.param
    server = Server(engine, module="servicer_handlers",
                    env={"PGF_E2E_ASYNC": "1" if flavour == "async" else "0"})
    yield server
    assert server.stop() == 0


@pytest.mark.parametrize("case", sorted(interop.CASES))
def test_interop_case_matches_grpcio_server(case: str, reference_address: str,
                                            servicer_server: Server) -> None:
    run = interop.CASES[case]
    with grpc.insecure_channel(reference_address) as channel:
        expected = run(channel)
    with servicer_server.channel() as channel:
        actual = run(channel)
    if case.startswith("unimplemented"):
        # Same code; the C registry's message names what is missing
        # ("unknown service S") where grpcio says "Method not found!".
        actual = dataclasses.replace(actual, details=expected.details)
    assert actual == expected
