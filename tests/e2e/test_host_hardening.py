"""The C++ host against what a raw HTTP/2 client, the operating system and
shutdown can do to it: far-future grpc-timeout values, late response releases
during shutdown, and the death of the ``pygrpc-ffi serve`` supervisor."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from conftest import ENGINES, Server

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif("cxx" not in ENGINES, reason="C++ host only")]


class RawClient:
    """A bare HTTP/2 client: gRPC requests with any headers, flow control
    under the test's control."""

    def __init__(self, address: str, window: int = 65535) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="ascii"))
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.sock.sendall(self.conn.data_to_send())
        self.headers: dict[int, list[tuple[str, str]]] = {}
        self.data: dict[int, bytes] = {}
        self.ended: set[int] = set()

    def request(self, path: str, payload: bytes = b"",
                extra: tuple[tuple[str, str], ...] = ()) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [
            (":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "test"), ("content-type", "application/grpc"), ("te", "trailers"),
            *extra])
        self.conn.send_data(sid, b"\0" + len(payload).to_bytes(4, "big") + payload,
                            end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        return sid

    def pump(self, until: Any, timeout: float = 10, ack_data: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "no answer from the server"
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            for event in self.conn.receive_data(chunk):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    self.headers.setdefault(event.stream_id, []).extend(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    self.data[event.stream_id] = self.data.get(event.stream_id, b"") + event.data
                    if ack_data:
                        self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                            event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    self.ended.add(event.stream_id)
            self.sock.sendall(self.conn.data_to_send())

    def unary(self, path: str, payload: bytes = b"",
              extra: tuple[tuple[str, str], ...] = ()) -> tuple[dict[str, str], bytes]:
        sid = self.request(path, payload, extra)
        self.pump(lambda: sid in self.ended)
        body = self.data.get(sid, b"")
        return dict(self.headers[sid]), body[5:]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def cxx_server() -> Any:
    server = Server("cxx")
    yield server
    assert server.stop() == 0


@pytest.mark.parametrize("timeout", ["2777778H", "99999999H", "2777777H", "9999999H"])
def test_grpc_timeout_of_centuries_is_no_deadline_not_a_past_one(
        cxx_server: Server, timeout: str) -> None:
    client = RawClient(cxx_server.address)
    try:
        headers, body = client.unary("/e2e.Control/Inspect",
                                     extra=(("grpc-timeout", timeout),))
    finally:
        client.close()
    assert headers.get("grpc-status") == "0", headers
    # Beyond what int64 nanoseconds since 1970 hold (year 2262): no deadline.
    assert json.loads(body)["time_remaining"] is None


def test_grpc_timeout_of_years_stays_a_deadline(cxx_server: Server) -> None:
    client = RawClient(cxx_server.address)
    try:
        headers, body = client.unary("/e2e.Control/Inspect", extra=(("grpc-timeout", "87600H"),))
    finally:
        client.close()
    assert headers.get("grpc-status") == "0", headers
    remaining = json.loads(body)["time_remaining"]
    assert 87599 * 3600 < remaining <= 87600 * 3600


def test_late_response_releases_during_shutdown_never_enter_a_finalizing_python() -> None:
    # Large answers a client never reads stay held by gRPC past the drain;
    # their releases arrive while the host stops Python.  Several rounds, as
    # the ordering is a race: every one must end in a clean exit.
    for _ in range(3):
        server = Server("cxx", "--grace", "0.2")
        client = RawClient(server.address, window=1)
        try:
            sids = [client.request("/e2e.Control/Huge") for _ in range(4)]
            client.pump(lambda c=client, sids=sids: all(s in c.headers for s in sids),
                        ack_data=False)
            assert server.stop(signal.SIGTERM) == 0
        finally:
            client.close()
            if server.process.poll() is None:
                server.process.kill()


def _children(pid: int) -> list[int]:
    found = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_the_host_dies_with_its_supervisor_even_on_sigkill() -> None:
    server = Server("cxx")
    hosts: list[int] = []
    try:
        hosts = _children(server.process.pid)
        assert len(hosts) == 1
        host = hosts[0]
        port = int(server.address.rsplit(":", 1)[1])
        server.process.kill()  # SIGKILL: the supervisor forwards nothing
        server.process.wait()
        deadline = time.monotonic() + 20
        while _alive(host) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(host), "the host outlived its supervisor"
        # The port is free for a successor.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
    finally:
        if server.process.poll() is None:
            server.process.kill()
        for pid in hosts:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
