"""Property tests through a real server: whatever a client sends and whatever
metadata a handler returns, the answer is exact (an entry whose key gRPC
owns dropped) or a clean INTERNAL, and the server keeps serving (gRPC C++
aborts the process on invalid metadata)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from conftest import Server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pygrpc_ffi._native import lib

from pygrpc_ffi.metadata import MetadataValue, encode_entry, is_binary_key
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


# Keys near gRPC core's binary rule (5+ characters ending in "-bin"), and
# around its other rules: legal characters, reserved prefixes and names.
_KEY_PARTS = st.text("ab09-_.Bx:/ ", max_size=5)
_KEYS = st.one_of(
    st.sampled_from(["-bin", "a-bin", "--bin", "bin", "-bi", "x-bin", "x-BIN", "grpc-x-bin",
                     "te", "content-type", ":path", "x", "grpc-status", "grpc-retry-pushback-ms",
                     "grpc-timeout"]),
    st.builds(lambda k, s: k + s, _KEY_PARTS, st.sampled_from(["", "-bin", "bin", "-b"])),
)
_VALUES = st.one_of(st.binary(max_size=12),
                    st.sampled_from([b"\x80", b"\x00", b"text", b" x", b"x ", b"a\r\nb", b""]))


@FUZZ
@given(key=_KEYS, value=_VALUES, where=st.sampled_from(["initial", "trailing"]))
def test_metadata_our_validator_accepts_never_aborts_the_host(
        fuzz_channel: grpc.Channel, key: str, value: bytes, where: str) -> None:
    """The shim's rule against gRPC's own: what pgf_metadata_validate accepts
    (through the Python layer's typing) the real host sends; a key gRPC owns
    is dropped; any other refusal fails that call with INTERNAL.  Either way
    the host keeps serving."""
    sent: MetadataValue = value if is_binary_key(key) else value.decode("latin-1")
    owned = False
    try:
        key_b, value_b = encode_entry(key, sent)
        accepted = lib.pgf_metadata_validate(key_b, len(key_b), value_b, len(value_b)) == 0
        owned = bool(lib.pgf_metadata_key_owned(key_b, len(key_b)))
    except (TypeError, ValueError):
        accepted = False
    request = json.dumps([[where, key, value.hex() if isinstance(sent, bytes) else sent,
                           isinstance(sent, bytes)]]).encode()
    send = fuzz_channel.unary_unary("/e2e.Control/SendMetadata")
    if accepted:
        answer, call = send.with_call(request, timeout=20)
        assert answer == b"sent"
        got = call.initial_metadata() if where == "initial" else call.trailing_metadata()
        # grpcio's client gives bytes for every key ending in "-bin" ("-bin" too).
        assert (key, value) in [(k, v if isinstance(v, bytes) else v.encode("latin-1"))
                                for k, v in got]
    elif owned:
        answer, call = send.with_call(request, timeout=20)
        got = call.initial_metadata() if where == "initial" else call.trailing_metadata()
        assert answer == b"sent" and (key, value) not in got
    else:
        with pytest.raises(grpc.RpcError) as info:
            send(request, timeout=20)
        assert info.value.code() == grpc.StatusCode.INTERNAL
    assert fuzz_channel.unary_unary("/e2e.Control/Echo")(b"alive", timeout=20) == b"alive"


@pytest.mark.parametrize("where", ["initial", "trailing"])
def test_the_key_dash_bin_alone_is_text_and_its_binary_value_fails_only_that_call(
        fuzz_channel: grpc.Channel, where: str) -> None:
    send = fuzz_channel.unary_unary("/e2e.Control/SendMetadata")
    with pytest.raises(grpc.RpcError) as info:
        send(json.dumps([[where, "-bin", "80", True]]).encode(), timeout=20)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    answer, call = send.with_call(json.dumps([[where, "-bin", "text", False]]).encode(),
                                  timeout=20)
    got = call.initial_metadata() if where == "initial" else call.trailing_metadata()
    # grpcio's client gives bytes for every key ending in "-bin" ("-bin" too).
    assert answer == b"sent" and dict(got).get("-bin") in ("text", b"text")
    assert fuzz_channel.unary_unary("/e2e.Control/Echo")(b"alive", timeout=20) == b"alive"
