"""``pygrpc-ffi serve --health --reflection --drain-seconds`` on every engine,
with grpcio's own health and reflection clients: statuses set by the app's
handlers reach Check and open Watches; reflection answers on v1 and
v1alpha; a SIGTERM turns every status NOT_SERVING at once, calls still
succeed while the server drains, the shutdown callback runs, and the server
then exits 0.  With ``--processes 2`` every process answers the statuses
set in any of them."""

from __future__ import annotations

import pathlib
import signal
import socket
import time
from collections.abc import Iterator

import grpc
import pytest
from conftest import ENGINES, Server
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

pytestmark = pytest.mark.timeout(60)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
Request = health_pb2.HealthCheckRequest


@pytest.fixture(scope="module", params=ENGINES)
def health_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    server = Server(request.param, "--health", "--reflection", module="health_handlers")
    yield server
    assert server.stop() == 0


def set_status(channel: grpc.Channel, name: str, status: str) -> int:
    """Sets a status through the handlers' module-level API; what it reads back."""
    return int(channel.unary_unary("/e2e.HealthApp/Set")(f"{name}={status}".encode(),
                                                          timeout=10))


def test_every_service_serving_and_unknown_not_found(health_server: Server) -> None:
    with health_server.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "grpc.testing.TestService", "e2e.HealthApp", "grpc.health.v1.Health"):
            assert stub.Check(Request(service=name), timeout=10).status == SERVING, name
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(Request(service="no.Such"), timeout=10)
        assert info.value.code() is grpc.StatusCode.NOT_FOUND


def test_set_status_reaches_check_and_an_open_watch(health_server: Server) -> None:
    name = "e2e.HealthApp"
    with health_server.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(Request(service=name), timeout=30)
        try:
            assert next(watch).status == SERVING
            assert set_status(channel, name, "NOT_SERVING") == NOT_SERVING
            assert next(watch).status == NOT_SERVING
            assert stub.Check(Request(service=name), timeout=10).status == NOT_SERVING
            assert set_status(channel, name, "SERVING") == SERVING
            assert next(watch).status == SERVING
            assert stub.Check(Request(service=name), timeout=10).status == SERVING
        finally:
            watch.cancel()


def _reflect(channel: grpc.Channel, version: str,
             request: reflection_pb2.ServerReflectionRequest
             ) -> reflection_pb2.ServerReflectionResponse:
    # v1 and v1alpha messages are the same on the wire.
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    responses = list(call(iter([request]), timeout=10))
    assert len(responses) == 1
    return responses[0]


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_lists_and_describes(health_server: Server, version: str) -> None:
    with health_server.channel() as channel:
        listed = _reflect(channel, version, reflection_pb2.ServerReflectionRequest(
            list_services=""))
        names = {s.name for s in listed.list_services_response.service}
        assert names == {"e2e.HealthApp", "grpc.testing.TestService", "grpc.health.v1.Health",
                         "grpc.reflection.v1.ServerReflection",
                         "grpc.reflection.v1alpha.ServerReflection"}
        for symbol in ("grpc.testing.TestService", "grpc.health.v1.Health",
                       f"grpc.reflection.{version}.ServerReflection"):
            found = _reflect(channel, version, reflection_pb2.ServerReflectionRequest(
                file_containing_symbol=symbol))
            first = descriptor_pb2.FileDescriptorProto.FromString(
                found.file_descriptor_response.file_descriptor_proto[0])
            package, _, service = symbol.rpartition(".")
            assert first.package == package
            assert service in [s.name for s in first.service]


def test_reflection_client_resolves_methods(health_server: Server) -> None:
    with health_server.channel() as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        method = pool.FindMethodByName("grpc.testing.TestService.FullDuplexCall")
        assert method.output_type.full_name == "grpc.testing.StreamingOutputCallResponse"


@pytest.mark.parametrize("engine", ENGINES)
def test_sigterm_drains_with_not_serving(engine: str, tmp_path: pathlib.Path) -> None:
    hook_file = tmp_path / "shutdown"
    server = Server(engine, "--health", "--drain-seconds", "2", "--grace", "1",
                    module="health_handlers", env={"PGF_E2E_SHUTDOWN_FILE": str(hook_file)})
    try:
        with server.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            echo = channel.unary_unary("/e2e.HealthApp/Echo")
            watch = stub.Watch(Request(service=""), timeout=30)
            assert next(watch).status == SERVING
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING
            assert time.monotonic() - signalled < 1.0
            # The callback ran in the handlers' process, after health went NOT_SERVING.
            while not hook_file.exists() and time.monotonic() - signalled < 1.0:
                time.sleep(0.01)
            pid, _, status = hook_file.read_text().split()
            assert int(pid) > 0 and int(status) == NOT_SERVING
            assert stub.Check(Request(service=""), timeout=10).status == NOT_SERVING
            # Still serving through the drain.
            while time.monotonic() - signalled < 1.6:
                assert echo(b"during the drain", timeout=5) == b"during the drain"
                time.sleep(0.2)
            watch.cancel()
        assert server.process.wait(20) == 0
        assert time.monotonic() - signalled >= 2.0
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def _own_connection(server: Server) -> grpc.Channel:
    """A channel with a connection of its own (grpcio shares them by default)."""
    return grpc.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("engine", ENGINES)
def test_statuses_are_shared_by_every_process(engine: str) -> None:
    server = Server(engine, "--health", "--processes", "2", "--listen",
                    f"127.0.0.1:{_free_port()}", module="health_handlers")
    try:
        with server.channel() as channel:
            assert set_status(channel, "", "NOT_SERVING") == NOT_SERVING
        time.sleep(0.5)  # processes poll the shared state every 0.1 s
        pids, statuses = set(), []
        # Fresh connections, spread over the processes by the kernel.
        for _ in range(40):
            with _own_connection(server) as channel:
                pids.add(channel.unary_unary("/e2e.HealthApp/Pid")(b"", timeout=10))
                stub = health_pb2_grpc.HealthStub(channel)
                statuses.append(stub.Check(Request(service=""), timeout=10).status)
            if len(pids) == 2 and len(statuses) >= 12:
                break
        assert len(pids) == 2
        assert set(statuses) == {NOT_SERVING}
        # A watch in one process sees a status set in the other.
        channels: dict[bytes, grpc.Channel] = {}
        for _ in range(40):
            channel = _own_connection(server)
            pid = channel.unary_unary("/e2e.HealthApp/Pid")(b"", timeout=10)
            if pid in channels:
                channel.close()
            else:
                channels[pid] = channel
            if len(channels) == 2:
                break
        watcher, setter = channels.values()
        watch = health_pb2_grpc.HealthStub(watcher).Watch(Request(service=""), timeout=30)
        assert next(watch).status == NOT_SERVING
        assert set_status(setter, "", "SERVING") == SERVING
        assert next(watch).status == SERVING
        watch.cancel()
        for channel in channels.values():
            channel.close()
    finally:
        assert server.stop() == 0
