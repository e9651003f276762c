"""Health Watch and server reflection over the network, against every
engine: a plain grpc_health_v1 stub watches status changes and goes away;
grpcio-reflection's own client lists and resolves every service."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from conftest import ENGINES, Server
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

pytestmark = pytest.mark.timeout(60)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module", params=ENGINES)
def standard_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    server = Server(request.param, module="standard_handlers")
    yield server
    assert server.stop() == 0


def set_status(channel: grpc.Channel, name: str, status: str) -> None:
    channel.unary_unary("/e2e.HealthControl/Set")(f"{name}={status}".encode(), timeout=10)


def test_health_check_and_watch_follow_status_changes(standard_server: Server) -> None:
    with standard_server.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        name = "grpc.testing.TestService"
        assert stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status \
            == SERVING
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=name), timeout=30)
        assert next(watch).status == SERVING
        set_status(channel, name, "NOT_SERVING")
        assert next(watch).status == NOT_SERVING
        set_status(channel, name, "SERVING")
        assert next(watch).status == SERVING
        watch.cancel()  # the client goes away
        with pytest.raises(grpc.RpcError) as info:
            next(watch)
        assert info.value.code() is grpc.StatusCode.CANCELLED
        # The server dropped the watch and keeps serving.
        time.sleep(0.1)
        set_status(channel, name, "NOT_SERVING")
        assert stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status \
            == NOT_SERVING
        set_status(channel, name, "SERVING")


def test_watch_of_an_unknown_service_says_so(standard_server: Server) -> None:
    with standard_server.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service="no.Such"), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        watch.cancel()


def test_reflection_client_lists_and_resolves_every_service(standard_server: Server) -> None:
    with standard_server.channel() as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
        assert services == ["e2e.HealthControl", "grpc.health.v1.Health",
                            "grpc.reflection.v1.ServerReflection",
                            "grpc.reflection.v1alpha.ServerReflection",
                            "grpc.testing.TestService"]
        pool = descriptor_pool.DescriptorPool(database)
        for name in services:
            if name.startswith("e2e."):
                continue  # raw-bytes handlers: no descriptor to resolve
            assert pool.FindServiceByName(name).methods
        method = pool.FindMethodByName("grpc.testing.TestService.FullDuplexCall")
        assert method.output_type.full_name == "grpc.testing.StreamingOutputCallResponse"
