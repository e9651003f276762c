"""Interceptors, metrics, traces and the access log on real servers (the
gRPC C++ host, which embeds Python and loads the interceptors with
``--interceptor``, and the grpcio engine), called by grpcio clients, for
every RPC kind."""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from conftest import ENGINES, Server
from metrics_kit import free_port, scrape

pytestmark = pytest.mark.timeout(120)

S = "obs.Native"
AUTH = (("authorization", "Bearer ok"),)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
INTERCEPTORS = ["observed:Native", "observed:tracing", "observed:Auth", "observed:Wrap",
                "grpc_interceptor:ExceptionToStatusInterceptor",
                "opentelemetry.instrumentation.grpc:server_interceptor"]


class Observed:
    """A server with every interceptor, the access log and tracing, and
    the files its spans and access-log lines go to."""

    def __init__(self, engine: str, tmp: pathlib.Path) -> None:
        self.spans = tmp / "spans.jsonl"
        self.access = tmp / "access.log"
        flags = [arg for spec in INTERCEPTORS for arg in ("--interceptor", spec)]
        self.server = Server(engine, *flags, "--access-log", module="observed_handlers",
                             env={"OBS_SPANS": str(self.spans),
                                  "OBS_ACCESS_LOG": str(self.access)})
        self.engine = engine


@pytest.fixture(scope="module", params=ENGINES)
def observed_server(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    srv = Observed(request.param, tmp_path_factory.mktemp(f"obs-{request.param}"))
    yield srv
    assert srv.server.stop() == 0


@pytest.fixture()
def channel(observed_server: Observed) -> Iterator[grpc.Channel]:
    with observed_server.server.channel() as ch:
        yield ch


def streams(channel: grpc.Channel) -> bool:
    """One empty bidi stream (both engines stream: an error fails the test)."""
    assert list(channel.stream_stream(f"/{S}/Bidi")(iter(()), metadata=AUTH,
                                                    timeout=10)) == []
    return True


def call(channel: grpc.Channel, kind: str, method: str, arg: Any,
         metadata: Any = AUTH) -> Any:
    path = f"/{S}/{method}"
    if kind == "unary":
        return [channel.unary_unary(path)(arg, metadata=metadata, timeout=10)]
    if kind == "server":
        return list(channel.unary_stream(path)(arg, metadata=metadata, timeout=10))
    if kind == "client":
        return [channel.stream_unary(path)(iter(arg), metadata=metadata, timeout=10)]
    return list(channel.stream_stream(path)(iter(arg), metadata=metadata, timeout=10))


CASES = [  # kind, method, argument, answers without interceptors
    ("unary", "Unary", b"x", [b"u:x"]),
    ("unary", "AsyncUnary", b"x", [b"a:x"]),
    ("server", "ServerStream", b"2", [b"s0", b"s1"]),
    ("client", "ClientStream", [b"a", b"b"], [b"a+b"]),
    ("bidi", "Bidi", [b"a", b"b"], [b"b:a", b"b:b"]),
    ("bidi", "AsyncBidi", [b"a"], [b"ab:a"]),
]


def cases(channel: grpc.Channel) -> list[tuple[str, str, Any, list[bytes]]]:
    if streams(channel):
        return CASES
    return [case for case in CASES if case[0] == "unary"]


def ran(channel: grpc.Channel) -> dict[str, Any]:
    answer = channel.unary_unary(f"/{S}/Ran")(b"", timeout=10)
    assert answer.startswith(b"W")  # Wrap changes every obs.Native answer
    return dict(json.loads(answer[1:]))


def test_auth_interceptor_rejects_before_the_handler(channel: grpc.Channel) -> None:
    all_cases = cases(channel)  # probes streams with a Bidi call first
    before = ran(channel)["ran"]
    for kind, method, arg, _ in all_cases:
        with pytest.raises(grpc.RpcError) as err:
            call(channel, kind, method, arg, metadata=())
        assert (method, err.value.code(), err.value.details()) == (
            method, grpc.StatusCode.UNAUTHENTICATED, "bad token")
    stub = channel.unary_unary("/grpc.testing.TestService/EmptyCall")
    with pytest.raises(grpc.RpcError) as err:
        stub(b"", timeout=10)
    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert ran(channel)["ran"] == before
    with pytest.raises(grpc.RpcError) as err:
        call(channel, "unary", "Unary", b"x", metadata=(*AUTH, ("x-reject", "1")))
    assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_wrapping_interceptor_changes_answers(channel: grpc.Channel) -> None:
    for kind, method, arg, expected in cases(channel):
        assert (method, call(channel, kind, method, arg)) == (
            method, [b"W" + answer for answer in expected])
    # A grpcio servicer's method, through the same interceptors.
    assert channel.unary_unary("/grpc.testing.TestService/EmptyCall")(
        b"", metadata=AUTH, timeout=10) == b""


def test_grpc_interceptor_package_and_native_rejection(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as err:
        call(channel, "unary", "Missing", b"")
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.NOT_FOUND,
                                                      "no such thing")
    before = ran(channel)
    with pytest.raises(grpc.RpcError) as err:
        call(channel, "unary", "Unary", b"x", metadata=(*AUTH, ("x-deny", "1")))
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.PERMISSION_DENIED,
                                                      "denied by native")
    denied = "after:Unary:PERMISSION_DENIED"
    after = settled(channel, denied, before["seen"].get(denied, 0) + 1)
    assert after["ran"] == before["ran"]
    call(channel, "unary", "Unary", b"x")
    seen = settled(channel, "after:Unary:OK", after["seen"].get("after:Unary:OK", 0) + 1)["seen"]
    assert seen["in:Unary"] == after["seen"].get("in:Unary", 0) + 1
    assert seen["out:Unary"] == after["seen"].get("out:Unary", 0) + 1


def settled(channel: grpc.Channel, key: str, count: int) -> dict[str, Any]:
    """ran() once SEEN[key] reached count: after hooks run once a call is
    finished, maybe just after its client got the answer."""
    deadline = time.monotonic() + 10
    while True:
        state = ran(channel)
        if state["seen"].get(key, 0) >= count or time.monotonic() > deadline:
            assert state["seen"].get(key, 0) == count
            return state
        time.sleep(0.02)


def _spans(path: pathlib.Path, name: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        found = [s for s in map(json.loads, lines) if s["name"] == name]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_spans_parented_by_traceparent(observed_server: Observed,
                                       channel: grpc.Channel) -> None:
    for kind, method, arg, _ in cases(channel):
        name = f"{S}/{method}"
        known = len(_spans(observed_server.spans, name, 0))
        call(channel, kind, method, arg, metadata=(*AUTH, ("traceparent", TRACEPARENT)))
        (span,) = _spans(observed_server.spans, name, known + 1)[known:]
        assert (span["trace_id"], span["parent_id"]) == (TRACE_ID, PARENT_ID)
        assert span["attributes"]["rpc.system"] == "grpc"
        assert span["attributes"]["rpc.service"] == S
        assert span["attributes"]["rpc.method"] == method
        assert span["attributes"]["rpc.grpc.status_code"] == 0


def test_access_log_lines(observed_server: Observed, channel: grpc.Channel) -> None:
    call(channel, "unary", "Unary", b"hello")
    with pytest.raises(grpc.RpcError):
        call(channel, "unary", "Fail", b"")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = observed_server.access.read_text().splitlines()
        if any(f"/{S}/Fail" in line for line in lines):
            break
        time.sleep(0.05)
    fields = [dict(f.split("=", 1) for f in line.split()) for line in lines]
    unary = [f for f in fields if f["method"] == f"/{S}/Unary" and f["bytes_in"] == "5"][-1]
    assert (unary["status"], unary["bytes_out"], unary["msgs_in"]) == ("OK", "8", "1")
    assert unary["peer"].startswith("ipv4:127.0.0.1:") or unary["peer"].startswith("ipv6:")
    fail = [f for f in fields if f["method"] == f"/{S}/Fail"][-1]
    assert (fail["status"], fail["code"]) == ("INTERNAL", "13")
    assert fail["call_id"]


# ------------------------------------------------------------------ metrics


def value(samples: Any, name: str, method: str, kind: str = "unary", **extra: str) -> float:
    service = "unknown" if method == "unknown" else S
    labels = {"grpc_service": service, "grpc_method": method, "grpc_type": kind, **extra}
    return float(samples.get((name, tuple(sorted(labels.items()))), 0.0))


@pytest.mark.parametrize("engine", ENGINES)
def test_metrics_after_a_known_mix(engine: str) -> None:
    port = free_port()
    server = Server(engine, "--metrics-port", str(port), module="observed_handlers")
    try:
        with server.channel() as channel:
            stream = streams(channel)  # one Bidi call with no messages, if it streams
            for _ in range(3):
                call(channel, "unary", "Unary", b"x")
            with pytest.raises(grpc.RpcError):
                call(channel, "unary", "Fail", b"")
            for _ in range(2):
                with pytest.raises(grpc.RpcError) as err:
                    channel.unary_unary("/nobody.Here/Nope")(b"", timeout=10)
                assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED
            if stream:
                assert len(call(channel, "bidi", "Bidi", [b"a", b"b", b"c"])) == 3
                assert len(call(channel, "server", "ServerStream", b"4")) == 4
        samples = scrape(port)
    finally:
        assert server.stop() == 0
    started = "grpc_server_started_total"
    handled = "grpc_server_handled_total"
    assert value(samples, started, "Unary") == 3
    assert value(samples, handled, "Unary", grpc_code="OK") == 3
    assert value(samples, "grpc_server_msg_received_total", "Unary") == 3
    assert value(samples, "grpc_server_msg_sent_total", "Unary") == 3
    assert value(samples, "grpc_server_handling_seconds_count", "Unary") == 3
    assert value(samples, started, "Fail") == 1
    assert value(samples, handled, "Fail", grpc_code="INTERNAL") == 1
    assert value(samples, "grpc_server_msg_sent_total", "Fail") == 0
    assert value(samples, handled, "unknown", "unknown", grpc_code="UNIMPLEMENTED") == 2
    assert value(samples, "grpc_server_in_flight", "Unary") == 0
    if stream:
        assert value(samples, started, "Bidi", "bidi_stream") == 2
        assert value(samples, handled, "Bidi", "bidi_stream", grpc_code="OK") == 2
        assert value(samples, "grpc_server_msg_received_total", "Bidi", "bidi_stream") == 3
        assert value(samples, "grpc_server_msg_sent_total", "Bidi", "bidi_stream") == 3
        assert value(samples, "grpc_server_msg_sent_total", "ServerStream",
                     "server_stream") == 4


@pytest.mark.parametrize("engine", ENGINES)
def test_metrics_of_every_process(engine: str) -> None:
    port, metrics_port = free_port(), free_port()
    server = Server(engine, "--listen", f"127.0.0.1:{port}", "--processes", "2",
                    "--metrics-port", str(metrics_port), module="observed_handlers")
    try:
        calls = 0
        for _ in range(8):  # new connections: the kernel spreads them over both processes
            with grpc.insecure_channel(server.address) as channel:
                for _ in range(3):
                    call(channel, "unary", "Unary", b"x")
                    calls += 1
        samples = scrape(metrics_port)
    finally:
        assert server.stop() == 0
    assert value(samples, "grpc_server_started_total", "Unary") == calls
    assert value(samples, "grpc_server_handled_total", "Unary", grpc_code="OK") == calls
