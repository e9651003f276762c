"""Interceptors, metrics, traces and the access log, in process: every call
goes through the C dispatch (GrpcService.call / call_stream), with the
handlers and interceptors of tests/observed.py."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import observed
import pytest
from grpc_interceptor import ExceptionToStatusInterceptor
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import server_interceptor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import pygrpc_ffi as pgf
from pygrpc_ffi.access_log import AccessLog
from pygrpc_ffi.metrics import ShimCollector
from pygrpc_ffi.tracing import TracingInterceptor

S = observed.SERVICE
AUTH = observed.AUTH
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture()
def make_service() -> Iterator[Any]:
    services: list[pgf.GrpcService] = []

    def make(*interceptors: Any, servicer: bool = True) -> pgf.GrpcService:
        service = pgf.GrpcService(interceptors=interceptors)
        observed.register(service, servicer=servicer)
        services.append(service)
        return service

    yield make
    for service in services:
        service.close()


def run_all(service: pgf.GrpcService, metadata: Any = AUTH) -> dict[str, pgf.CallResult]:
    """One call of each obs.Native kind, sync and async."""
    return {
        "Unary": service.call(S, "Unary", b"x", metadata=metadata, timeout=10),
        "ServerStream": service.call_stream(S, "ServerStream", [b"2"], metadata=metadata,
                                            timeout=10),
        "ClientStream": service.call_stream(S, "ClientStream", [b"a", b"b"],
                                            metadata=metadata, timeout=10),
        "Bidi": service.call_stream(S, "Bidi", [b"a", b"b"], metadata=metadata, timeout=10),
        "AsyncUnary": service.call(S, "AsyncUnary", b"x", metadata=metadata, timeout=10),
        "AsyncBidi": service.call_stream(S, "AsyncBidi", [b"a"], metadata=metadata,
                                         timeout=10),
    }


def answers(result: pgf.CallResult) -> list[bytes]:
    """The response messages of a call made with call or call_stream."""
    if result.messages or not result.ok:
        return list(result.messages)
    return [result.payload]


EXPECTED = {
    "Unary": [b"u:x"],
    "ServerStream": [b"s0", b"s1"],
    "ClientStream": [b"a+b"],
    "Bidi": [b"b:a", b"b:b"],
    "AsyncUnary": [b"a:x"],
    "AsyncBidi": [b"ab:a"],
}


def test_grpc_auth_interceptor_rejects_before_the_handler(make_service: Any) -> None:
    service = make_service(observed.Auth())
    before = dict(observed.RAN)
    for name, result in run_all(service, metadata=()).items():
        assert (name, result.code, result.message) == (
            name, pgf.StatusCode.UNAUTHENTICATED, "bad token")
    unary = service.call("grpc.testing.TestService", "EmptyCall", b"", timeout=10)
    assert unary.code is pgf.StatusCode.UNAUTHENTICATED
    assert dict(observed.RAN) == before  # no handler ran
    for name, result in run_all(service).items():
        assert (name, result.code, answers(result)) == (
            name, pgf.StatusCode.OK, EXPECTED[name])
    rejected = service.call(S, "Unary", b"x", metadata=[("x-reject", "1")])
    assert (rejected.code, rejected.message) == (pgf.StatusCode.UNIMPLEMENTED,
                                                 "Method not found!")


def test_grpc_interceptor_wraps_and_changes_answers(make_service: Any) -> None:
    service = make_service(observed.Wrap())
    for name, result in run_all(service).items():
        assert (name, result.code, answers(result)) == (
            name, pgf.StatusCode.OK, [b"W" + m for m in EXPECTED[name]])
    # The servicer's methods pass through it unchanged (protobuf answers).
    empty = service.call("grpc.testing.TestService", "EmptyCall", b"", timeout=10)
    assert (empty.code, empty.payload) == (pgf.StatusCode.OK, b"")


def test_aio_interceptor(make_service: Any) -> None:
    service = make_service(observed.AioAuth())
    assert service.call(S, "AsyncUnary", b"x", timeout=10).payload == b"a:x"
    assert service.call(S, "Unary", b"x", timeout=10).payload == b"u:x"
    refused = service.call(S, "AsyncUnary", b"x", metadata=[("x-aio-reject", "1")], timeout=10)
    assert refused.code is pgf.StatusCode.UNIMPLEMENTED


def test_grpc_interceptor_package_maps_exceptions(make_service: Any) -> None:
    plain = make_service(servicer=False)
    assert plain.call(S, "Missing", b"").code is pgf.StatusCode.INTERNAL
    service = make_service(ExceptionToStatusInterceptor(), servicer=False)
    result = service.call(S, "Missing", b"", timeout=10)
    assert (result.code, result.message) == (pgf.StatusCode.NOT_FOUND, "no such thing")
    assert service.call(S, "Unary", b"x").payload == b"u:x"


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _finished(exporter: InMemorySpanExporter, count: int) -> list[Any]:
    deadline = time.monotonic() + 5
    while len(exporter.get_finished_spans()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(exporter.get_finished_spans())


def test_opentelemetry_grpc_server_interceptor(make_service: Any) -> None:
    provider, exporter = _provider()
    service = make_service(server_interceptor(tracer_provider=provider))
    metadata = [("traceparent", TRACEPARENT)]
    results = run_all(service, metadata=metadata)
    assert all(r.code is pgf.StatusCode.OK for r in results.values())
    spans = _finished(exporter, len(results))
    assert sorted(s.name for s in spans) == sorted(f"/{S}/{name}" for name in results)
    for span in spans:
        assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
        assert f"{span.context.trace_id:032x}" == TRACE_ID
        assert span.attributes["rpc.system"] == "grpc"


def test_native_interceptor_sees_everything(make_service: Any) -> None:
    service = make_service(observed.Native(), servicer=False)
    seen = dict(observed.SEEN)
    ran = dict(observed.RAN)
    denied = service.call_stream(S, "Bidi", [b"a"], metadata=[("x-deny", "1")], timeout=10)
    assert (denied.code, denied.message) == (pgf.StatusCode.PERMISSION_DENIED,
                                             "denied by native")
    assert dict(observed.RAN) == ran
    results = run_all(service)
    assert all(r.code is pgf.StatusCode.OK for r in results.values())
    failed = service.call(S, "Fail", b"")
    assert failed.code is pgf.StatusCode.INTERNAL
    def delta() -> dict[str, int]:
        return {k: v - seen.get(k, 0) for k, v in observed.SEEN.items() if v != seen.get(k, 0)}

    expected = {
        "after:Bidi:PERMISSION_DENIED": 1,
        "in:Unary": 1, "out:Unary": 1, "after:Unary:OK": 1,
        "in:ServerStream": 1, "out:ServerStream": 2, "after:ServerStream:OK": 1,
        "in:ClientStream": 2, "out:ClientStream": 1, "after:ClientStream:OK": 1,
        "in:Bidi": 2, "out:Bidi": 2, "after:Bidi:OK": 1,
        "in:AsyncUnary": 1, "out:AsyncUnary": 1, "after:AsyncUnary:OK": 1,
        "in:AsyncBidi": 1, "out:AsyncBidi": 1, "after:AsyncBidi:OK": 1,
        "in:Fail": 1, "after:Fail:INTERNAL": 1,
    }
    # After hooks of async handlers run on the loop once their call is
    # finished, maybe after the caller got its answer.
    deadline = time.monotonic() + 5
    while delta() != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert delta() == expected


def test_async_native_interceptor(make_service: Any) -> None:
    service = make_service(observed.AsyncNative(), servicer=False)
    before = observed.SEEN["async-after:Unary"]
    denied = service.call(S, "Unary", b"x", metadata=[("x-deny-async", "1")], timeout=10)
    assert (denied.code, denied.message) == (pgf.StatusCode.UNAUTHENTICATED,
                                             "denied by async native")
    assert service.call(S, "AsyncUnary", b"x", timeout=10).payload == b"a:x"
    assert service.call(S, "Unary", b"x", timeout=10).payload == b"u:x"
    deadline = time.monotonic() + 5
    while observed.SEEN["async-after:Unary"] < before + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert observed.SEEN["async-after:Unary"] == before + 2


def test_interceptor_that_raises_maps_like_a_handler(make_service: Any) -> None:
    class Broken(pgf.interceptors.Interceptor):  # type: ignore[name-defined]
        def before(self, call: Any) -> None:
            raise KeyError("secret")

    plain = make_service(servicer=False)

    @plain.method("obs.Raising", "M")
    def raising(request: pgf.GrpcRequest) -> bytes:
        raise KeyError("secret")

    service = make_service(Broken(), servicer=False)
    result = service.call(S, "Unary", b"x")
    expected = plain.call("obs.Raising", "M", b"x")
    assert (result.code, result.message) == (expected.code, expected.message)
    assert result.code is pgf.StatusCode.NOT_FOUND
    with pytest.raises(TypeError):
        service.add_interceptor(object())


def test_tracing_interceptor_spans(make_service: Any) -> None:
    provider, exporter = _provider()
    tracer = trace.get_tracer("test", tracer_provider=provider)
    service = make_service(TracingInterceptor(provider), servicer=False)

    @service.method("obs.Traced", "Sync")
    def traced(request: pgf.GrpcRequest) -> bytes:
        with tracer.start_as_current_span("inner-sync"):
            return b"ok"

    @service.method("obs.Traced", "Async")
    async def traced_async(request: pgf.GrpcRequest) -> bytes:
        with tracer.start_as_current_span("inner-async"):
            return b"ok"

    metadata = [("traceparent", TRACEPARENT)]
    assert service.call("obs.Traced", "Sync", b"", metadata=metadata, timeout=10).ok
    assert service.call("obs.Traced", "Async", b"", metadata=metadata, timeout=10).ok
    assert service.call_stream(S, "Bidi", [b"a"], metadata=metadata, timeout=10).ok
    assert service.call(S, "Fail", b"", timeout=10).code is pgf.StatusCode.INTERNAL
    spans = {s.name: s for s in _finished(exporter, 6)}
    for name in ("obs.Traced/Sync", "obs.Traced/Async", f"{S}/Bidi"):
        span = spans[name]
        assert span.kind is trace.SpanKind.SERVER
        assert f"{span.parent.span_id:016x}" == PARENT_ID
        assert f"{span.context.trace_id:032x}" == TRACE_ID
        assert span.attributes["rpc.system"] == "grpc"
        assert span.attributes["rpc.grpc.status_code"] == 0
    assert spans["obs.Traced/Sync"].attributes["rpc.method"] == "Sync"
    assert spans["obs.Traced/Sync"].attributes["rpc.service"] == "obs.Traced"
    for inner, outer in (("inner-sync", "obs.Traced/Sync"), ("inner-async", "obs.Traced/Async")):
        assert spans[inner].parent.span_id == spans[outer].context.span_id
    failed = spans[f"{S}/Fail"]
    assert failed.parent is None  # no traceparent: a new trace
    assert failed.attributes["rpc.grpc.status_code"] == 13
    assert failed.status.status_code is trace.StatusCode.ERROR


def test_access_log_and_call_id_in_tracebacks(make_service: Any,
                                              caplog: pytest.LogCaptureFixture) -> None:
    service = make_service(AccessLog(), servicer=False)
    with caplog.at_level(logging.INFO):
        assert service.call_stream(S, "Bidi", [b"ab", b"c"], timeout=10).ok
        assert service.call(S, "Fail", b"xyz", timeout=10).code is pgf.StatusCode.INTERNAL
        # A call's after hooks run on its dispatching thread once it is
        # finished, maybe just after the caller got its answer.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            access = [r for r in caplog.records if r.name == "pygrpc_ffi.access"]
            if len(access) >= 2:
                break
            time.sleep(0.01)
    assert len(access) == 2
    bidi, fail = sorted(access, key=lambda r: r.grpc_method != f"/{S}/Bidi")  # type: ignore[attr-defined]
    assert bidi.getMessage().startswith(f"method=/{S}/Bidi status=OK code=0 ")
    assert (bidi.peer, bidi.bytes_in, bidi.bytes_out, bidi.msgs_in, bidi.msgs_out) == (  # type: ignore[attr-defined]
        "local", 3, 7, 2, 2)
    assert (fail.grpc_status, fail.bytes_in) == ("INTERNAL", 3)  # type: ignore[attr-defined]
    tracebacks = [r for r in caplog.records if r.name == "pygrpc_ffi" and r.exc_info]
    assert len(tracebacks) == 1
    assert tracebacks[0].call_id == fail.call_id  # type: ignore[attr-defined]
    assert f"[/{S}/Fail call_id={fail.call_id}]" in tracebacks[0].getMessage()  # type: ignore[attr-defined]
    # The records hold the traceback, and its frames the request: let go.
    del access, bidi, fail, tracebacks
    caplog.clear()


def _scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_exact_counts_in_process() -> None:
    svc = f"obsm{uuid.uuid4().hex[:8]}.S"
    service = pgf.GrpcService()
    try:
        service.register_method(svc, "Get", lambda r: b"ok" if bytes(r.payload) else
                                (_ for _ in ()).throw(pgf.NotFound("x")))

        def chat(requests: Iterator[pgf.GrpcRequest]) -> Iterator[bytes]:
            for r in requests:
                yield bytes(r.payload)
                yield bytes(r.payload)

        service.register_method(svc, "Chat", chat, request_streaming=True,
                                response_streaming=True)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ShimCollector())  # type: ignore[arg-type]
        base = _scrape(registry)
        for _ in range(3):
            assert service.call(svc, "Get", b"x").ok
        assert service.call(svc, "Get", b"").code is pgf.StatusCode.NOT_FOUND
        assert len(service.call_stream(svc, "Chat", [b"a", b"b", b"c"]).messages) == 6
        assert service.call(svc, "Nope", b"").code is pgf.StatusCode.UNIMPLEMENTED
        now = _scrape(registry)
    finally:
        service.close()

    def value(name: str, method: str, kind: str, **extra: str) -> float:
        labels = {"grpc_service": svc, "grpc_method": method, "grpc_type": kind, **extra}
        key = (name, tuple(sorted(labels.items())))
        return now.get(key, 0.0)

    assert value("grpc_server_started_total", "Get", "unary") == 4
    assert value("grpc_server_handled_total", "Get", "unary", grpc_code="OK") == 3
    assert value("grpc_server_handled_total", "Get", "unary", grpc_code="NOT_FOUND") == 1
    assert value("grpc_server_msg_received_total", "Get", "unary") == 4
    assert value("grpc_server_msg_sent_total", "Get", "unary") == 3
    assert value("grpc_server_handling_seconds_count", "Get", "unary") == 4
    assert value("grpc_server_handling_seconds_bucket", "Get", "unary", le="+Inf") == 4
    assert value("grpc_server_started_total", "Chat", "bidi_stream") == 1
    assert value("grpc_server_msg_received_total", "Chat", "bidi_stream") == 3
    assert value("grpc_server_msg_sent_total", "Chat", "bidi_stream") == 6
    assert value("grpc_server_in_flight", "Chat", "bidi_stream") == 0
    unknown = {"grpc_service": "unknown", "grpc_method": "unknown", "grpc_type": "unknown",
               "grpc_code": "UNIMPLEMENTED"}
    key = ("grpc_server_handled_total", tuple(sorted(unknown.items())))
    assert now[key] - base.get(key, 0.0) == 1


def test_metrics_can_be_turned_off() -> None:
    from pygrpc_ffi.metrics import collect_stats, set_enabled

    service = pgf.GrpcService()
    svc = f"obsoff{uuid.uuid4().hex[:8]}.S"
    try:
        service.register_method(svc, "Get", lambda r: b"ok")
        set_enabled(False)
        assert service.call(svc, "Get", b"").ok
        set_enabled(True)
        assert service.call(svc, "Get", b"").ok
    finally:
        set_enabled(True)
        service.close()
    (stats,) = [s for s in collect_stats() if s.service == svc]
    assert stats.started == 1


def test_interceptor_option_loading() -> None:
    from pygrpc_ffi.serve_options import load_interceptor

    assert isinstance(load_interceptor("observed:Auth"), observed.Auth)
    assert isinstance(load_interceptor("observed:tracing"), TracingInterceptor)
    assert isinstance(load_interceptor("grpc_interceptor:ExceptionToStatusInterceptor"),
                      ExceptionToStatusInterceptor)
    otel = load_interceptor("opentelemetry.instrumentation.grpc:server_interceptor")
    assert isinstance(otel, grpc.ServerInterceptor)
    with pytest.raises(ValueError):
        load_interceptor("no-colon")
    with pytest.raises(TypeError):
        load_interceptor("json:dumps")
    assert json  # imported for the spans kit's users


def test_pip_only_engine_takes_interceptors(make_service: Any) -> None:
    service = make_service(servicer=False)
    server = pgf.start(service, "127.0.0.1:0", interceptors=[observed.Auth()])
    try:
        with grpc.insecure_channel(server.address) as channel:
            unary = channel.unary_unary(f"/{S}/Unary")
            with pytest.raises(grpc.RpcError) as err:
                unary(b"x", timeout=10)
            assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert unary(b"x", metadata=AUTH, timeout=10) == b"u:x"
    finally:
        server.stop(0)
    assert service.interceptors and isinstance(service.interceptors[0], observed.Auth)
