"""Property tests through a real server: whatever a client sends and whatever
metadata a handler returns, the answer is exact or a clean INTERNAL, and the
server keeps serving (gRPC C++ aborts the process on invalid metadata)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from conftest import Server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pygrpc_ffi.metadata import MetadataValue
from pygrpc_ffi.testing import strategies as gs

pytestmark = pytest.mark.timeout(300)
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def by_key(pairs: object) -> dict[str, list[MetadataValue]]:
    """Values per key, in order: gRPC keeps the order of a key's values, not
    the order between different keys."""
    grouped: dict[str, list[MetadataValue]] = {}
    for key, value in pairs:  # type: ignore[attr-defined]
        grouped.setdefault(key, []).append(value)
    return grouped


@pytest.fixture(scope="module")
def fuzz_channel(server: Server) -> Iterator[grpc.Channel]:
    with server.channel() as channel:
        yield channel


@FUZZ
@given(payload=gs.payloads(max_size=70_000), metadata=gs.metadata())
def test_payload_and_client_metadata_come_back_exactly(
        fuzz_channel: grpc.Channel, payload: bytes,
        metadata: list[tuple[str, MetadataValue]]) -> None:
    forwarded = [(f"f-{key}", value) for key, value in metadata]
    echo = fuzz_channel.unary_unary("/e2e.Control/EchoForwarded")
    answer, call = echo.with_call(payload, metadata=forwarded, timeout=20)
    assert answer == payload
    assert by_key(call.trailing_metadata()) == by_key(forwarded)




@FUZZ
@given(valid=st.lists(st.tuples(st.sampled_from(["initial", "trailing"]), gs.metadata_entries()),
                      max_size=6),
       invalid=st.none() | st.tuples(st.sampled_from(["initial", "trailing"]),
                                     gs.invalid_metadata_entries()),
       position=st.integers(0, 6))
def test_handler_metadata_is_sent_exactly_or_fails_only_that_call(
        fuzz_channel: grpc.Channel, valid: list[tuple[str, tuple[str, MetadataValue]]],
        invalid: tuple[str, tuple[str, MetadataValue]] | None, position: int) -> None:
    entries = list(valid)
    if invalid is not None:
        entries.insert(position, invalid)
    request = json.dumps([
        [where, key, value.hex() if isinstance(value, bytes) else value,
         isinstance(value, bytes)] for where, (key, value) in entries]).encode()
    send = fuzz_channel.unary_unary("/e2e.Control/SendMetadata")
    if invalid is None:
        answer, call = send.with_call(request, timeout=20)
        assert answer == b"sent"
        assert by_key(call.initial_metadata()) == by_key(
            entry for where, entry in entries if where == "initial")
        assert by_key(call.trailing_metadata()) == by_key(
            entry for where, entry in entries if where == "trailing")
    else:
        with pytest.raises(grpc.RpcError) as info:
            send(request, timeout=20)
        assert info.value.code() == grpc.StatusCode.INTERNAL
    assert fuzz_channel.unary_unary("/e2e.Control/Echo")(b"alive", timeout=20) == b"alive"
