"""Issue 24, finding 7: a flood of method names a whole-service handler
accepts must not take the metrics table's slots from methods registered by
name.  600 random names fill the 512-slot table; 5 calls to the registered
method after them are counted under its own name, on both engines, and the
number of series stays bounded."""

from __future__ import annotations

import secrets

import pytest
from conftest import ENGINES, Server
from metrics_kit import free_port, scrape
from pygrpc_ffi._native import lib

SERVICE = "flood.Svc"  # metrics_flood_handlers.SERVICE: importing it would register it here

FLOOD = 600
STARTED = "grpc_server_started_total"
HANDLED = "grpc_server_handled_total"


def _labels(method: str, service: str = SERVICE, kind: str = "unary",
            **extra: str) -> tuple[tuple[str, str], ...]:
    labels = {"grpc_service": service, "grpc_method": method, "grpc_type": kind, **extra}
    return tuple(sorted(labels.items()))


@pytest.mark.parametrize("engine", ENGINES)
def test_registered_method_counted_after_a_flood_of_unknown_names(engine: str) -> None:
    port = free_port()
    server = Server(engine, "--metrics-port", str(port), module="metrics_flood_handlers")
    try:
        with server.channel() as channel:
            names = [f"Flood{secrets.token_hex(6)}" for _ in range(FLOOD)]
            for start in range(0, FLOOD, 50):
                futures = [channel.unary_unary(f"/{SERVICE}/{name}").future(b"", timeout=30)
                           for name in names[start:start + 50]]
                assert [f.result() for f in futures] == [b"any"] * len(futures)
            real = channel.unary_unary(f"/{SERVICE}/Real")
            for _ in range(5):
                assert real(b"", timeout=10) == b"real"
        samples = scrape(port)
    finally:
        assert server.stop() == 0
    assert samples.get((STARTED, _labels("Real"))) == 5
    assert samples.get((HANDLED, _labels("Real", grpc_code="OK"))) == 5
    series = [labels for name, labels in samples if name == STARTED]
    flooded = [labels for labels in series
               if dict(labels)["grpc_method"].startswith("Flood")]
    # The flood has a bounded share of the table; the rest is one series.
    assert 0 < len(flooded) <= lib.PGF_METRICS_MAX_UNREGISTERED
    assert len(series) <= lib.PGF_METRICS_MAX_METHODS + 1
    unknown = samples[(STARTED, _labels("unknown", "unknown", "unknown"))]
    assert unknown == FLOOD - len(flooded)
