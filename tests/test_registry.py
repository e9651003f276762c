"""GrpcService's registry API, backed by the C registry: registration,
lookup, precedence of method over service handlers, errors on misuse, the
handler shapes it accepts, default_service() and live_objects()."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

import pygrpc_ffi
from pygrpc_ffi import (
    GrpcError,
    GrpcHandler,
    GrpcRequest,
    GrpcResponse,
    GrpcService,
    NotFound,
    StatusCode,
    live_objects,
)
from pygrpc_ffi.testing import TestClient

pytestmark = pytest.mark.timeout(20, method="thread")


def answer(text: bytes):
    def handler(request: GrpcRequest) -> bytes:
        return text

    return handler


# ---------------------------------------------------------------- handler shapes


class SyncHandler:
    def handle_request(self, request: GrpcRequest) -> GrpcResponse:
        return GrpcResponse(b"sync:" + bytes(request.payload))


class AsyncHandler:
    async def handle_request(self, request: GrpcRequest) -> GrpcResponse:
        await asyncio.sleep(0)
        return GrpcResponse(b"async:" + bytes(request.payload))


class CallableObject:
    def __call__(self, request: GrpcRequest) -> bytes:
        return b"callable:" + bytes(request.payload)


def test_object_with_sync_handle_request_answers_calls(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", SyncHandler())
    result = service.call("pkg.Svc", "Any", b"x")
    assert result.code is StatusCode.OK
    assert result.payload == b"sync:x"


def test_object_with_async_handle_request_answers_calls(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", AsyncHandler())
    result = service.call("pkg.Svc", "Any", b"y")
    assert result.code is StatusCode.OK
    assert result.payload == b"async:y"


def test_plain_function_and_async_function_are_handlers(service: GrpcService) -> None:
    async def async_fn(request: GrpcRequest) -> bytes:
        return b"coroutine"

    service.register_handler("pkg.Sync", answer(b"function"))
    service.register_handler("pkg.Async", async_fn)
    assert service.call("pkg.Sync", "M").payload == b"function"
    assert service.call("pkg.Async", "M").payload == b"coroutine"


def test_callable_object_without_handle_request_is_a_handler(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", CallableObject())
    assert service.call("pkg.Svc", "M", b"z").payload == b"callable:z"


def test_handler_classes_satisfy_the_grpc_handler_protocol() -> None:
    assert isinstance(SyncHandler(), GrpcHandler)
    assert isinstance(AsyncHandler(), GrpcHandler)
    assert not isinstance(CallableObject(), GrpcHandler)


@pytest.mark.parametrize("bad", [None, 42, "handler", object()])
def test_handler_neither_callable_nor_with_handle_request_raises_type_error(
    service: GrpcService, bad: object
) -> None:
    with pytest.raises(TypeError):
        service.register_handler("pkg.Svc", bad)
    with pytest.raises(TypeError):
        service.register_method("pkg.Svc", "M", bad)  # type: ignore[arg-type]
    assert not service.has_service("pkg.Svc")
    assert service.list_services() == []


# ------------------------------------------------------------------ registration


def test_registered_service_is_known_and_listed(service: GrpcService) -> None:
    handler = SyncHandler()
    service.register_handler("pkg.Svc", handler)
    assert service.has_service("pkg.Svc")
    assert service.list_services() == ["pkg.Svc"]
    assert service.get_handler("pkg.Svc") is handler
    assert service.get_handler("pkg.Other") is None
    assert not service.has_service("pkg.Other")


def test_list_services_is_sorted_and_counts_method_only_services(service: GrpcService) -> None:
    service.register_handler("z.Last", answer(b""))
    service.register_handler("a.First", answer(b""))
    service.register_method("m.MethodOnly", "Get", answer(b""))
    service.register_method("m.MethodOnly", "Put", answer(b""))
    assert service.list_services() == ["a.First", "m.MethodOnly", "z.Last"]
    assert service.has_service("m.MethodOnly")
    assert service.has_method("m.MethodOnly", "Get")
    assert not service.has_method("m.MethodOnly", "Delete")


def test_duplicate_service_registration_raises_value_error(service: GrpcService) -> None:
    first = answer(b"first")
    service.register_handler("pkg.Svc", first)
    with pytest.raises(ValueError):
        service.register_handler("pkg.Svc", answer(b"second"))
    # The first registration still answers.
    assert service.get_handler("pkg.Svc") is first
    assert service.call("pkg.Svc", "M").payload == b"first"
    assert live_objects()["handlers"] == 1


def test_duplicate_method_registration_raises_value_error(service: GrpcService) -> None:
    service.register_method("pkg.Svc", "M", answer(b"first"))
    with pytest.raises(ValueError):
        service.register_method("pkg.Svc", "M", answer(b"second"))
    assert service.call("pkg.Svc", "M").payload == b"first"
    assert live_objects()["handlers"] == 1


def test_unregistering_unknown_service_raises_key_error(service: GrpcService) -> None:
    with pytest.raises(KeyError):
        service.unregister_handler("pkg.Missing")
    service.register_handler("pkg.Svc", answer(b""))
    service.unregister_handler("pkg.Svc")
    with pytest.raises(KeyError):
        service.unregister_handler("pkg.Svc")


def test_unregistering_unknown_method_raises_key_error(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", answer(b""))
    with pytest.raises(KeyError):
        service.unregister_method("pkg.Svc", "M")


def test_unregistered_service_answers_unimplemented(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", answer(b"here"))
    assert service.call("pkg.Svc", "M").code is StatusCode.OK
    service.unregister_handler("pkg.Svc")
    result = service.call("pkg.Svc", "M")
    assert result.code is StatusCode.UNIMPLEMENTED
    assert "pkg.Svc" in result.message
    assert not service.has_service("pkg.Svc")
    assert service.list_services() == []
    assert service.get_handler("pkg.Svc") is None


def test_unknown_service_and_unknown_method_answer_unimplemented(service: GrpcService) -> None:
    service.register_method("pkg.Svc", "Known", answer(b""))
    unknown_service = service.call("pkg.Nope", "M")
    unknown_method = service.call("pkg.Svc", "Unknown")
    assert unknown_service.code is StatusCode.UNIMPLEMENTED
    assert unknown_method.code is StatusCode.UNIMPLEMENTED
    assert "Unknown" in unknown_method.message


def test_method_registration_wins_over_service_registration(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", answer(b"service"))
    service.register_method("pkg.Svc", "Special", answer(b"method"))
    assert service.call("pkg.Svc", "Special").payload == b"method"
    assert service.call("pkg.Svc", "Other").payload == b"service"
    service.unregister_method("pkg.Svc", "Special")
    assert service.call("pkg.Svc", "Special").payload == b"service"


def test_method_registrations_survive_unregistering_their_service(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", answer(b"service"))
    service.register_method("pkg.Svc", "Kept", answer(b"method"))
    service.unregister_handler("pkg.Svc")
    assert service.has_service("pkg.Svc")
    assert service.list_services() == ["pkg.Svc"]
    assert service.call("pkg.Svc", "Kept").payload == b"method"
    assert service.call("pkg.Svc", "Other").code is StatusCode.UNIMPLEMENTED


def test_method_decorator_registers_and_returns_the_function(service: GrpcService) -> None:
    @service.method("pkg.Svc", "Echo")
    def echo(request: GrpcRequest) -> bytes:
        return bytes(request.payload)

    @service.method("pkg.Svc")
    async def Reverse(request: GrpcRequest) -> bytes:
        return bytes(request.payload)[::-1]

    assert callable(echo) and echo.__name__ == "echo"
    assert service.get_method_handler("pkg.Svc", "Echo") is echo
    assert service.call("pkg.Svc", "Echo", b"abc").payload == b"abc"
    assert service.call("pkg.Svc", "Reverse", b"abc").payload == b"cba"
    assert service.call("pkg.Svc", "echo").code is StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("name", ["", "a/b"])
def test_invalid_service_names_are_rejected(service: GrpcService, name: str) -> None:
    with pytest.raises(ValueError):
        service.register_handler(name, answer(b""))
    assert not service.has_service(name)


def test_services_have_separate_registries(service: GrpcService) -> None:
    other = GrpcService()
    try:
        service.register_handler("pkg.Svc", answer(b"one"))
        other.register_handler("pkg.Svc", answer(b"two"))
        assert service.call("pkg.Svc", "M").payload == b"one"
        assert other.call("pkg.Svc", "M").payload == b"two"
        assert live_objects()["registries"] == 2
    finally:
        other.close()
    assert live_objects()["registries"] == 1
    assert service.call("pkg.Svc", "M").payload == b"one"


def test_close_releases_registrations_and_registry() -> None:
    svc = GrpcService()
    svc.register_handler("pkg.A", answer(b""))
    svc.register_method("pkg.B", "M", answer(b""))
    counts = live_objects()
    assert counts["registries"] == 1
    assert counts["handlers"] == 2
    assert counts["names"] > 0
    svc.close()
    assert live_objects() == dict.fromkeys(counts, 0)


def test_clear_unregisters_everything_but_keeps_the_registry(service: GrpcService) -> None:
    service.register_handler("pkg.A", answer(b""))
    service.register_method("pkg.B", "M", answer(b""))
    service.clear()
    assert service.list_services() == []
    assert live_objects()["handlers"] == 0
    service.register_handler("pkg.A", answer(b"again"))
    assert service.call("pkg.A", "M").payload == b"again"


def test_failed_registrations_leak_nothing(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", answer(b""))
    baseline = live_objects()
    for _ in range(20):
        with pytest.raises(ValueError):
            service.register_handler("pkg.Svc", answer(b""))
        with pytest.raises(KeyError):
            service.unregister_handler("pkg.Missing")
    assert live_objects() == baseline


# ---------------------------------------------------------- live_objects, default


def test_live_objects_reports_the_c_counters() -> None:
    counts = live_objects()
    assert set(counts) == {"names", "handlers", "calls", "registries", "buffers", "messages"}
    assert all(isinstance(v, int) for v in counts.values())


def test_live_objects_counts_registrations(service: GrpcService) -> None:
    assert live_objects()["handlers"] == 0
    service.register_handler("pkg.A", answer(b""))
    service.register_method("pkg.A", "M", answer(b""))
    assert live_objects()["handlers"] == 2
    service.unregister_method("pkg.A", "M")
    assert live_objects()["handlers"] == 1
    service.unregister_handler("pkg.A")
    assert live_objects()["handlers"] == 0


def test_default_service_is_a_singleton_over_the_default_registry(
    clean_default_service: GrpcService,
) -> None:
    svc = pygrpc_ffi.default_service()
    assert svc is clean_default_service
    assert svc is pygrpc_ffi.default_service()
    before = live_objects()["registries"]
    svc.register_handler("test.DefaultSvc", answer(b"default"))
    assert svc.has_service("test.DefaultSvc")
    assert "test.DefaultSvc" in svc.list_services()
    assert svc.call("test.DefaultSvc", "M").payload == b"default"
    # The default registry is not one of the counted pgf_registry_new ones.
    assert live_objects()["registries"] == before
    svc.unregister_handler("test.DefaultSvc")
    assert not svc.has_service("test.DefaultSvc")


def test_default_service_close_does_not_free_the_default_registry(
    clean_default_service: GrpcService,
) -> None:
    svc = clean_default_service
    svc.register_handler("test.DefaultClose", answer(b""))
    svc.close()
    assert not svc.has_service("test.DefaultClose")
    svc.register_handler("test.DefaultClose", answer(b"still works"))
    assert svc.call("test.DefaultClose", "M").payload == b"still works"


# ------------------------------------------------------ GrpcService.handle_request


def test_service_handle_request_dispatches_through_c(service: GrpcService) -> None:
    def echo(request: GrpcRequest) -> GrpcResponse:
        return GrpcResponse(bytes(request.payload), metadata={"seen": request.get_metadata("k")})

    service.register_handler("pkg.Svc", echo)
    request = GrpcRequest("pkg.Svc", "Echo", b"payload", {"k": "v"})
    response = asyncio.run(service.handle_request(request))
    assert isinstance(response, GrpcResponse)
    assert response.payload == b"payload"
    assert response.metadata["seen"] == "v"


def test_service_handle_request_raises_grpc_error_for_non_ok(service: GrpcService) -> None:
    def missing(request: GrpcRequest) -> bytes:
        raise NotFound("no such thing")

    service.register_handler("pkg.Svc", missing)
    with pytest.raises(GrpcError) as info:
        asyncio.run(service.handle_request(GrpcRequest("pkg.Svc", "Get")))
    assert isinstance(info.value, NotFound)
    assert info.value.code is StatusCode.NOT_FOUND
    assert info.value.message == "no such thing"
    with pytest.raises(GrpcError) as unimplemented:
        asyncio.run(service.handle_request(GrpcRequest("pkg.Nope", "Get")))
    assert unimplemented.value.code is StatusCode.UNIMPLEMENTED


def test_a_service_can_be_the_handler_of_another_service(service: GrpcService) -> None:
    inner = GrpcService()
    try:
        inner.register_handler("pkg.Svc", lambda request: b"inner:" + bytes(request.payload))
        service.register_handler("pkg.Svc", inner)
        result = service.call("pkg.Svc", "M", b"x")
        assert result.code is StatusCode.OK
        assert result.payload == b"inner:x"
        assert service.call("pkg.Other", "M").code is StatusCode.UNIMPLEMENTED
    finally:
        service.clear()
        inner.close()


def test_a_closed_service_refuses_work_instead_of_crashing() -> None:
    svc = GrpcService()
    svc.register_handler("pkg.Svc", answer(b""))
    svc.close()
    svc.close()  # closing twice is harmless
    assert not svc.has_service("pkg.Svc")
    assert not svc.has_method("pkg.Svc", "M")
    assert svc.list_services() == []
    with pytest.raises(RuntimeError):
        svc.call("pkg.Svc", "M")
    with pytest.raises(RuntimeError):
        svc.call("pkg.Svc", "M", timeout=1)
    with pytest.raises(RuntimeError):
        asyncio.run(svc.acall("pkg.Svc", "M"))
    with pytest.raises(ValueError):
        svc.register_handler("pkg.Svc", answer(b""))
    with pytest.raises(ValueError):
        svc.register_method("pkg.Svc", "M", answer(b""))
    assert live_objects() == dict.fromkeys(live_objects(), 0)


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_a_call_racing_close_raises_instead_of_using_the_freed_registry(
    timeout: float | None,
) -> None:
    svc = GrpcService()
    svc.register_handler("pkg.Svc", answer(b"ok"))
    started, closed = threading.Event(), threading.Event()

    def metadata() -> Iterator[tuple[str, str]]:
        # Runs inside call(), after it checked that the service is open.
        started.set()
        assert closed.wait(5)
        yield ("k", "v")

    def close_when_started() -> None:
        assert started.wait(5)
        svc.close()
        closed.set()

    closer = threading.Thread(target=close_when_started)
    closer.start()
    try:
        with pytest.raises(RuntimeError, match="closed"):
            svc.call("pkg.Svc", "M", b"", metadata(), timeout=timeout)
    finally:
        closer.join()
    assert live_objects() == dict.fromkeys(live_objects(), 0)


def test_calls_from_threads_racing_close_run_on_a_live_registry_or_raise() -> None:
    for _ in range(20):
        svc = GrpcService()
        svc.register_handler("pkg.Svc", answer(b"ok"))
        outcomes: list[object] = []
        go = threading.Barrier(5)

        def caller(svc: GrpcService = svc, go: threading.Barrier = go,
                   outcomes: list[object] = outcomes) -> None:
            kit = TestClient(svc)
            go.wait()
            for i in range(50):
                try:
                    if i % 3 == 2:  # the testing kit dispatches like a host
                        result = kit.call_raw("/pkg.Svc/M")
                    else:
                        result = svc.call("pkg.Svc", "M", timeout=5.0 if i % 2 else None)
                except RuntimeError as exc:
                    assert "closed" in str(exc)
                    outcomes.append("closed")
                    return
                outcomes.append(result.code)

        threads = [threading.Thread(target=caller) for _ in range(4)]
        for t in threads:
            t.start()
        go.wait()
        svc.close()
        for t in threads:
            t.join()
        # Cleared before it is freed: a racing call may find no handler.
        assert set(outcomes) <= {StatusCode.OK, StatusCode.UNIMPLEMENTED, "closed"}
        assert live_objects() == dict.fromkeys(live_objects(), 0)
