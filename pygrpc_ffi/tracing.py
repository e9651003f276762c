"""OpenTelemetry server spans for every call (the ``otel`` extra).

:class:`TracingInterceptor` is a native interceptor: one SERVER span per RPC,
named ``package.Service/Method``, with OpenTelemetry's RPC semantic
conventions (``rpc.system="grpc"``, ``rpc.service``, ``rpc.method``,
``rpc.grpc.status_code``, ``net.peer.*`` when the peer is an IP address),
parented by the W3C trace context (``traceparent``/``tracestate``) of the
request metadata.  The handler runs inside the span's context, so spans it
starts (``async def`` handlers too) are its children.  As the conventions
ask for servers, the span's status is ERROR for UNKNOWN, DEADLINE_EXCEEDED,
UNIMPLEMENTED, INTERNAL, UNAVAILABLE and DATA_LOSS.

    service.add_interceptor(TracingInterceptor())          # global provider
    service.add_interceptor(TracingInterceptor(provider))  # or a given one

OpenTelemetry's own ``opentelemetry-instrumentation-grpc`` server interceptor
works too (it is a grpcio interceptor), at a higher cost per call.
"""

from __future__ import annotations

from typing import Any

from .interceptors import Interceptor, ServerCall
from .status import StatusCode

__all__ = ["TracingInterceptor"]

_SERVER_ERRORS = frozenset({StatusCode.UNKNOWN, StatusCode.DEADLINE_EXCEEDED,
                            StatusCode.UNIMPLEMENTED, StatusCode.INTERNAL,
                            StatusCode.UNAVAILABLE, StatusCode.DATA_LOSS})
_SPAN_KEY = "pygrpc_ffi.otel_span"


def _peer_attributes(peer: str) -> dict[str, Any]:
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return {}
    address, _, port = rest.rpartition(":")
    if address.startswith("%5B") or address.startswith("["):  # ipv6:[::1]:5000
        address = address.replace("%5B", "").replace("%5D", "").strip("[]")
    attributes: dict[str, Any] = {"net.peer.ip": address}
    if port.isdigit():
        attributes["net.peer.port"] = int(port)
    return attributes


class TracingInterceptor(Interceptor):
    """A SERVER span per call (see the module's documentation)."""

    def __init__(self, tracer_provider: Any = None) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import propagate, trace

        self._trace = trace
        self._context = otel_context
        self._propagator = propagate.get_global_textmap()
        self._tracer = trace.get_tracer("pygrpc_ffi", tracer_provider=tracer_provider)

    def before(self, call: ServerCall) -> None:
        metadata = call.metadata
        carrier = {key: value for key, value in metadata.pairs()
                   if key in ("traceparent", "tracestate") and isinstance(value, str)}
        parent = self._propagator.extract(carrier) if carrier else None
        attributes: dict[str, Any] = {"rpc.system": "grpc", "rpc.service": call.service,
                                      "rpc.method": call.method}
        attributes.update(_peer_attributes(call.peer))
        span = self._tracer.start_span(f"{call.service}/{call.method}", context=parent,
                                       kind=self._trace.SpanKind.SERVER,
                                       attributes=attributes)
        call.state[_SPAN_KEY] = span
        # Into the call's own context copy (dropped with it): no detach.
        self._context.attach(self._trace.set_span_in_context(span, parent))

    def after(self, call: ServerCall) -> None:
        span = call.state.pop(_SPAN_KEY, None)
        if span is None:
            return
        code = call.code if call.code is not None else StatusCode.UNKNOWN
        span.set_attribute("rpc.grpc.status_code", int(code))
        if code in _SERVER_ERRORS:
            from opentelemetry.trace import Status
            from opentelemetry.trace import StatusCode as SpanStatus

            span.set_status(Status(SpanStatus.ERROR, f"{code.name}: {call.message}"))
        span.end()
