"""gRPC health checking, registered with one call: Check through the C path
(TestClient, and a grpcio client through the grpcio engine); Watch as a live
server stream through the C path: status changes reach open watchers, a
watcher that goes away is dropped."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from waiting import wait_until

from pygrpc_ffi import GrpcService, StatusCode, grpcio_server
from pygrpc_ffi.health import SERVICE_NAME, add_health, serving_status
from pygrpc_ffi.testing import CallError, TestClient

pytestmark = pytest.mark.timeout(20)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(client: TestClient, name: str) -> int:
    stub = health_pb2_grpc.HealthStub(client.channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(service=name)).status)


def test_check_through_the_c_path(service: GrpcService) -> None:
    health = add_health(service, {"demo.Echo": "SERVING", "demo.Down": False})
    assert service.has_method(SERVICE_NAME, "Check")
    client = TestClient(service)
    assert check(client, "") == SERVING  # the whole server
    assert check(client, "demo.Echo") == SERVING
    assert check(client, "demo.Down") == NOT_SERVING
    health.set("demo.Echo", "not_serving")
    assert check(client, "demo.Echo") == NOT_SERVING
    assert health.status("demo.Echo") == NOT_SERVING
    with pytest.raises(CallError) as info:
        check(client, "demo.Unknown")
    assert info.value.status_code is StatusCode.NOT_FOUND
    assert health.status("demo.Unknown") is None


def test_watch_sends_the_status_then_every_change_until_the_client_goes_away(
        service: GrpcService) -> None:
    health = add_health(service, {"demo.Echo": "SERVING"})
    stub = health_pb2_grpc.HealthStub(TestClient(service).channel)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service="demo.Echo"), timeout=20)
    assert next(watch).status == SERVING
    health.set("demo.Echo", "NOT_SERVING")
    assert next(watch).status == NOT_SERVING
    health.set("demo.Echo", True)
    assert next(watch).status == SERVING
    assert health.watchers("demo.Echo") == 1
    assert watch.cancel()
    with pytest.raises(CallError) as info:
        next(watch)
    assert info.value.status_code is StatusCode.CANCELLED
    assert wait_until(lambda: health.watchers("demo.Echo") == 0)
    health.set("demo.Echo", False)  # nobody left to tell


def test_watch_of_an_unknown_service_reports_it_then_its_first_status(
        service: GrpcService) -> None:
    health = add_health(service)
    stub = health_pb2_grpc.HealthStub(TestClient(service).channel)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service="demo.Later"), timeout=20)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    health.set("demo.Later", "SERVING")
    assert next(watch).status == SERVING
    watch.cancel()


def test_watchers_see_graceful_shutdown_and_the_deadline_ends_the_watch(
        service: GrpcService) -> None:
    health = add_health(service, {"a": True})
    stub = health_pb2_grpc.HealthStub(TestClient(service).channel)
    first = stub.Watch(health_pb2.HealthCheckRequest(service="a"), timeout=1.0)
    second = stub.Watch(health_pb2.HealthCheckRequest(service="a"), timeout=1.0)
    assert next(first).status == SERVING and next(second).status == SERVING
    health.enter_graceful_shutdown()
    assert next(first).status == NOT_SERVING and next(second).status == NOT_SERVING
    with pytest.raises(CallError) as info:
        next(first)  # nothing changes any more: the deadline ends it
    assert info.value.status_code is StatusCode.DEADLINE_EXCEEDED
    assert wait_until(lambda: health.watchers("a") == 0)


def test_grpcio_client_checks_health(service: GrpcService) -> None:
    health = add_health(service, {"demo.Echo": True})
    server = grpcio_server.start(service, "127.0.0.1:0", max_workers=2)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="demo.Echo")
            assert stub.Check(request, timeout=10).status == SERVING
            health.enter_graceful_shutdown()
            assert stub.Check(request, timeout=10).status == NOT_SERVING
            with pytest.raises(grpc.RpcError) as info:
                stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
            assert info.value.code() is grpc.StatusCode.NOT_FOUND
    finally:
        server.stop(0)


def test_serving_status_names() -> None:
    assert serving_status("SERVING") == SERVING
    assert serving_status(True) == SERVING
    assert serving_status(NOT_SERVING) == NOT_SERVING
    with pytest.raises(ValueError, match="unknown serving status"):
        serving_status("HAPPY")
    with pytest.raises(ValueError):
        serving_status(42)
