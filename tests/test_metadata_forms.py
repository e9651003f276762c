"""Every public place that takes metadata (GrpcError and GrpcResponse,
a servicer context's initial and trailing metadata, abort) takes it in the
same forms, read by one function (``metadata.iter_pairs``): a mapping, a
Metadata, or an iterable of (key, value) pairs.  A dict is never iterated
as its keys (issue 24, finding 10).  End to end: tests/e2e/
test_metadata_forms_served.py."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from pygrpc_ffi import CallResult, GrpcError, GrpcResponse, GrpcService, Metadata, StatusCode
from pygrpc_ffi.metadata import iter_pairs
from pygrpc_ffi.servicer import ServicerTarget
from pygrpc_ffi.testing import TestClient

pytestmark = pytest.mark.timeout(30)

PAIRS = [("x-reason", "gone"), ("x-count-bin", b"\x01")]
FORMS: dict[str, Any] = {
    "dict": dict(PAIRS),
    "list": list(PAIRS),
    "tuple": tuple(PAIRS),
    "metadata": Metadata(PAIRS),
    "generator": lambda: iter(PAIRS),
}


def form(name: str) -> Any:
    value = FORMS[name]
    return value() if callable(value) else value


def test_one_reader_for_every_form() -> None:
    for name in FORMS:
        assert list(iter_pairs(form(name))) == PAIRS, name
    assert list(iter_pairs({"ab": "value"})) == [("ab", "value")]
    assert list(iter_pairs(None)) == []
    assert list(iter_pairs(Metadata([("k", "1"), ("k", "2")]))) == [("k", "1"), ("k", "2")]


@pytest.mark.parametrize("bad", ["ab", b"ab", 5, ["ab"], [("only",)], [("a", "b", "c")]])
def test_what_is_not_metadata_raises_or_is_reported(bad: Any) -> None:
    with pytest.raises(TypeError):
        list(iter_pairs(bad))
    reasons: list[str] = []
    assert list(iter_pairs([("k", "v"), *([bad] if isinstance(bad, list) else [])],
                           reasons.append)) == [("k", "v")]
    assert list(iter_pairs(bad, reasons.append)) == []
    assert reasons


@pytest.mark.parametrize("name", list(FORMS))
def test_grpc_error_keeps_any_form_as_its_pairs(name: str) -> None:
    assert GrpcError(StatusCode.NOT_FOUND, "gone", trailers=form(name)).trailers == PAIRS
    assert GrpcError(StatusCode.NOT_FOUND, trailers={"ab": "value"}).trailers == [("ab", "value")]


def sync_and_async(handler: Any) -> dict[str, Any]:
    async def aio(request: Any) -> Any:
        return handler(request)

    return {"Sync": handler, "Async": aio}


@pytest.mark.parametrize("name", list(FORMS))
def test_error_and_response_send_every_form_alike(service: GrpcService, name: str) -> None:
    def error(request: Any) -> Any:
        raise GrpcError(StatusCode.NOT_FOUND, "gone", trailers=form(name))

    def response(request: Any) -> Any:
        return GrpcResponse(b"ok", metadata=form(name), trailers=form(name))

    for what, handler in (("error", error), ("response", response)):
        for kind, variant in sync_and_async(handler).items():
            service.register_method("forms.Svc", f"{kind}{what}", variant)
    for kind in ("Sync", "Async"):
        failed = service.call("forms.Svc", f"{kind}error", timeout=10)
        assert (failed.code, failed.message) == (StatusCode.NOT_FOUND, "gone")
        assert failed.trailing_metadata.pairs() == tuple(PAIRS)
        answered = service.call("forms.Svc", f"{kind}response", timeout=10)
        assert (answered.code, answered.payload) == (StatusCode.OK, b"ok")
        assert answered.initial_metadata.pairs() == tuple(PAIRS)
        assert answered.trailing_metadata.pairs() == tuple(PAIRS)


def serve(service: GrpcService, **behaviors: Any) -> TestClient:
    handlers = {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in behaviors.items()}
    ServicerTarget(service).add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("forms.Ctx", handlers),))
    return TestClient(service)


@pytest.mark.parametrize("name", list(FORMS))
def test_servicer_context_takes_every_form(service: GrpcService, name: str) -> None:
    def ok(request: bytes, context: Any) -> bytes:
        context.send_initial_metadata(form(name))
        context.set_trailing_metadata(form(name))
        return b"ok"

    def abort(request: bytes, context: Any) -> bytes:
        context.set_trailing_metadata(form(name))
        context.abort(grpc.StatusCode.NOT_FOUND, "gone")

    async def aabort(request: bytes, context: Any) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, "gone", form(name))

    client = serve(service, Ok=ok, Abort=abort, AAbort=aabort)
    answered: CallResult = client.call_raw("/forms.Ctx/Ok", b"", timeout=10)
    assert (answered.code, answered.payload) == (StatusCode.OK, b"ok")
    assert answered.initial_metadata.pairs() == tuple(PAIRS)
    assert answered.trailing_metadata.pairs() == tuple(PAIRS)
    for method in ("Abort", "AAbort"):
        failed = client.call_raw(f"/forms.Ctx/{method}", b"", timeout=10)
        assert (failed.code, failed.message) == (StatusCode.NOT_FOUND, "gone"), method
        assert failed.trailing_metadata.pairs() == tuple(PAIRS), method
